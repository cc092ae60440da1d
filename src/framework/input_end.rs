//! The end of an input, made known to every worker.
//!
//! Semantics: once the input's frontier is empty, each worker emits the
//! greatest event time (`ts_ms`) of the records it sent into the dataflow, and
//! every worker receives every worker's value (a broadcast). The greatest of
//! them is the input's last event time, the same for any worker count,
//! scheduling or checkpoint.
//!
//! Why: an operator that closes windows as the frontier passes them would
//! otherwise close, at the end, the windows the frontier happened to be seen
//! passing before it became empty — which depends on how the input was split
//! among workers and on when the operator was scheduled. With the last event
//! time it closes exactly the windows that end at or before it (see
//! `ordered.rs`).
//!
//! The operator's capability follows its input frontier, so it holds nothing
//! back; the greatest time seen is checkpointed state.

use crate::checkpoint::state::StateRegistry;
use crate::record::Event;
use crate::rescale::parts::Greatest;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::Stream;

/// The stream of the input's last event time: one value from each worker, on
/// every worker, when the input ends.
pub type InputEnd<'scope> = Stream<'scope, u64, Vec<u64>>;

/// Watches `input` (on each worker, before any exchange) for its end (see the module doc).
pub fn input_end<'scope, E: Event>(
    input: Stream<'scope, u64, Vec<E>>,
    states: &StateRegistry,
) -> anyhow::Result<InputEnd<'scope>> {
    let name = format!("{}/end", E::STREAM);
    // Rescaled, a worker restores the greatest of the old workers' values:
    // the greatest over every worker is what counts.
    let last_seen = states.cell(&name, Greatest::default)?;
    let ends = input.unary_frontier(Pipeline, &name, move |initial, _info| {
        let mut cap = Some(initial);
        move |(input, frontier), output| {
            let mut last = last_seen.borrow_mut();
            let last = &mut last.0;
            input.for_each_stamp(|_cap, batches| {
                let greatest = batches.flat_map(|b| b.iter()).map(E::ts_ms).max();
                *last = (*last).max(greatest);
            });
            match frontier.frontier().first() {
                Some(t) => {
                    if let Some(c) = cap.as_mut() {
                        if c.time() < t {
                            c.downgrade(t);
                        }
                    }
                }
                None => {
                    if let (Some(c), Some(t)) = (cap.take(), *last) {
                        output.session(&c).give(t);
                    }
                }
            }
        }
    });
    Ok(ends.broadcast())
}
