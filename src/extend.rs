//! Extending the engine from a program that embeds it, without touching the
//! crate: registered on a [`Job`](crate::engine::Job) before it runs.
//!
//! - a **trade source** of one's own (any [`Source`]): one instance per
//!   worker, each producing that worker's share of the stream;
//! - **row sinks** ([`RowSink`]) that receive the result rows as they are
//!   computed, beside (or instead of) the CSV files;
//! - **trade queries**: new per-symbol operators over the trade stream,
//!   written as an [`OrderedLogic`] (records in (`ts_ms`, `seq`) order per
//!   worker, the frontier, the end of input). A registered query is a full
//!   member of the dataflow: it runs on every worker after the exchange by
//!   symbol, its rows go to `NAME.csv` in the output folder, its counters to
//!   `metrics.json`, its state into checkpoints, and the run's probe waits
//!   for it.
//!
//! See `examples/custom_source_and_sink.rs` and `examples/rsi_operator.rs`.

use crate::checkpoint::state::StateRegistry;
use crate::metrics::QueryCounters;
use crate::operators::input_end::InputEnd;
use crate::operators::ordered::{ordered, OrderedLogic};
use crate::record::Trade;
use crate::sinks::row_sink::RowSink;
use crate::sinks::{CsvSink, Flush};
use crate::sources::Source;
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::core::{Inspect, Probe};
use timely::dataflow::{ProbeHandle, Stream};

/// Makes worker `index` of `peers` its share of the trade stream.
pub type TradeSourceFactory =
    Arc<dyn Fn(usize, usize) -> anyhow::Result<Box<dyn Source<Trade>>> + Send + Sync>;

/// What a program embedding eddy added to a job.
#[derive(Default, Clone)]
pub struct Extensions {
    pub trade_source: Option<TradeSourceFactory>,
    pub sinks: Vec<Arc<dyn RowSink>>,
    pub trade_queries: Vec<Arc<TradeQuery>>,
}

/// What a trade query is built from, on one worker.
pub(crate) struct QueryInputs<'scope, 'a> {
    /// The trades, exchanged by symbol: each worker sees all of its symbols' trades.
    pub trades: &'a Stream<'scope, u64, Vec<Trade>>,
    pub end: &'a InputEnd<'scope>,
    pub states: &'a StateRegistry,
    pub counters: Arc<QueryCounters>,
    pub probe: &'a ProbeHandle<u64>,
}

/// The query's file, once opened (none without an output folder).
type SinkSlot<T> = Arc<Mutex<Option<Arc<CsvSink<T>>>>>;
type Opener = Box<dyn Fn(&Path, bool) -> anyhow::Result<Arc<dyn Flush>> + Send + Sync>;
type Builder = Box<dyn for<'s, 'a> Fn(QueryInputs<'s, 'a>) -> anyhow::Result<()> + Send + Sync>;

/// A per-symbol operator over the trade stream (see the module doc).
pub struct TradeQuery {
    name: String,
    open: Opener,
    build: Builder,
}

impl TradeQuery {
    /// The query `name` (its file is `NAME.csv`, with `header`): `make()`
    /// gives each worker a fresh logic.
    pub fn ordered<L>(
        name: &str,
        header: &'static [&'static str],
        make: impl Fn() -> L + Send + Sync + 'static,
    ) -> Self
    where
        L: OrderedLogic<In = Trade>,
        L::Out: Serialize,
    {
        // The file is opened once per process, before the workers start.
        let sink: SinkSlot<L::Out> = Arc::default();
        let file = format!("{name}.csv");
        let opened = Arc::clone(&sink);
        let open: Opener = Box::new(move |dir, resume| {
            let s = CsvSink::create(dir, &file, header, resume)?;
            *opened.lock().expect("sink slot") = Some(Arc::clone(&s));
            Ok(s as Arc<dyn Flush>)
        });
        let query = name.to_string();
        let build: Builder = Box::new(move |inputs: QueryInputs| {
            let rows = ordered(
                inputs.trades.clone(),
                inputs.end,
                &query,
                make(),
                inputs.counters,
                inputs.states,
            )?;
            let sink = sink.lock().expect("sink slot").clone();
            rows.inspect_core(move |event| crate::sinks::write_event(&sink, event))
                .probe_with(inputs.probe);
            Ok(())
        });
        TradeQuery {
            name: name.to_string(),
            open,
            build,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates (or, resuming, reopens) the query's file in `dir`.
    pub(crate) fn open(&self, dir: &Path, resume: bool) -> anyhow::Result<Arc<dyn Flush>> {
        (self.open)(dir, resume)
    }

    /// Adds the query to a worker's dataflow.
    pub(crate) fn build(&self, inputs: QueryInputs) -> anyhow::Result<()> {
        (self.build)(inputs)
    }
}
