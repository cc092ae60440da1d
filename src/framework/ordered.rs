//! The machinery for order-sensitive per-key computations (returns, EWMA,
//! volatility): records are buffered until the frontier passes their `ts_ms`,
//! then handed to the logic in (`ts_ms`, `seq`) order.
//!
//! Once the input frontier is past `f`, every record still to come has
//! `ts_ms >= f` (a record travels at its coarsened event time), so the records
//! with `ts_ms < f` are final and their order is exact (the buffering is
//! `by_time.rs`). State is O(keys + records within the disorder bound), never
//! O(window). Output rows travel at
//! the time of the operator's single capability, held at the least time of a
//! buffered record or of a row the logic still owes.
//!
//! When the input ends, the logic is first told that the frontier is one past
//! the input's last event time (the greatest over all workers, from
//! `input_end.rs`), then that the input ended. What closes at the end is thus
//! what ends at or before the last event, whatever frontiers the operator
//! happened to see before.
//! Keys (`ts_ms`, `seq`) are unique, so the order is exact.

use super::by_time::ByTime;
use super::input_end::InputEnd;
use super::HeldCapability;
use crate::checkpoint::state::StateRegistry;
use crate::probes::QueryCounters;
use crate::rescale::parts::Grouped;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

/// An order-sensitive computation over a key-partitioned stream.
///
/// Its state is saved in key groups ([`Grouped`], usually by
/// `grouped_by_map!` over its per-key map), so a rescaled run restores
/// each key's part on the worker that owns it now.
pub trait OrderedLogic: Grouped + Serialize + DeserializeOwned + 'static {
    type In: Clone + 'static;
    type Out: Clone + 'static;
    /// The record's (`ts_ms`, `seq`).
    fn order(&self, record: &Self::In) -> (u64, u64);
    /// Takes the next record in (`ts_ms`, `seq`) order.
    fn on_record(&mut self, record: &Self::In, out: &mut Vec<Self::Out>);
    /// Every record before `frontier_ms` was taken (`None`: the input ended,
    /// after a last call with the input's last event time + 1): emit what
    /// that completes.
    fn on_frontier(&mut self, frontier_ms: Option<u64>, out: &mut Vec<Self::Out>);
    /// The earliest event time at which `on_frontier` may still emit, if any.
    fn owes_at(&self) -> Option<u64>;
}

/// Applies `logic` to `input` in (`ts_ms`, `seq`) order (see the module doc);
/// `input_end` tells the end of the source stream `input` derives from. The logic is the state `name` of `states`. Checkpoints are taken when no
/// record is buffered (the dataflow is quiet at the epoch), so the logic is
/// the whole state.
pub fn ordered<'scope, L: OrderedLogic>(
    input: Stream<'scope, u64, Vec<L::In>>,
    input_end: &InputEnd<'scope>,
    name: &str,
    logic: L,
    counters: Arc<QueryCounters>,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<L::Out>>> {
    let logic = states.cell(name, || logic)?;
    let input_end = input_end.clone();
    Ok(input.binary_frontier(
        input_end,
        Pipeline,
        Pipeline,
        name,
        move |initial, _info| {
            // Buffered records by the time they travelled at (a lower bound of their ts),
            // with their (`ts_ms`, `seq`).
            let mut pending: ByTime<(u64, u64, L::In)> = ByTime::default();
            let mut held = HeldCapability::default();
            // A restored logic may owe rows.
            held.hold(initial);
            held.settle(logic.borrow().owes_at());
            let mut rows = Vec::new();
            let mut last_event_ms: Option<u64> = None;
            move |(input, frontier), (ends, ends_frontier), output| {
                ends.for_each_stamp(|_cap, batches| {
                    let greatest = batches.flat_map(|b| b.drain(..)).max();
                    last_event_ms = last_event_ms.max(greatest);
                });
                let mut logic = logic.borrow_mut();
                input.for_each_stamp(|cap, batches| {
                    let Some(cap) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    let slot = pending.at(*cap.time());
                    held.hold(cap);
                    let mut consumed = 0;
                    for batch in batches {
                        consumed += batch.len() as u64;
                        for record in batch.drain(..) {
                            let (ts, seq) = logic.order(&record);
                            slot.push((ts, seq, record));
                        }
                    }
                    counters.add_consumed(consumed);
                });
                if !held.is_held() {
                    return;
                }
                let f = frontier.frontier().first().copied();
                let ready_below = f.unwrap_or(u64::MAX);
                for (_, _, record) in pending.release(ready_below, |r| r.0, |r| (r.0, r.1)) {
                    logic.on_record(&record, &mut rows);
                }
                match (f, ends_frontier.is_empty()) {
                    (Some(_), _) => logic.on_frontier(f, &mut rows),
                    // Every worker's last event time is in: the end is known.
                    (None, true) => {
                        if let Some(last) = last_event_ms {
                            logic.on_frontier(Some(last + 1), &mut rows);
                        }
                        logic.on_frontier(None, &mut rows);
                    }
                    (None, false) => {}
                }
                if !rows.is_empty() {
                    counters.add_rows(rows.len() as u64);
                    let cap = held.get().expect("held above");
                    output.session(cap).give_iterator(rows.drain(..));
                }
                let least_pending = pending.least_time();
                held.settle([least_pending, logic.owes_at()].into_iter().flatten().min());
            }
        },
    ))
}
