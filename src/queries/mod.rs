//! The queries: one file each, registered in one line of [`builtin_queries!`].
//!
//! A query is a [`Query`]: an id, the streams it reads, the row type of its
//! result file and how it builds its part of every worker's dataflow. Its id
//! is its `[queries.ID]` table in pipeline files, its `ID.csv` result file,
//! its counters (`STREAM/ID` in `metrics.json`) and its checkpointed state.
//! A built-in query's config struct is the query itself ([`QueryConfig`]):
//! the pipeline table is deserialized into it, validated by it, and it builds
//! the dataflow. A program embedding eddy adds queries of its own through
//! `Job::with_query`, on the same path.
//!
//! Queries share intermediate streams through [`Build`]: the trades keyed by
//! symbol, interactions keyed by item or user, the 1-second bars and the item
//! panes are built once per worker, by whichever query asks first.

pub mod bar_forecast;
pub mod bot_users;
pub mod item_bursts;
pub mod item_forecast;
pub mod price_anomalies;
#[cfg(test)]
pub mod testing;

use crate::checkpoint::state::StateRegistry;
use crate::framework::input_end::InputEnd;
use crate::framework::large_exchange::exchange_in_large_batches;
use crate::framework::pane_window::{window, WindowSpec};
use crate::probes::{LatencyProbe, QueryCounters};
use crate::record::{Interaction, Trade};
use crate::rescale::groups::{KeyGroups, Router};
use crate::rolling::RollPolicy;
use crate::sinks::row_sink::{hand_to_all, RowSink};
use crate::sinks::{columns, typed_columns, Column, ResultFiles, Row};
use crate::time::Tick;
use bars_1s::{Bar, Bars, BarsConfig};
use item_counts_60s::{ItemCount, KindCountsBy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use timely::dataflow::operators::core::{Inspect, Probe};
use timely::dataflow::{ProbeHandle, Scope, Stream};

/// Declares the built-in query modules and lists them in [`BUILTIN`]:
/// adding a query is its file plus one line here (`file::ConfigType`).
macro_rules! builtin_queries {
    ($($module:ident :: $config:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every built-in query, in the order their files are opened.
        pub const BUILTIN: &[Registration] = &[$(registration::<$module::$config>()),*];
    };
}

builtin_queries! {
    bars_1s::BarsConfig,
    stats_10s::StatsConfig,
    vol_60s::VolatilityConfig,
    corr_60s::CorrelationConfig,
    ewma::EwmaConfig,
    item_counts_60s::ItemCountsConfig,
    activity_60s::ActivityConfig,
    alerts::AlertsConfig,
    item_totals::ItemTotalsConfig,
    item_users_60s::ItemUsersConfig,
    anomalies::AnomaliesConfig,
    forecasts::ForecastsConfig,
}

/// The streams a query can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The trades, keyed by symbol ([`Build::trades`]).
    Trades,
    /// The interactions ([`Build::interactions`], keyed by item or user).
    Interactions,
    /// M1's bars per symbol ([`Build::bars`]), made from the trades.
    Bars,
    /// Interaction counts by kind per item and pane ([`Build::item_panes`]).
    ItemPanes,
}

impl Input {
    /// The stream's name: the first part of its readers' counter names.
    pub fn name(self) -> &'static str {
        match self {
            Input::Trades => "trades",
            Input::Interactions => "interactions",
            Input::Bars => "bars",
            Input::ItemPanes => "item_panes",
        }
    }

    /// Whether the stream is made from the trades (else from the interactions).
    pub fn from_trades(self) -> bool {
        matches!(self, Input::Trades | Input::Bars)
    }
}

/// A query of the dataflow (see the module doc).
pub trait Query: Send + Sync + 'static {
    /// The query's id: config key, result file `ID.csv`, counters, state.
    fn id(&self) -> &str;
    /// The streams it reads: it runs when any of their sources is present.
    fn reads(&self) -> &[Input];
    /// The rows of its result file.
    fn output(&self) -> RowFile;
    /// Every window of its rows ends on a multiple of this event time (ms);
    /// none for rows that are not windows. In real time, records are taken
    /// into the dataflow at those times at least (see
    /// [`crate::pipeline::EngineConfig::release_step_ms`]), so windows close
    /// as soon as they can.
    fn window_grid_ms(&self, _tables: &QueryTables) -> Option<u64> {
        None
    }
    /// Adds the query to one worker's dataflow.
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()>;
}

/// The grid every window of these queries ends on (the greatest common
/// divisor of theirs); none when no query has windows.
pub fn window_grid_ms(queries: &[Arc<dyn Query>], tables: &QueryTables) -> Option<u64> {
    queries
        .iter()
        .filter_map(|q| q.window_grid_ms(tables))
        .reduce(crate::time::gcd)
}

/// The result file of query `id`.
pub fn file_name(id: &str) -> String {
    format!("{id}.csv")
}

/// The row type of a query's result file: opens the file with its header;
/// its typed columns and identity are the database sinks' tables.
#[derive(Clone, Copy)]
pub struct RowFile {
    columns: fn() -> &'static [&'static str],
    typed_columns: fn() -> Result<Vec<Column>, String>,
    identity: &'static [&'static str],
    open: fn(&mut ResultFiles, &Path, &str, bool, Option<RollPolicy>) -> anyhow::Result<()>,
}

impl RowFile {
    pub fn of<T: Row>() -> Self {
        RowFile {
            columns: columns::<T>,
            typed_columns: typed_columns::<T>,
            identity: &[],
            open: |files, dir, name, resume, policy| {
                files
                    .open_rolling::<T>(dir, name, resume, policy)
                    .map(|_| ())
            },
        }
    }

    /// The columns that identify a row among all the query's rows of a run
    /// (a table's primary key): the key and window start of windowed rows,
    /// the key and sequence number of per-record rows. None: no key. The
    /// order is the key's: per-record rows put the sequence number first,
    /// so that rows arrive in key order (a database appends them instead
    /// of inserting all over its index: 1.6 s instead of 2.6 s per million
    /// ewma rows in PostgreSQL here).
    pub const fn identified_by(mut self, columns: &'static [&'static str]) -> Self {
        self.identity = columns;
        self
    }

    /// The file's header.
    pub fn columns(&self) -> &'static [&'static str] {
        (self.columns)()
    }

    /// The columns with their types (see [`typed_columns`]).
    pub fn typed_columns(&self) -> Result<Vec<Column>, String> {
        (self.typed_columns)()
    }

    /// The identity columns (see [`RowFile::identified_by`]).
    pub fn identity(&self) -> &'static [&'static str] {
        self.identity
    }

    /// Creates (or, resuming, reopens) `dir/name` among `files`, in
    /// rolling parts under `policy` if given.
    pub fn open(
        &self,
        files: &mut ResultFiles,
        dir: &Path,
        name: &str,
        resume: bool,
        policy: Option<RollPolicy>,
    ) -> anyhow::Result<()> {
        (self.open)(files, dir, name, resume, policy)
    }
}

/// `[queries.*]`: each query's table as written in the pipeline file; each
/// query reads and checks its own ([`QueryTables::config`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueryTables(BTreeMap<String, toml::Table>);

impl QueryTables {
    /// The config of query `id`: its defaults, overridden by its table.
    pub fn config<C: DeserializeOwned + Default>(&self, id: &str) -> Result<C, String> {
        match self.0.get(id) {
            None => Ok(C::default()),
            Some(table) => {
                // `files` is every query's key, read by [`QueryTables::writes_file`].
                let mut table = table.clone();
                match table.remove("files") {
                    None | Some(toml::Value::Boolean(_)) => {}
                    Some(other) => {
                        return Err(format!(
                            "queries.{id}.files must be true or false, got {other}"
                        ))
                    }
                }
                toml::Value::Table(table)
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        format!("queries.{id}: {}", e.message().replace('\n', " "))
                    })
            }
        }
    }

    /// The config of the built-in query `C`.
    pub fn get<C: QueryConfig>(&self) -> Result<C, String> {
        self.config(C::ID)
    }

    /// Sets `key` of `[queries.ID]` (as a pipeline file would).
    pub fn set(&mut self, id: &str, key: &str, value: impl Into<toml::Value>) {
        self.0
            .entry(id.to_string())
            .or_default()
            .insert(key.to_string(), value.into());
    }

    /// Whether query `id`'s rows go to the result files (`files = false`:
    /// only to the dashboard and the Kafka and database sinks).
    pub fn writes_file(&self, id: &str) -> bool {
        let files = self.0.get(id).and_then(|t| t.get("files"));
        files.and_then(toml::Value::as_bool).unwrap_or(true)
    }

    /// Switches query `id` off.
    pub fn disable(&mut self, id: &str) {
        self.set(id, "enabled", false);
    }

    /// The ids that have a table.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// A built-in query: its config struct, deserialized from `[queries.ID]`, is
/// the query (every `QueryConfig` is a [`Query`] whose id is `ID`).
pub trait QueryConfig: DeserializeOwned + Default + Send + Sync + 'static {
    const ID: &'static str;
    fn enabled(&self) -> bool;
    /// Checks what the types alone do not; `all` holds the other queries'
    /// tables, for a query that depends on another's settings.
    fn validate(&self, _all: &QueryTables) -> Result<(), String> {
        Ok(())
    }
    /// As [`Query::reads`].
    fn reads(&self) -> &[Input];
    /// As [`Query::output`].
    fn output(&self) -> RowFile;
    /// As [`Query::window_grid_ms`].
    fn window_grid_ms(&self, _tables: &QueryTables) -> Option<u64> {
        None
    }
    /// As [`Query::build`].
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()>;
}

impl<C: QueryConfig> Query for C {
    fn id(&self) -> &str {
        C::ID
    }
    fn reads(&self) -> &[Input] {
        QueryConfig::reads(self)
    }
    fn output(&self) -> RowFile {
        QueryConfig::output(self)
    }
    fn window_grid_ms(&self, tables: &QueryTables) -> Option<u64> {
        QueryConfig::window_grid_ms(self, tables)
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        QueryConfig::build(self, b)
    }
}

/// A query made from the pipeline's tables: none when switched off, or the
/// one-line error that names the bad key.
pub type Made = Result<Option<Arc<dyn Query>>, String>;

/// A query the engine knows by id.
pub struct Registration {
    pub id: &'static str,
    /// Reads and checks the query's table; none when it is switched off.
    pub make: fn(&QueryTables) -> Made,
}

/// The registration of a built-in query.
pub const fn registration<C: QueryConfig>() -> Registration {
    Registration {
        id: C::ID,
        make: make::<C>,
    }
}

fn make<C: QueryConfig>(tables: &QueryTables) -> Made {
    let config: C = tables.get()?;
    config.validate(tables).map_err(|e| {
        // Messages that name their own key ("forecasts.close_alpha ...") keep it.
        if e.starts_with(&format!("{}.", C::ID)) {
            format!("queries.{e}")
        } else {
            format!("queries.{}: {e}", C::ID)
        }
    })?;
    Ok(config.enabled().then(|| Arc::new(config) as Arc<dyn Query>))
}

/// The enabled built-in queries of `tables`, after refusing a table that
/// names no query (`also`: the ids of queries added in code).
pub fn enabled(tables: &QueryTables, also: &[&str]) -> Result<Vec<Arc<dyn Query>>, String> {
    if let Some(unknown) = tables
        .ids()
        .find(|id| !BUILTIN.iter().any(|r| r.id == *id) && !also.contains(id))
    {
        let known: Vec<&str> = BUILTIN.iter().map(|r| r.id).collect();
        return Err(format!(
            "queries.{unknown}: no such query (known: {})",
            known.join(", ")
        ));
    }
    let mut queries = Vec::new();
    for r in BUILTIN {
        queries.extend((r.make)(tables)?);
    }
    Ok(queries)
}

/// Where a worker's rows go: result files, row sinks and the run's probe.
pub struct Outlets<'a> {
    pub files: &'a ResultFiles,
    pub sinks: &'a [Arc<dyn RowSink>],
    pub probe: &'a ProbeHandle<u64>,
}

/// What a query is built from on one worker (see the module doc).
pub struct Build<'s, 'a> {
    pub scope: Scope<'s, u64>,
    /// Every query's settings, for queries that read another's.
    pub tables: &'a QueryTables,
    /// Checkpointed operator state, by name.
    pub states: &'a StateRegistry,
    pub latency: &'a LatencyProbe,
    pub tick: Tick,
    /// The run's key groups: keyed streams go to the owner of their key's group.
    pub key_groups: KeyGroups,
    counters: &'a dyn Fn(&str) -> Arc<QueryCounters>,
    outlets: Outlets<'a>,
    /// The query being built, and the first stream it reads.
    query: String,
    query_input: Option<Input>,
    trades: Stream<'s, u64, Vec<Trade>>,
    interactions: Stream<'s, u64, Vec<Interaction>>,
    trades_end: InputEnd<'s>,
    interactions_end: InputEnd<'s>,
    shared: Shared<'s>,
}

/// Intermediate streams, built by the first query that asks.
#[derive(Default)]
struct Shared<'s> {
    trades_by_symbol: Option<Stream<'s, u64, Vec<Trade>>>,
    by_item: Option<Stream<'s, u64, Vec<Interaction>>>,
    by_user: Option<Stream<'s, u64, Vec<Interaction>>>,
    bars: Option<Stream<'s, u64, Vec<Bar>>>,
    item_counts: BTreeMap<String, Stream<'s, u64, Vec<ItemCount>>>,
}

/// The source streams of a worker's dataflow, as the inputs made them.
pub struct SourceStreams<'s> {
    pub trades: Stream<'s, u64, Vec<Trade>>,
    pub interactions: Stream<'s, u64, Vec<Interaction>>,
    pub trades_end: InputEnd<'s>,
    pub interactions_end: InputEnd<'s>,
}

impl<'s, 'a> Build<'s, 'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scope: Scope<'s, u64>,
        sources: SourceStreams<'s>,
        tables: &'a QueryTables,
        states: &'a StateRegistry,
        latency: &'a LatencyProbe,
        tick: Tick,
        counters: &'a dyn Fn(&str) -> Arc<QueryCounters>,
        outlets: Outlets<'a>,
    ) -> Self {
        Build {
            scope,
            tables,
            states,
            latency,
            tick,
            key_groups: KeyGroups::default(),
            counters,
            outlets,
            query: String::new(),
            query_input: None,
            trades: sources.trades,
            interactions: sources.interactions,
            trades_end: sources.trades_end,
            interactions_end: sources.interactions_end,
            shared: Shared::default(),
        }
    }

    /// Builds `query` into the dataflow.
    pub fn add(&mut self, query: &dyn Query) -> anyhow::Result<()> {
        self.query = query.id().to_string();
        self.query_input = query.reads().first().copied();
        query.build(self)
    }

    /// The id of the query being built.
    pub fn id(&self) -> &str {
        &self.query
    }

    pub fn index(&self) -> usize {
        self.scope.index()
    }

    pub fn peers(&self) -> usize {
        self.scope.peers()
    }

    /// Where a keyed record goes: the owner of its key's group.
    pub fn router(&self) -> Router {
        Router::new(self.key_groups, self.peers())
    }

    /// The counters of `STREAM/PART` (shared by the process's workers), for
    /// the parts of a query that has several.
    pub fn counters(&self, name: &str) -> Arc<QueryCounters> {
        (self.counters)(name)
    }

    /// The counters of the query being built: `STREAM/ID`, STREAM the first
    /// stream it reads.
    pub fn query_counters(&self) -> Arc<QueryCounters> {
        let stream = self.query_input.map_or("none", Input::name);
        self.counters(&format!("{stream}/{}", self.query))
    }

    /// The trades, exchanged by symbol: each worker sees all of its symbols' trades.
    pub fn trades(&mut self) -> Stream<'s, u64, Vec<Trade>> {
        let trades = &self.trades;
        let router = self.router();
        self.shared
            .trades_by_symbol
            .get_or_insert_with(|| {
                exchange_in_large_batches(trades.clone(), move |t: &Trade| router.route(t.symbol.0))
            })
            .clone()
    }

    /// The interactions as each worker's inputs took them (not exchanged).
    pub fn interactions(&self) -> Stream<'s, u64, Vec<Interaction>> {
        self.interactions.clone()
    }

    /// The interactions, exchanged by item.
    pub fn interactions_by_item(&mut self) -> Stream<'s, u64, Vec<Interaction>> {
        let interactions = &self.interactions;
        let router = self.router();
        self.shared
            .by_item
            .get_or_insert_with(|| {
                exchange_in_large_batches(interactions.clone(), move |r: &Interaction| {
                    router.route(r.item)
                })
            })
            .clone()
    }

    /// The interactions, exchanged by user.
    pub fn interactions_by_user(&mut self) -> Stream<'s, u64, Vec<Interaction>> {
        let interactions = &self.interactions;
        let router = self.router();
        self.shared
            .by_user
            .get_or_insert_with(|| {
                exchange_in_large_batches(interactions.clone(), move |r: &Interaction| {
                    router.route(r.user)
                })
            })
            .clone()
    }

    /// The last event time of the trades, on every worker (`input_end.rs`).
    pub fn trades_end(&self) -> &InputEnd<'s> {
        &self.trades_end
    }

    /// The last event time of the interactions, on every worker.
    pub fn interactions_end(&self) -> &InputEnd<'s> {
        &self.interactions_end
    }

    /// M1's bars (`[queries.bars_1s]` sets their size), whether or not
    /// `bars_1s.csv` is written.
    pub fn bars(&mut self) -> anyhow::Result<Stream<'s, u64, Vec<Bar>>> {
        if let Some(bars) = &self.shared.bars {
            return Ok(bars.clone());
        }
        let config: BarsConfig = self.tables.get().map_err(anyhow::Error::msg)?;
        let bars = window(
            self.trades(),
            BarsConfig::ID,
            config.spec(),
            Bars,
            self.counters(&format!("trades/{}", BarsConfig::ID)),
            self.latency.clone(),
            self.states,
        )?;
        self.shared.bars = Some(bars.clone());
        Ok(bars)
    }

    /// Interaction counts by kind per item over windows of `spec`, as the
    /// operator (and state) `name`: I1's windows, or the models' item panes.
    pub fn item_counts(
        &mut self,
        name: &str,
        spec: WindowSpec,
    ) -> anyhow::Result<Stream<'s, u64, Vec<ItemCount>>> {
        if let Some(counts) = self.shared.item_counts.get(name) {
            return Ok(counts.clone());
        }
        let counts = window(
            self.interactions_by_item(),
            name,
            spec,
            KindCountsBy::items(),
            self.counters(&format!("interactions/{name}")),
            self.latency.clone(),
            self.states,
        )?;
        self.shared
            .item_counts
            .insert(name.to_string(), counts.clone());
        Ok(counts)
    }

    /// The item panes of the models: tumbling windows of `pane_ms`.
    pub fn item_panes(&mut self, pane_ms: u64) -> anyhow::Result<Stream<'s, u64, Vec<ItemCount>>> {
        self.item_counts("item_panes", WindowSpec::tumbling(pane_ms))
    }

    /// Writes `rows` to the query's file `ID.csv`, hands them to the row
    /// sinks (the dashboard among them) and probes them.
    pub fn emit<T: Row>(&self, rows: Stream<'s, u64, Vec<T>>) {
        let file = self
            .outlets
            .files
            .get::<T>(&file_name(&self.query))
            .map(|sink| sink.part_writer());
        let sinks: Vec<Arc<dyn RowSink>> = self.outlets.sinks.to_vec();
        let query = self.query.clone();
        rows.inspect_core(move |event| {
            if let Ok((_, rows)) = &event {
                hand_to_all(&sinks, &query, rows);
            }
            crate::sinks::write_event(&file, event)
        })
        .probe_with(self.outlets.probe);
    }

    /// Hands `rows` to the row sinks only (no file: live rows such as fired
    /// alerts), and probes them.
    pub fn emit_live<T: 'static>(&self, rows: Stream<'s, u64, Vec<T>>) {
        let sinks: Vec<Arc<dyn RowSink>> = self.outlets.sinks.to_vec();
        let query = self.query.clone();
        rows.inspect_core(move |event| {
            if let Ok((_, rows)) = event {
                hand_to_all(&sinks, &query, rows);
            }
        })
        .probe_with(self.outlets.probe);
    }

    /// Probes a stream that carries no rows (the run waits for its operator).
    pub fn probe<T: 'static>(&self, stream: Stream<'s, u64, Vec<T>>) {
        stream.probe_with(self.outlets.probe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every query with windows says where they end (the anomaly detectors'
    /// panes too, though their rows carry the time of the anomaly); with the
    /// default settings all of them end on whole seconds.
    #[test]
    fn every_windowed_query_declares_its_window_grid() {
        let tables = QueryTables::default();
        let queries = enabled(&tables, &[]).unwrap();
        for q in &queries {
            let windowed = q.output().columns().contains(&"window_start_ms");
            let grid = q.window_grid_ms(&tables);
            assert!(!windowed || grid.is_some(), "{} has no window grid", q.id());
            if let Some(g) = grid {
                assert!(g > 0 && g % 1_000 == 0, "{}: {g}", q.id());
            }
        }
        assert_eq!(window_grid_ms(&queries, &tables), Some(1_000));
        let bars = bars_1s::BarsConfig {
            size_ms: 1_500,
            ..Default::default()
        };
        assert_eq!(Query::window_grid_ms(&bars, &tables), Some(1_500));
    }
}
