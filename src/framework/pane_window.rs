//! The event-time window operator shared by every windowed aggregate.
//!
//! Semantics: a window of length `L` and slide `H` starting at `k*H` covers
//! `[k*H, k*H + L)` of event time (`ts_ms`, not the timely time). Records are
//! folded into panes of `gcd(L, H)` ms, one partial state per key and pane, so
//! the work per record is one fold whatever `L / H`; a window is the merge of
//! its `L / gcd` panes, done once when it closes. A window closes exactly when
//! the input frontier passes `start + L - 1`; its rows are emitted at that
//! time and its panes are released once no open window needs them. Windows
//! with no record produce no row. When the input ends, every window closes.
//! Floating-point aggregates fold their records in (`ts_ms`, `seq`) order once
//! the frontier passes them, so their results are bit-for-bit the same for any
//! arrival order, worker count or checkpoint.
//!
//! The operator expects its input already partitioned by key (it runs with the
//! pipeline pact after an exchange), and holds a single capability: at the
//! time of the earliest row it still owes.

use super::by_time::ByTime;
use super::HeldCapability;
use crate::checkpoint::state::StateRegistry;
use crate::probes::{LatencyProbe, QueryCounters};
use crate::rescale::groups::KeyGroups;
use crate::rescale::parts::{
    restored_entries, restored_rests, save_by_group, Grouped, RestoredParts, RouteKey, SavedParts,
};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

/// Length and slide of a window, in ms of event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub length_ms: u64,
    pub slide_ms: u64,
}

impl WindowSpec {
    pub fn tumbling(size_ms: u64) -> Self {
        WindowSpec {
            length_ms: size_ms,
            slide_ms: size_ms,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.length_ms == 0 || self.slide_ms == 0 {
            return Err("window length and slide must be positive".into());
        }
        if self.slide_ms > self.length_ms {
            return Err(format!(
                "window slide ({} ms) must not exceed its length ({} ms)",
                self.slide_ms, self.length_ms
            ));
        }
        Ok(())
    }

    /// The pane size: the greatest common divisor of length and slide.
    pub fn pane_ms(&self) -> u64 {
        crate::time::gcd(self.length_ms, self.slide_ms)
    }

    /// The start of the earliest window that contains `ts_ms`.
    pub fn first_window_containing(&self, ts_ms: u64) -> u64 {
        // Smallest multiple of slide strictly greater than ts - length.
        match ts_ms.checked_sub(self.length_ms) {
            None => 0,
            Some(below) => (below / self.slide_ms + 1) * self.slide_ms,
        }
    }
}

/// A mergeable per-key aggregate over a window: one file in operators/ each.
pub trait WindowAggregate: 'static {
    type In: Clone + 'static;
    /// The key records are partitioned by (its route key: what the exchange hashes).
    type Key: Copy + Eq + Hash + Ord + Serialize + DeserializeOwned + RouteKey + 'static;
    type State: Clone + Serialize + DeserializeOwned + 'static;
    type Out: Clone + 'static;

    /// Whether folding records in a different order can change a result's
    /// last bits (floating-point sums). Such aggregates fold in (`ts_ms`,
    /// `seq`) order, so results are the same bits whatever the arrival order,
    /// worker count or checkpoints; exact ones (counts) fold on arrival.
    const ORDER_SENSITIVE: bool;

    fn key(&self, record: &Self::In) -> Self::Key;
    fn ts_ms(&self, record: &Self::In) -> u64;
    /// Breaks `ts_ms` ties in the fold order.
    fn seq(&self, record: &Self::In) -> u64;
    /// The state of a pane holding only `record`.
    fn init(&self, record: &Self::In) -> Self::State;
    fn add(&self, state: &mut Self::State, record: &Self::In);
    fn merge(&self, into: &mut Self::State, other: &Self::State);
    /// The row for a closed window, if it makes one.
    fn finish(
        &self,
        key: Self::Key,
        window_start_ms: u64,
        state: &Self::State,
    ) -> Option<Self::Out>;
}

/// Partial states of every key, per pane, for the windows still open: the
/// operator's whole state, saved as it is by checkpoints.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PaneStore<A: WindowAggregate> {
    spec: WindowSpec,
    pane_ms: u64,
    panes: BTreeMap<u64, FxHashMap<A::Key, A::State>>,
    /// Windows starting before this were emitted already.
    next_window_ms: u64,
}

impl<A: WindowAggregate> PaneStore<A> {
    pub fn new(spec: WindowSpec) -> Self {
        PaneStore {
            spec,
            pane_ms: spec.pane_ms(),
            panes: BTreeMap::new(),
            next_window_ms: 0,
        }
    }

    /// Folds one record into its pane.
    #[inline]
    pub fn insert(&mut self, agg: &A, record: &A::In) {
        let ts = agg.ts_ms(record);
        let pane = ts - ts % self.pane_ms;
        let states = self.panes.entry(pane).or_default();
        match states.get_mut(&agg.key(record)) {
            Some(state) => agg.add(state, record),
            None => {
                states.insert(agg.key(record), agg.init(record));
            }
        }
    }

    /// The start and last ms of the next window to close, if any data is pending.
    pub fn next_window(&self) -> Option<(u64, u64)> {
        let (&first_pane, _) = self.panes.first_key_value()?;
        let start = self
            .spec
            .first_window_containing(first_pane)
            .max(self.next_window_ms);
        Some((start, start + self.spec.length_ms - 1))
    }

    /// Emits the next window's rows (sorted by key) and releases the panes no open window needs.
    pub fn close_next(&mut self, agg: &A, rows: &mut Vec<A::Out>) -> Option<u64> {
        let (start, _) = self.next_window()?;
        let end = start + self.spec.length_ms;
        let mut keyed: Vec<(A::Key, A::Out)> = Vec::new();
        if self.spec.length_ms == self.pane_ms {
            if let Some(states) = self.panes.get(&start) {
                keyed.extend(
                    states
                        .iter()
                        .filter_map(|(k, s)| agg.finish(*k, start, s).map(|row| (*k, row))),
                );
            }
        } else {
            let mut merged: FxHashMap<A::Key, A::State> = FxHashMap::default();
            for (_, states) in self.panes.range(start..end) {
                for (key, state) in states {
                    match merged.get_mut(key) {
                        Some(m) => agg.merge(m, state),
                        None => {
                            merged.insert(*key, state.clone());
                        }
                    }
                }
            }
            keyed.extend(
                merged
                    .iter()
                    .filter_map(|(k, s)| agg.finish(*k, start, s).map(|row| (*k, row))),
            );
        }
        keyed.sort_by_key(|(k, _)| *k);
        rows.extend(keyed.into_iter().map(|(_, row)| row));
        self.next_window_ms = start + self.spec.slide_ms;
        while let Some((&pane, _)) = self.panes.first_key_value() {
            if pane + self.pane_ms > self.next_window_ms {
                break;
            }
            self.panes.pop_first();
        }
        Some(start)
    }

    pub fn is_empty(&self) -> bool {
        self.panes.is_empty()
    }
}

/// Saved in key groups: each (pane, key) state goes with its key; the rest
/// is the spec and `next_window_ms`, joined by the greatest (a window before
/// it was emitted on every worker that had rows of it: at the cut, each
/// owed only windows ending at or after the epoch).
impl<A: WindowAggregate> Grouped for PaneStore<A> {
    fn save_parts(&mut self, groups: KeyGroups) -> anyhow::Result<SavedParts> {
        let panes = std::mem::take(&mut self.panes);
        let rest = bincode::serialize(&*self);
        let entries = panes
            .iter()
            .flat_map(|(p, m)| m.iter().map(move |(k, s)| (k.route_key(), (p, k, s))));
        let by_group = save_by_group(entries, groups);
        self.panes = panes;
        Ok(SavedParts {
            rest: rest?,
            groups: by_group?,
        })
    }

    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()> {
        for other in restored_rests::<PaneStore<A>>(parts)? {
            self.spec = other.spec;
            self.pane_ms = other.pane_ms;
            self.next_window_ms = self.next_window_ms.max(other.next_window_ms);
        }
        for (pane, key, state) in restored_entries::<(u64, A::Key, A::State)>(parts)? {
            self.panes.entry(pane).or_default().insert(key, state);
        }
        Ok(())
    }
}

/// Applies a window aggregate to a key-partitioned stream (see the module doc).
/// Its pane store is the state `name` of `states`.
pub fn window<'scope, A: WindowAggregate>(
    input: Stream<'scope, u64, Vec<A::In>>,
    name: &str,
    spec: WindowSpec,
    agg: A,
    counters: Arc<QueryCounters>,
    latency: LatencyProbe,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<A::Out>>> {
    let store = states.cell(name, || PaneStore::<A>::new(spec))?;
    Ok(input.unary_frontier(Pipeline, name, move |initial, _info| {
        let mut held = HeldCapability::default();
        // A restored store owes the rows of its open windows.
        held.hold(initial);
        held.settle(store.borrow().next_window().map(|(_, last_ms)| last_ms));
        let mut rows = Vec::new();
        // Order-sensitive aggregates: records by the time they travelled at,
        // until the frontier passes it (then no earlier record can come).
        let mut pending: ByTime<A::In> = ByTime::default();
        move |(input, frontier), output| {
            let mut store = store.borrow_mut();
            input.for_each_stamp(|cap, batches| {
                let Some(cap) = cap.retain_least(output.output_index()) else {
                    return;
                };
                let time = *cap.time();
                held.hold(cap);
                let mut consumed = 0;
                for batch in batches {
                    consumed += batch.len() as u64;
                    if A::ORDER_SENSITIVE {
                        pending.at(time).append(batch);
                    } else {
                        for record in batch.drain(..) {
                            store.insert(&agg, &record);
                        }
                    }
                }
                counters.add_consumed(consumed);
            });
            if A::ORDER_SENSITIVE {
                let f = frontier.frontier().first().copied().unwrap_or(u64::MAX);
                let ready = pending.release(f, |r| agg.ts_ms(r), |r| (agg.ts_ms(r), agg.seq(r)));
                for record in ready {
                    store.insert(&agg, &record);
                }
            }
            while let Some((start, last_ms)) = store.next_window() {
                if frontier.less_equal(&last_ms) {
                    break;
                }
                rows.clear();
                store.close_next(&agg, &mut rows);
                if !rows.is_empty() {
                    counters.add_rows(rows.len() as u64);
                    latency.window_closed(start + spec.length_ms);
                    output
                        .session(&held.at(last_ms))
                        .give_iterator(rows.drain(..));
                }
            }
            let least_pending = pending.least_time();
            let next_close = store.next_window().map(|(_, last_ms)| last_ms);
            held.settle([least_pending, next_close].into_iter().flatten().min());
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pane_is_the_gcd() {
        assert_eq!(
            WindowSpec {
                length_ms: 10_000,
                slide_ms: 1_000
            }
            .pane_ms(),
            1_000
        );
        assert_eq!(
            WindowSpec {
                length_ms: 10_000,
                slide_ms: 4_000
            }
            .pane_ms(),
            2_000
        );
        assert_eq!(WindowSpec::tumbling(60_000).pane_ms(), 60_000);
    }

    #[test]
    fn first_window_containing_a_time() {
        let hop = WindowSpec {
            length_ms: 10_000,
            slide_ms: 1_000,
        };
        // Windows [91000, 101000) .. [100000, 110000) contain 100_000.
        assert_eq!(hop.first_window_containing(100_000), 91_000);
        assert_eq!(hop.first_window_containing(100_999), 91_000);
        assert_eq!(hop.first_window_containing(5), 0);
        assert_eq!(
            WindowSpec::tumbling(1_000).first_window_containing(1_999),
            1_000
        );
    }
}
