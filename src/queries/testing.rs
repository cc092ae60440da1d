//! A harness for the tests beside each query: runs one query, exactly as
//! registered, over a handful of records on one timely worker, and returns
//! its rows.
//!
//! Records are fed as the engine feeds them: in the order given, each sent
//! at its own event time, with the input held at the watermark (greatest
//! event time seen minus `max_delay_ms`); a record behind the watermark is
//! late and dropped (counted in [`Ran::late`]). So a test can put records out
//! of order within the bound and expect the in-order answer.

use super::{Build, Outlets, Query, QueryTables, SourceStreams};
use crate::checkpoint::state::StateRegistry;
use crate::framework::input_end::input_end;
use crate::probes::{AdvanceLog, Due, Latencies, LatencyProbe};
use crate::record::{Interaction, Symbol, Trade};
use crate::sinks::row_sink::{RowBatch, RowSink};
use crate::sinks::ResultFiles;
use crate::time::Tick;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::UnorderedInput;
use timely::dataflow::ProbeHandle;

/// A record of either stream, in arrival order.
#[derive(Clone, Debug)]
pub enum Record {
    Trade(Trade),
    Interaction(Interaction),
}

/// A trade; `seq` is its arrival number.
pub fn trade(ts_ms: u64, seq: u64, symbol: &str, price: f64, size: u64) -> Record {
    Record::Trade(Trade {
        ts_ms,
        seq,
        symbol: Symbol::parse(symbol.as_bytes()).expect("a valid symbol"),
        price,
        size,
    })
}

/// An interaction of `kind` ("view", "click", "purchase").
pub fn interaction(ts_ms: u64, seq: u64, user: u64, item: u64, kind: &str) -> Record {
    let kind = match kind {
        "view" => crate::record::InteractionKind::View,
        "click" => crate::record::InteractionKind::Click,
        "purchase" => crate::record::InteractionKind::Purchase,
        other => panic!("no interaction kind {other}"),
    };
    Record::Interaction(Interaction {
        ts_ms,
        seq,
        user,
        item,
        kind,
    })
}

/// What a run of the harness gave.
pub struct Ran<T> {
    /// The query's rows, in the order emitted.
    pub rows: Vec<T>,
    /// Records dropped as late.
    pub late: usize,
}

/// Collects the rows of type `T`.
struct Collect<T>(Mutex<Vec<T>>);

impl<T: Clone + Send + Sync + 'static> RowSink for Collect<T> {
    fn rows(&self, batch: &RowBatch<'_>) {
        if let Some(rows) = batch.of::<T>() {
            self.0.lock().unwrap().extend_from_slice(rows);
        }
    }
}

/// Runs `query` over `records` with the default tables (see the module doc).
pub fn run<T, Q>(query: Q, records: &[Record], max_delay_ms: u64) -> Ran<T>
where
    T: Clone + Send + Sync + 'static,
    Q: Query,
{
    run_with(query, &QueryTables::default(), records, max_delay_ms)
}

/// Runs `query` over `records`, with `tables` for the queries it reads.
pub fn run_with<T, Q>(
    query: Q,
    tables: &QueryTables,
    records: &[Record],
    max_delay_ms: u64,
) -> Ran<T>
where
    T: Clone + Send + Sync + 'static,
    Q: Query,
{
    let collected = Arc::new(Collect::<T>(Mutex::new(Vec::new())));
    let sink = Arc::clone(&collected) as Arc<dyn RowSink>;
    let tables = tables.clone();
    let records = records.to_vec();
    let late = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let files = ResultFiles::default();
        let sinks = [Arc::clone(&sink)];
        let states = StateRegistry::new(false, BTreeMap::new());
        let log = Rc::new(RefCell::new(AdvanceLog::default()));
        let latency = LatencyProbe::new(Due::InputAdvance(log), Arc::new(Latencies::default()));
        let counters = |name: &str| Arc::new(crate::probes::QueryCounters::new(name));
        let ((mut trade_in, trade_cap), (mut ix_in, ix_cap)) = worker.dataflow(|scope| {
            let (t_in, trades) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Trade>>>();
            let (i_in, interactions) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Interaction>>>();
            let sources = SourceStreams {
                trades_end: input_end(trades.clone(), &states).unwrap(),
                interactions_end: input_end(interactions.clone(), &states).unwrap(),
                trades,
                interactions,
            };
            let outlets = Outlets {
                files: &files,
                sinks: &sinks,
                probe: &probe,
            };
            let mut b = Build::new(
                scope,
                sources,
                &tables,
                &states,
                &latency,
                Tick::new(1),
                &counters,
                outlets,
            );
            b.add(&query).expect("the query builds");
            (t_in, i_in)
        });
        let (mut trade_cap, mut ix_cap) = (Some(trade_cap), Some(ix_cap));
        let mut max_seen = 0u64;
        let mut late = 0;
        for r in &records {
            let ts = match r {
                Record::Trade(t) => t.ts_ms,
                Record::Interaction(i) => i.ts_ms,
            };
            let watermark = max_seen.saturating_sub(max_delay_ms);
            if ts < watermark {
                late += 1;
                continue;
            }
            match r {
                Record::Trade(t) => {
                    let cap = trade_cap.as_ref().unwrap().delayed(&ts);
                    trade_in.activate().session(&cap).give(*t);
                }
                Record::Interaction(i) => {
                    let cap = ix_cap.as_ref().unwrap().delayed(&ts);
                    ix_in.activate().session(&cap).give(*i);
                }
            }
            max_seen = max_seen.max(ts);
            let watermark = max_seen.saturating_sub(max_delay_ms);
            trade_cap.as_mut().unwrap().downgrade(&watermark);
            ix_cap.as_mut().unwrap().downgrade(&watermark);
            worker.step();
        }
        trade_cap.take();
        ix_cap.take();
        drop((trade_in, ix_in));
        while !probe.done() {
            worker.step();
        }
        late
    });
    let rows = std::mem::take(&mut *collected.0.lock().unwrap());
    Ran { rows, late }
}
