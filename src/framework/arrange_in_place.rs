//! Arranging a collection on the worker that holds it.
//!
//! differential's `arrange` (and so `count_total`, `distinct_total` on a
//! collection) first sends every update to the worker a hash of its key
//! names. A collection whose updates were already routed by a part of their
//! key — interactions by item, by user (`Build::interactions_by_item`,
//! `interactions_by_user`) — has each key on exactly one worker already, so
//! arranging in place (timely's `Pipeline` contract) gives the same
//! arrangement per key without sending each update a second time: on 2
//! workers that was half of the updates crossing between workers, and with
//! processes each of them serialized and sent over TCP.
//!
//! The caller vouches for the partitioning: every update of a key must be on
//! one worker. A key split over workers would be counted once per worker.

use differential_dataflow::operators::arrange::{arrangement::arrange_core, Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{KeyBatcher, KeySpine};
use differential_dataflow::{ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Pipeline;

/// An arrangement of keys (no values) at event-time timestamps.
pub type KeyArrangement<'scope, K> = Arranged<'scope, TraceAgent<KeySpine<K, u64, isize>>>;

/// Arranges `updates` by themselves where they are (see the module doc).
pub fn arrange_in_place<'scope, K>(
    updates: VecCollection<'scope, u64, K, isize>,
    name: &str,
) -> KeyArrangement<'scope, K>
where
    K: ExchangeData,
{
    let keyed = updates.map(|k| (k, ())).inner;
    arrange_core::<_, _, KeyBatcher<K, u64, isize>, KeySpine<K, u64, isize>>(
        keyed,
        Pipeline,
        name,
        KeyBatcher::new,
    )
}
