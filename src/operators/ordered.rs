//! The machinery for order-sensitive per-key computations (returns, EWMA,
//! volatility): records are buffered until the frontier passes their `ts_ms`,
//! then handed to the logic in (`ts_ms`, `seq`) order.
//!
//! Once the input frontier is past `f`, every record still to come has
//! `ts_ms >= f` (a record travels at its coarsened event time), so the records
//! with `ts_ms < f` are final and their order is exact. State is O(keys +
//! records within the disorder bound), never O(window). Output rows travel at
//! the time of the operator's single capability, held at the least time of a
//! buffered record or of a row the logic still owes.

use crate::metrics::QueryCounters;
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// An order-sensitive computation over a key-partitioned stream.
pub trait OrderedLogic: 'static {
    type In: Clone + 'static;
    type Out: Clone + 'static;
    /// The record's (`ts_ms`, `seq`).
    fn order(&self, record: &Self::In) -> (u64, u64);
    /// Takes the next record in (`ts_ms`, `seq`) order.
    fn on_record(&mut self, record: &Self::In, out: &mut Vec<Self::Out>);
    /// Every record before `frontier_ms` was taken (`None`: the input ended):
    /// emit what that completes.
    fn on_frontier(&mut self, frontier_ms: Option<u64>, out: &mut Vec<Self::Out>);
    /// The earliest event time at which `on_frontier` may still emit, if any.
    fn owes_at(&self) -> Option<u64>;
}

/// Applies `logic` to `input` in (`ts_ms`, `seq`) order (see the module doc).
pub fn ordered<'scope, L: OrderedLogic>(
    input: Stream<'scope, u64, Vec<L::In>>,
    name: &str,
    mut logic: L,
    counters: Arc<QueryCounters>,
) -> Stream<'scope, u64, Vec<L::Out>> {
    input.unary_frontier(Pipeline, name, move |_initial, _info| {
        let mut buffer: Vec<(u64, u64, L::In)> = Vec::new();
        let mut held: Option<Capability<u64>> = None;
        let mut rows = Vec::new();
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, batches| {
                let Some(cap) = cap.retain_least(output.output_index()) else {
                    return;
                };
                if held.as_ref().is_none_or(|h| cap.time() < h.time()) {
                    held = Some(cap);
                }
                let mut consumed = 0;
                for batch in batches {
                    consumed += batch.len() as u64;
                    for record in batch.drain(..) {
                        let (ts, seq) = logic.order(&record);
                        buffer.push((ts, seq, record));
                    }
                }
                counters.add_consumed(consumed);
            });
            let Some(cap) = held.as_ref() else { return };
            let f = frontier.frontier().first().copied();
            let ready_below = f.unwrap_or(u64::MAX);
            if buffer.iter().any(|(ts, _, _)| *ts < ready_below) {
                buffer.sort_unstable_by_key(|(ts, seq, _)| (*ts, *seq));
                let ready = buffer.partition_point(|(ts, _, _)| *ts < ready_below);
                for (_, _, record) in buffer.drain(..ready) {
                    logic.on_record(&record, &mut rows);
                }
            }
            logic.on_frontier(f, &mut rows);
            if !rows.is_empty() {
                counters.add_rows(rows.len() as u64);
                output.session(cap).give_iterator(rows.drain(..));
            }
            let least_buffered = buffer.iter().map(|(ts, _, _)| *ts).min();
            let owes = [least_buffered, logic.owes_at()]
                .into_iter()
                .flatten()
                .min();
            match owes {
                None => held = None,
                Some(t) => {
                    let cap = held.as_mut().expect("held above");
                    // Buffered records keep their message times, which may be below
                    // their ts: never move the capability past a buffered record's ts.
                    let t = f.map_or(t, |f| t.min(f.max(*cap.time())));
                    if t > *cap.time() {
                        cap.downgrade(&t);
                    }
                }
            }
        }
    })
}
