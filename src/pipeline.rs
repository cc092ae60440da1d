//! Pipeline files (`dataflows/*.toml`): which sources, which queries with which
//! parameters, and where results go. The same structs carry the CLI's settings,
//! so a flag and a key always mean the same thing.
//!
//! Unknown keys and bad values are refused with one line naming the key and
//! the line of the file.

use crate::checkpoint::CheckpointConfig;
use crate::queries::QueryTables;
use crate::rolling::RollPolicy;
use crate::sources::interactions::InteractionConfig;
use crate::sources::market::MarketConfig;
use crate::sources::schedule::Timing;
use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A whole pipeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// A name for reports.
    pub name: String,
    pub engine: EngineConfig,
    pub sources: Sources,
    /// `[queries.ID]`: each query's settings, read by the query itself.
    pub queries: QueryTables,
    pub output: OutputConfig,
    /// `[sinks.*]`: where result rows go besides the CSV files.
    pub sinks: SinksConfig,
}

/// `[sinks]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Every query's committed rows published to Kafka (see `kafka/sink.rs`).
    pub kafka: Option<crate::kafka::sink::KafkaSinkConfig>,
    /// Every query's committed rows in an SQLite file (see `database/`).
    pub sqlite: Option<crate::database::SqliteSinkConfig>,
    /// Every query's committed rows in PostgreSQL (see `database/`).
    pub postgres: Option<crate::database::PostgresSinkConfig>,
    /// Every query's committed rows in MongoDB (see `database/mongodb.rs`).
    pub mongodb: Option<crate::database::MongoSinkConfig>,
}

impl SinksConfig {
    /// Whether a sink copies query `id`'s committed rows (from the files).
    pub fn copies(&self, id: &str) -> bool {
        let lists = [
            self.kafka.as_ref().map(|c| &c.queries),
            self.sqlite.as_ref().map(|c| &c.queries),
            self.postgres.as_ref().map(|c| &c.queries),
            self.mongodb.as_ref().map(|c| &c.queries),
        ];
        lists
            .into_iter()
            .flatten()
            .any(|only| only.as_ref().is_none_or(|ids| ids.iter().any(|q| q == id)))
    }
}

/// How the engine runs (`[engine]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Worker threads in this process.
    pub workers: usize,
    /// Generators: real time or as fast as possible.
    pub timing: Timing,
    /// Real time: event time runs this many times faster than the wall clock.
    pub speed: f64,
    /// Out-of-orderness bound: watermark = max event time seen - max_delay_ms.
    pub max_delay_ms: u64,
    /// Timely timestamps are event times rounded down to this tick.
    pub tick_ms: u64,
    /// Replaying files or generating as fast as possible: the coarsest event
    /// time one timestamp may span (see [`Pipeline::timestamp_ms`]); 0 or
    /// the tick keeps timestamps at ticks.
    pub as_fast_timestamp_ms: u64,
    /// Real time: records are taken into the dataflow at most this often
    /// (ms of wall time), at window ends and between them; 0: each as it
    /// falls due (the least latency, a wake-up per record at light load).
    /// See [`EngineConfig::release_step_ms`].
    pub release_ms: u64,
    /// Records per batch handed to the dataflow (per worker, about; none:
    /// the default of the timing, [`EngineConfig::batch_records`]).
    pub batch_size: Option<usize>,
    /// At most this much event time may be in flight behind the inputs
    /// (none: the default of the timing, [`EngineConfig::inflight_ms`]).
    pub max_inflight_ms: Option<u64>,
    /// At most this many records (per worker) may be in flight behind the inputs.
    pub max_inflight_records: u64,
    /// Stop after this many seconds of wall time (none: when the sources end).
    pub duration_s: Option<f64>,
    /// Print the live status line (every second).
    pub status: bool,
    /// Event time at which generators start, ms since the epoch (none: now in
    /// real time, 1.7e12 as fast as possible). Processes of a cluster share it.
    pub start_ms: Option<u64>,
    /// Serve the live dashboard and /metrics on this `host:port` (none: off).
    pub dashboard: Option<String>,
    /// Keep serving the dashboard this many seconds after the run ends, so
    /// that the final figures can be read (and scraped) from it.
    pub dashboard_linger_s: f64,
    /// A file holding the token the dashboard, its API and /metrics ask for
    /// (`Authorization: Bearer`, or `?token=` once); none: open.
    pub dashboard_token_file: Option<std::path::PathBuf>,
    /// Serve a non-loopback address without a token anyway.
    pub dashboard_public: bool,
    /// TLS for the ingest port and the dashboard: a PEM certificate chain
    /// and its private key (both or neither).
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Checkpoints (`[engine.checkpoint]`): off unless a folder is named.
    pub checkpoint: CheckpointConfig,
    /// Count what the workers send each other (`metrics.json` `traffic`).
    pub measure_traffic: bool,
    /// Key groups: the unit in which keyed state is checkpointed and moves
    /// when a run resumes on another layout (`crate::rescale`); at least the
    /// number of workers over every process, fixed once a checkpoint exists.
    pub key_groups: u32,
}

/// The default event-time in-flight bound in real time (and for live
/// sources): an overloaded engine shows lag after 2 s rather than queueing.
const REAL_TIME_INFLIGHT_MS: u64 = 2_000;
/// The default as fast as possible over files and generators: with
/// timestamps of a second, 2 s left
/// the workers one or two timestamps of slack, and each waited for the other
/// about 2 600 times in a 3 M-event replay on 2 workers (640 to 1 250 with
/// 30 s; results/scaling.csv). Memory stays bounded by `max_inflight_records`.
const AS_FAST_INFLIGHT_MS: u64 = 30_000;

/// The default batch in real time (and for live sources): a batch's span of
/// event time sets the release steps ([`EngineConfig::release_step_ms`]).
const REAL_TIME_BATCH_RECORDS: usize = 1_024;
/// The default as fast as possible over files and generators, where nothing
/// waits on a batch: each is
/// one pass through the dataflow and one message per peer, and 4 096 made a
/// 2-process replay about a quarter faster than 1 024 (results/scaling.csv).
const AS_FAST_BATCH_RECORDS: usize = 4_096;

impl EngineConfig {
    /// The run's key groups (`key_groups`), checked.
    pub fn key_groups(&self) -> anyhow::Result<crate::rescale::groups::KeyGroups> {
        crate::rescale::groups::KeyGroups::new(self.key_groups).map_err(anyhow::Error::msg)
    }

    /// Records per batch and worker: `batch_size`, or 1 024 when unset
    /// ([`Pipeline::with_run_defaults`] sets 4 096 where that is the default).
    pub fn batch_records(&self) -> usize {
        self.batch_size.unwrap_or(REAL_TIME_BATCH_RECORDS)
    }

    /// The event time that may be in flight behind the inputs before the
    /// sources wait: `max_inflight_ms`, or 2 s when unset
    /// ([`Pipeline::with_run_defaults`] sets 30 s where that is the default).
    pub fn inflight_ms(&self) -> u64 {
        self.max_inflight_ms.unwrap_or(REAL_TIME_INFLIGHT_MS)
    }

    /// Real time: the event time (ms) between two releases of records into
    /// the dataflow, for a source that fills a batch in `batch_span_ms` of
    /// event time (0: no releases, each record is taken as it falls due).
    /// Between two, nothing can finish (the frontier moves by ticks; windows
    /// end on multiples of `window_grid_ms`), so the step is the largest
    /// multiple of the tick that is at most `release_ms` of wall time, at
    /// most a batch (a busy source is released every tick) and divides the
    /// window grid: windows close at a release, and per-record rows wait up
    /// to one step.
    pub fn release_step_ms(&self, window_grid_ms: Option<u64>, batch_span_ms: f64) -> u64 {
        if self.release_ms == 0 {
            return 0;
        }
        let wanted = (self.release_ms as f64 * self.speed).min(batch_span_ms);
        self.tick_step(wanted as u64, window_grid_ms)
    }

    /// The largest multiple of the tick that is at most `most` (at least the
    /// tick) and divides `window_grid_ms`, if there is one.
    fn tick_step(&self, most: u64, window_grid_ms: Option<u64>) -> u64 {
        let tick = self.tick_ms.max(1);
        let mut step = most.max(tick) / tick * tick;
        if let Some(grid) = window_grid_ms {
            while step > tick && !grid.is_multiple_of(step) {
                step -= tick;
            }
        }
        step
    }
}

impl Pipeline {
    /// The event time (ms) one timely timestamp spans, for queries whose
    /// windows end on multiples of `window_grid_ms`. In real time, and for
    /// sources that arrive live (TCP, Kafka, code), the tick: a per-record
    /// row waits for the frontier to pass its timestamp. Replaying files or
    /// generating as fast as possible nothing waits on the clock, so a
    /// timestamp is the largest multiple of the tick that divides the window
    /// grid and is at most `as_fast_timestamp_ms` (and half the in-flight
    /// bound): windows still close exactly at their ends, and workers agree
    /// on progress, exchange records in larger messages and let
    /// differential's operators run about once per second of event time
    /// rather than once per tick.
    pub fn timestamp_ms(&self, window_grid_ms: Option<u64>) -> u64 {
        let e = &self.engine;
        if !self.as_fast_over_files_and_generators() {
            return e.tick_ms.max(1);
        }
        e.tick_step(
            e.as_fast_timestamp_ms.min(e.inflight_ms() / 2),
            window_grid_ms,
        )
    }
}

impl Pipeline {
    /// As fast as possible with only files and generators as sources: no
    /// record waits on the clock or on a live peer.
    fn as_fast_over_files_and_generators(&self) -> bool {
        self.engine.timing == Timing::AsFast
            && self
                .sources
                .trades
                .as_ref()
                .is_none_or(|s| matches!(s, TradeSource::Market(_) | TradeSource::Csv(_)))
            && self.sources.interactions.as_ref().is_none_or(|s| {
                matches!(
                    s,
                    InteractionSource::Generator(_) | InteractionSource::Csv(_)
                )
            })
    }

    /// The pipeline with the engine defaults that depend on it filled in
    /// (what a run uses): as fast as possible over files and generators, 30 s
    /// of event time in flight and batches of 4 096 records; otherwise (real
    /// time, live sources) 2 s and 1 024. Values set explicitly stay.
    pub fn with_run_defaults(mut self) -> Self {
        let (inflight_ms, batch) = if self.as_fast_over_files_and_generators() {
            (AS_FAST_INFLIGHT_MS, AS_FAST_BATCH_RECORDS)
        } else {
            (REAL_TIME_INFLIGHT_MS, REAL_TIME_BATCH_RECORDS)
        };
        self.engine.max_inflight_ms.get_or_insert(inflight_ms);
        self.engine.batch_size.get_or_insert(batch);
        self
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            timing: Timing::AsFast,
            speed: 1.0,
            max_delay_ms: 200,
            tick_ms: 10,
            as_fast_timestamp_ms: 1_000,
            release_ms: 50,
            batch_size: None,
            max_inflight_ms: None,
            max_inflight_records: 250_000,
            duration_s: None,
            status: true,
            start_ms: None,
            dashboard: None,
            dashboard_linger_s: 0.0,
            dashboard_token_file: None,
            dashboard_public: false,
            tls_cert: None,
            tls_key: None,
            checkpoint: CheckpointConfig::default(),
            measure_traffic: false,
            key_groups: crate::rescale::groups::DEFAULT_KEY_GROUPS,
        }
    }
}

/// `[sources]`: either input may be absent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    pub trades: Option<TradeSource>,
    pub interactions: Option<InteractionSource>,
    /// Where `kind = "tcp"` streams are received (`eddy run --listen`).
    pub listen: Option<crate::ingest::ListenConfig>,
}

/// `[sources.trades]`: `kind = "market"` (generator) or `kind = "csv"` with a `path`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TradeSource {
    Market(MarketConfig),
    Csv(CsvSource),
    /// Read from a Kafka topic (see `kafka/source.rs`).
    Kafka(crate::kafka::KafkaSourceConfig),
    /// Received over TCP (see `[sources.listen]`).
    Tcp {},
    /// Made in code by a program that embeds eddy (`Job::with_trade_source`);
    /// not a kind pipeline files can name.
    #[serde(skip_deserializing)]
    Custom {},
}

/// `[sources.interactions]`: `kind = "generator"` or `kind = "csv"` with a `path`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InteractionSource {
    Generator(InteractionConfig),
    Csv(CsvSource),
    /// Read from a Kafka topic (see `kafka/source.rs`).
    Kafka(crate::kafka::KafkaSourceConfig),
    /// Received over TCP (see `[sources.listen]`).
    Tcp {},
    /// Made in code (`Job::with_interaction_source`); not a kind pipeline
    /// files can name.
    #[serde(skip_deserializing)]
    Custom {},
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CsvSource {
    pub path: PathBuf,
}

/// `[output]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Folder for result files and metrics.json; none writes no files.
    pub dir: Option<PathBuf>,
    /// Roll a query's rows into `ID/part-NNNNN.csv` files of about this many
    /// MB (see `rolling.rs`); none, and no `roll_s`: one `ID.csv`.
    pub roll_mb: Option<f64>,
    /// Roll parts this many seconds old.
    pub roll_s: Option<f64>,
    /// Keep only the newest this many finished parts of each query.
    pub keep_parts: Option<usize>,
    /// Remove finished parts older than this many seconds.
    pub keep_s: Option<f64>,
}

impl OutputConfig {
    /// Whether query rows roll into parts.
    pub fn rolls(&self) -> bool {
        self.roll_mb.is_some() || self.roll_s.is_some()
    }

    /// The rolling policy of the query files (none: single files); with
    /// checkpoints parts roll only at them.
    pub fn roll_policy(&self, checkpointed: bool) -> Option<RollPolicy> {
        self.rolls().then(|| RollPolicy {
            roll_bytes: self.roll_mb.map(|mb| (mb * 1e6) as u64),
            roll_after: self.roll_s.map(Duration::from_secs_f64),
            keep_parts: self.keep_parts,
            keep_for: self.keep_s.map(Duration::from_secs_f64),
            at_checkpoints: checkpointed,
        })
    }

    fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("roll_mb", self.roll_mb),
            ("roll_s", self.roll_s),
            ("keep_s", self.keep_s),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("output.{key} must be positive, got {v}"));
                }
            }
        }
        if self.keep_parts == Some(0) {
            return Err("output.keep_parts must be at least 1 (the newest finished part)".into());
        }
        if !self.rolls() && (self.keep_parts.is_some() || self.keep_s.is_some()) {
            return Err(
                "output.keep_parts and output.keep_s remove rolled parts: set output.roll_mb or output.roll_s too"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The built-in demo: both generators for 2 minutes at 10x real time, with the dashboard.
pub const DEMO: &str = include_str!("../dataflows/demo.toml");

impl Pipeline {
    /// Parses a pipeline, naming the offending key and line on error.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Pipeline> {
        let pipeline: Pipeline = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().replace('\n', " ");
            match line {
                Some(l) => anyhow!("{origin}:{l}: {message}"),
                None => anyhow!("{origin}: {message}"),
            }
        })?;
        pipeline
            .validate()
            .map_err(|e| match query_table_line(text, &e) {
                Some(line) => anyhow!("{origin}:{line}: {e}"),
                None => anyhow!("{origin}: {e}"),
            })?;
        Ok(pipeline)
    }

    pub fn load(path: &Path) -> anyhow::Result<Pipeline> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read pipeline file {}: {e}", path.display()))?;
        let mut pipeline = Self::parse(&text, &path.display().to_string())?;
        // Relative CSV paths are relative to the pipeline file.
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(TradeSource::Csv(c)) = pipeline.sources.trades.as_mut() {
            rebase(&mut c.path);
        }
        if let Some(InteractionSource::Csv(c)) = pipeline.sources.interactions.as_mut() {
            rebase(&mut c.path);
        }
        Ok(pipeline)
    }

    pub fn demo() -> Pipeline {
        Self::parse(DEMO, "dataflows/demo.toml").expect("the built-in demo pipeline is valid")
    }

    /// Checks values that types alone do not.
    pub fn validate(&self) -> Result<(), String> {
        let e = &self.engine;
        if e.workers == 0 || e.workers > 1024 {
            return Err(format!(
                "engine.workers must be between 1 and 1024, got {}",
                e.workers
            ));
        }
        crate::rescale::groups::KeyGroups::new(e.key_groups).map_err(|m| format!("engine.{m}"))?;
        if e.workers > e.key_groups as usize {
            return Err(format!(
                "engine.workers ({}) must not exceed engine.key_groups ({})",
                e.workers, e.key_groups
            ));
        }
        if !(e.speed.is_finite() && e.speed > 0.0) {
            return Err(format!("engine.speed must be positive, got {}", e.speed));
        }
        if e.tick_ms == 0 || e.batch_size == Some(0) {
            return Err("engine.tick_ms and engine.batch_size must be positive".into());
        }
        if let Some(d) = e.duration_s {
            if !(d.is_finite() && d > 0.0) {
                return Err(format!("engine.duration_s must be positive, got {d}"));
            }
        }
        if e.tls_cert.is_some() != e.tls_key.is_some() {
            return Err(
                "engine.tls_cert and engine.tls_key go together: give both or neither".into(),
            );
        }
        if !(e.dashboard_linger_s.is_finite() && e.dashboard_linger_s >= 0.0) {
            return Err(format!(
                "engine.dashboard_linger_s must be 0 or more, got {}",
                e.dashboard_linger_s
            ));
        }
        if e.checkpoint.interval_ms == 0 {
            return Err("engine.checkpoint.interval_ms must be positive".into());
        }
        self.output.validate()?;
        if e.checkpoint.resume && e.checkpoint.dir.is_none() {
            return Err("resuming needs a checkpoint folder (--checkpoint-dir DIR)".into());
        }
        let tcp = matches!(self.sources.trades, Some(TradeSource::Tcp {}))
            || matches!(self.sources.interactions, Some(InteractionSource::Tcp {}));
        match &self.sources.listen {
            None if tcp => {
                return Err(
                    "a source of kind = \"tcp\" needs [sources.listen] with an address".into(),
                )
            }
            Some(_) if !tcp => {
                return Err("[sources.listen] is set but no source is of kind = \"tcp\"".into())
            }
            Some(l) if l.idle_exit_s.is_some_and(|s| !(s.is_finite() && s >= 0.0)) => {
                return Err("sources.listen.idle_exit_s must be 0 or more".into())
            }
            _ => {}
        }
        if let Some(address) = &e.dashboard {
            if address
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
            {
                return Err(format!(
                    "engine.dashboard must be HOST:PORT (port 0: any free port), got {address:?}"
                ));
            }
        }
        if let Some(TradeSource::Market(m)) = &self.sources.trades {
            m.validate()
                .map_err(|err| format!("sources.trades: {err}"))?;
        }
        if let Some(InteractionSource::Generator(g)) = &self.sources.interactions {
            g.validate()
                .map_err(|err| format!("sources.interactions: {err}"))?;
        }
        if self.sources.trades.is_none() && self.sources.interactions.is_none() {
            return Err("no source: give [sources.trades] or [sources.interactions]".into());
        }
        crate::queries::enabled(&self.queries, &[])?;
        Ok(())
    }
}

/// The line of the `[queries.ID]` table an error names (`queries.ID...`).
fn query_table_line(text: &str, error: &str) -> Option<usize> {
    let id = error
        .strip_prefix("queries.")?
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()?;
    let header = format!("[queries.{id}");
    text.lines()
        .position(|l| l.trim_start().starts_with(&header))
        .map(|i| i + 1)
}

impl Pipeline {
    /// What must be equal for a checkpoint to be resumed: everything that
    /// decides what the state means and how it is cut into key groups. The
    /// layout (workers, processes) may change: a rescaled run takes its
    /// share of every key group and source position (`crate::rescale`).
    pub fn checkpoint_fingerprint(&self) -> String {
        serde_json::json!({
            "key_groups": self.engine.key_groups,
            "tick_ms": self.engine.tick_ms,
            "max_delay_ms": self.engine.max_delay_ms,
            // Where records are received may change between runs; what they are may not.
            "sources": Sources { listen: None, ..self.sources.clone() },
            "queries": self.queries,
        })
        .to_string()
    }

    /// What the processes of one run must agree on (the cluster handshake,
    /// `eddy merge`): the checkpoint's fingerprint and the layout.
    pub fn run_fingerprint(&self, processes: usize) -> String {
        let mut value: serde_json::Value =
            serde_json::from_str(&self.checkpoint_fingerprint()).expect("a JSON object");
        value["workers"] = self.engine.workers.into();
        value["processes"] = processes.into();
        value.to_string()
    }
}

/// Reads a pipeline from a path given on the command line, or fails with one line.
pub fn load_or_demo(path: Option<&Path>) -> anyhow::Result<Pipeline> {
    match path {
        Some(p) if !p.exists() => bail!("pipeline file {} does not exist", p.display()),
        Some(p) => Pipeline::load(p),
        None => Ok(Pipeline::demo()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_ticks_that_divide_the_window_grid() {
        let engine = |release_ms, speed| EngineConfig {
            release_ms,
            speed,
            ..EngineConfig::default()
        };
        let light = 1_024.0 / 5_000.0 * 1000.0; // a batch of a 5 000/s source: 205 ms
        assert_eq!(engine(50, 1.0).release_step_ms(Some(1_000), light), 50);
        // At speed 10, 50 ms of wall time are 500 ms of events; a batch 205.
        assert_eq!(engine(50, 10.0).release_step_ms(Some(1_000), light), 200);
        // A busy source (a batch in 7 ms) is released every tick.
        assert_eq!(engine(50, 1.0).release_step_ms(Some(1_000), 6.8), 10);
        assert_eq!(engine(0, 1.0).release_step_ms(Some(1_000), light), 0);
        // Windows of 1.01 s end off every step but the tick.
        assert_eq!(engine(50, 1.0).release_step_ms(Some(1_010), light), 10);
        assert_eq!(engine(50, 1.0).release_step_ms(Some(1_500), light), 50);
        assert_eq!(engine(50, 1.0).release_step_ms(Some(60), light), 30);
        assert_eq!(engine(35, 1.0).release_step_ms(None, light), 30);
    }

    #[test]
    fn as_fast_replay_timestamps_are_as_coarse_as_the_windows_allow() {
        let parse = |text: &str| Pipeline::parse(text, "p.toml").unwrap();
        let replay = "[sources.trades]\nkind = \"csv\"\npath = \"t.csv\"\n";
        let p = parse(replay).with_run_defaults();
        // Windows end on whole seconds: a timestamp spans a second.
        assert_eq!(p.timestamp_ms(Some(1_000)), 1_000);
        assert_eq!(p.timestamp_ms(Some(60_000)), 1_000);
        // The largest multiple of the tick that divides the grid.
        assert_eq!(p.timestamp_ms(Some(1_500)), 750);
        assert_eq!(p.timestamp_ms(Some(1_010)), 10);
        assert_eq!(p.timestamp_ms(None), 1_000);
        // Timestamps at ticks, as asked.
        let fine = parse(&format!("[engine]\nas_fast_timestamp_ms = 0\n{replay}"));
        assert_eq!(fine.timestamp_ms(Some(60_000)), 10);
        // At most half the event time allowed in flight.
        let tight = parse(&format!("[engine]\nmax_inflight_ms = 600\n{replay}"));
        assert_eq!(tight.timestamp_ms(Some(60_000)), 300);
        assert_eq!(tight.engine.inflight_ms(), 600);
        // Unset, the in-flight bound is 30 s as fast as possible, 2 s in real time.
        assert_eq!(p.engine.inflight_ms(), 30_000);
        assert_eq!(p.engine.batch_records(), 4_096);
        // Generators as fast as possible too.
        let generated = parse("[sources.interactions]\nkind = \"generator\"\n");
        assert_eq!(generated.timestamp_ms(Some(60_000)), 1_000);
        // In real time, or with a live source, a timestamp is a tick.
        let live =
            parse(&format!("[engine]\ntiming = \"real_time\"\n{replay}")).with_run_defaults();
        assert_eq!(live.timestamp_ms(Some(1_000)), 10);
        assert_eq!(live.engine.inflight_ms(), 2_000);
        assert_eq!(live.engine.batch_records(), 1_024);
        let set = parse(&format!("[engine]\nbatch_size = 7\n{replay}")).with_run_defaults();
        assert_eq!(set.engine.batch_records(), 7);
        let tcp = parse(&format!(
            "{replay}[sources.interactions]\nkind = \"tcp\"\n[sources.listen]\naddress = \"127.0.0.1:0\"\n"
        ));
        assert_eq!(tcp.timestamp_ms(Some(1_000)), 10);
        // A live source keeps the real-time batch and in-flight bound.
        let tcp = tcp.with_run_defaults();
        assert_eq!(
            (tcp.engine.batch_records(), tcp.engine.inflight_ms()),
            (1_024, 2_000)
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = "[engine]\nworkers = 2\nwrokers = 3\n[sources.trades]\nkind = \"market\"\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("p.toml:3") && err.contains("wrokers"), "{err}");
        let text = "[sources.trades]\nkind = \"market\"\nsymbolz = 4\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("symbolz"), "{err}");
        let text = "[sources.trades]\nkind = \"market\"\nrate = 5.0\nseedz = 4\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("seedz"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let text = "[sources.trades]\nkind = \"market\"\nsymbols = 0\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("symbols"), "{err}");
        let text = "[sources.trades]\nkind = \"csv\"\npath = \"x\"\n[queries.stats_10s]\nslide_ms = 20000\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("stats_10s") && err.contains("slide"), "{err}");
        let text = "[engine]\nworkers = \"two\"\n[sources.trades]\nkind = \"market\"\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("p.toml:2"), "{err}");
        let text = "[sources.interactions]\nkind = \"generator\"\n[queries.forecasts]\ncount_forget_after_windows = 0\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("count_forget_after_windows"), "{err}");
    }

    #[test]
    fn sources_parse_with_their_settings() {
        let text = "[sources.trades]\nkind = \"market\"\nsymbols = 4\nrate = 100.0\ndisorder_ms = 50\n[sources.interactions]\nkind = \"csv\"\npath = \"/tmp/x.csv\"\n";
        let p = Pipeline::parse(text, "p.toml").unwrap();
        match p.sources.trades {
            Some(TradeSource::Market(m)) => {
                assert_eq!(
                    (m.symbols, m.arrivals.rate, m.arrivals.disorder_ms),
                    (4, 100.0, 50)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.sources.interactions,
            Some(InteractionSource::Csv(_))
        ));
    }

    #[test]
    fn every_pipeline_in_dataflows_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Pipeline::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 4, "{seen} pipelines");
    }

    #[test]
    fn query_errors_name_the_query_and_its_line() {
        let text = "[sources.trades]\nkind = \"market\"\n\n[queries.stats_10s]\nslide_ms = 20000\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.starts_with("p.toml:4: queries.stats_10s"), "{err}");
        let text = "[sources.trades]\nkind = \"market\"\n[queries.stats_10z]\nenabled = false\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(
            err.contains("p.toml:3") && err.contains("no such query"),
            "{err}"
        );
        let text = "[sources.trades]\nkind = \"market\"\n[queries.ewma]\nhalf_lief = 3\n";
        let err = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
        assert!(
            err.contains("p.toml:3") && err.contains("half_lief"),
            "{err}"
        );
    }

    #[test]
    fn fingerprints_name_what_differs() {
        let mut p = Pipeline::default();
        let a = p.checkpoint_fingerprint();
        // The layout may change (a rescale); key groups and queries may not.
        p.engine.workers = 3;
        assert_eq!(a, p.checkpoint_fingerprint());
        p.engine.key_groups = 128;
        p.engine.max_delay_ms += 1;
        let b = p.checkpoint_fingerprint();
        assert_eq!(
            crate::checkpoint::differences(&b, &a),
            "key_groups (256 there, 128 here), max_delay_ms (200 there, 201 here)"
        );
    }

    #[test]
    fn the_demo_parses() {
        let p = Pipeline::demo();
        assert_eq!(p.engine.timing, Timing::RealTime);
        assert!(p.sources.trades.is_some() && p.sources.interactions.is_some());
    }
}
