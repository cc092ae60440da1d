//! I2 `activity_60s`: one row per tumbling window (default 60 000 ms) with the
//! distinct active users, the interactions, their ratio, and the items with
//! the most and the fewest interactions (items with none are not counted; ties
//! go to the smallest item_id).
//!
//! Two phases. First, each worker counts its records per (window, user) and
//! per (window, item) in a hash map (`framework/period_counts.rs`) and, when
//! the window closes, hands them on as one weighted update per key at the
//! window's last millisecond. Then differential dataflow merges them, in two
//! branches that read the interactions as other queries already route them:
//! by user for the (window, user) collection (`distinct_total` where each
//! user lives, then `count_total` per window of the workers' partial counts;
//! the interactions per window are counted from it too), by item for the
//! (window, item) collection (`count_total` where each item lives, then a
//! `reduce` per window to its max and min item). Both arrange in place
//! (`framework/arrange_in_place.rs`): no update is sent to a hash of its key
//! a second time. Each update is retracted at its window's end, so a closed
//! window's state leaves the arrangements. One time per window is the
//! granularity the query needs (its result is read only once the window
//! closes): the arrangements hold one batch per window, `reduce` replays a
//! window's history once, and the first phase delays nothing. Counting every
//! record into differential at its window's end instead cost three sorts
//! and a merge per record: a third of the interaction queries' time. A final
//! operator takes each window's accumulated result, once the frontier passes
//! the window's end.
//! Output: `window_start_ms,users,interactions,avg_per_user,max_item,max_count,min_item,min_count`.

use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::framework::arrange_in_place::arrange_in_place;
use crate::framework::period_counts::{period_counts, OpenCounts};
use crate::framework::{count_consumed, HeldCapability};
use crate::checkpoint::state::StateRegistry;
use crate::probes::{LatencyProbe, QueryCounters};
use crate::record::Interaction;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::Stream;

/// Pipeline `[queries.activity_60s]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    pub enabled: bool,
    pub size_ms: u64,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            enabled: true,
            size_ms: 60_000,
        }
    }
}

impl QueryConfig for ActivityConfig {
    const ID: &'static str = "activity_60s";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(self.size_ms)
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        if self.size_ms == 0 {
            return Err("size_ms must be positive".into());
        }
        Ok(())
    }
    fn reads(&self) -> &[Input] {
        &[Input::Interactions]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<Activity>().identified_by(&["window_start_ms"])
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let rows = activity(
            b.interactions_by_user(),
            b.interactions_by_item(),
            self,
            b.query_counters(),
            b.latency.clone(),
            b.states,
        )?;
        b.emit(rows);
        Ok(())
    }
}


/// A row of `activity_60s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Activity {
    pub window_start_ms: u64,
    pub users: u64,
    pub interactions: u64,
    pub avg_per_user: f64,
    pub max_item: u64,
    pub max_count: u64,
    pub min_item: u64,
    pub min_count: u64,
}

/// (max_item, max_count, min_item, min_count) of a window.
type Extremes = (u64, u64, u64, u64);

/// One part of a window's result, as the differential computations maintain it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    Users(u64),
    Interactions(u64),
    /// (max_item, max_count, min_item, min_count)
    Extremes(u64, u64, u64, u64),
}

/// I2 over the interaction stream, routed by user and by item (see the module doc).
pub fn activity<'scope>(
    by_user: Stream<'scope, u64, Vec<Interaction>>,
    by_item: Stream<'scope, u64, Vec<Interaction>>,
    config: &ActivityConfig,
    counters: Arc<QueryCounters>,
    latency: LatencyProbe,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<Activity>>> {
    let size = config.size_ms;
    // Each interaction reaches both branches; it is consumed once.
    let by_user = count_consumed(by_user, Arc::clone(&counters));
    let users = window_partials(by_user, states, "open_users", size, |r| r.user)?;
    let items = window_partials(by_item, states, "open_items", size, |r| r.item)?;

    // A user's records are all on its worker: distinct (window, user) in
    // place, then each worker's count of distinct users per window is a
    // partial the window's worker adds up.
    let distinct_users = arrange_in_place(until_window_end(users.clone()), "activity_60s/users")
        .distinct_total()
        .map(|(w, _)| w)
        .consolidate_stream()
        .count_total()
        .map(|(w, n)| (w, Part::Users(n as u64)));
    // Summed on the worker first: one partial per window leaves it.
    let total = until_window_end(users.map(|(w, _)| w).consolidate_stream())
        .count_total()
        .map(|(w, n)| (w, Part::Interactions(n as u64)));
    // An item's records are all on its worker: counts per (window, item) in
    // place; the window's worker picks the extremes among them.
    let extremes = arrange_in_place(until_window_end(items), "activity_60s/items")
        .count_total()
        .map(|((w, item), n)| (w, (n as u64, item)))
        .reduce(
            |_w, counts: &[(&(u64, u64), isize)], out: &mut Vec<(Extremes, isize)>| {
                // Sorted by (count, item): the first is the minimum with the smallest item;
                // the first of the largest count is the maximum with the smallest item.
                let (min_count, min_item) = *counts[0].0;
                let max_count = counts[counts.len() - 1].0 .0;
                let first_max = counts.partition_point(|(v, _)| v.0 < max_count);
                let max_item = counts[first_max].0 .1;
                out.push(((max_item, max_count, min_item, min_count), 1));
            },
        )
        .map(|(w, (a, b, c, d))| (w, Part::Extremes(a, b, c, d)));

    Ok(close_windows(
        distinct_users.concat(total).concat(extremes),
        size,
        counters,
        latency,
    ))
}

/// Retracts each update at its window's end (one millisecond after its
/// time), so a closed window's state leaves the arrangements. The partials
/// are already one update per key and window: nothing to consolidate.
fn until_window_end<'scope, D>(
    updates: VecCollection<'scope, u64, D, isize>,
) -> VecCollection<'scope, u64, D, isize>
where
    D: differential_dataflow::ExchangeData,
{
    updates
        .inner
        .flat_map(|(d, t, n)| [(d.clone(), t, n), (d, t + 1, -n)])
        .as_collection()
}

/// The first phase of a branch keyed by `key`: a worker's record counts per
/// (window, key), one update per key when the window closes
/// ([`period_counts`]). They are the state `activity_60s/NAME` (on the
/// worker the key belongs to, where they are restored).
fn window_partials<'scope>(
    records: Stream<'scope, u64, Vec<Interaction>>,
    states: &StateRegistry,
    name: &str,
    size: u64,
    key: fn(&Interaction) -> u64,
) -> anyhow::Result<VecCollection<'scope, u64, (u64, u64), isize>> {
    let open = states.cell(&format!("activity_60s/{name}"), OpenCounts::new)?;
    Ok(period_counts(records, open, name, size, |r| r.ts_ms, key))
}

/// Gathers each window's parts and emits its row once the frontier passes its end.
fn close_windows<'scope>(
    parts: VecCollection<'scope, u64, (u64, Part), isize>,
    size: u64,
    counters: Arc<QueryCounters>,
    latency: LatencyProbe,
) -> Stream<'scope, u64, Vec<Activity>> {
    let by_window = Exchange::new(|((w, _), _, _): &((u64, Part), u64, isize)| *w);
    parts
        .inner
        .unary_frontier(by_window, "activity_60s", move |_initial, _info| {
            let mut pending: BTreeMap<u64, BTreeMap<Part, isize>> = BTreeMap::new();
            let mut held = HeldCapability::default();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    let mut kept = false;
                    for batch in batches {
                        for ((w, part), time, diff) in batch.drain(..) {
                            // Updates at or after the window's end are its retractions: not part of its result.
                            if time < w + size {
                                *pending.entry(w).or_default().entry(part).or_insert(0) += diff;
                                kept = true;
                            }
                        }
                    }
                    if let Some(c) = cap.retain_least(output.output_index()).filter(|_| kept) {
                        held.hold(c);
                    }
                });
                while let Some((&w, _)) = pending.first_key_value() {
                    if frontier.less_equal(&(w + size - 1)) {
                        break;
                    }
                    let parts = pending.remove(&w).expect("first window");
                    let current = |pick: fn(&Part) -> bool| {
                        parts
                            .iter()
                            .find(|(p, d)| **d > 0 && pick(p))
                            .map(|(p, _)| *p)
                    };
                    let (
                        Some(Part::Users(users)),
                        Some(Part::Interactions(n)),
                        Some(Part::Extremes(max_item, max_count, min_item, min_count)),
                    ) = (
                        current(|p| matches!(p, Part::Users(_))),
                        current(|p| matches!(p, Part::Interactions(_))),
                        current(|p| matches!(p, Part::Extremes(..))),
                    )
                    else {
                        continue;
                    };
                    counters.add_rows(1);
                    latency.window_closed(w + size);
                    output.session(&held.at(w + size - 1)).give(Activity {
                        window_start_ms: w,
                        users,
                        interactions: n,
                        avg_per_user: n as f64 / users as f64,
                        max_item,
                        max_count,
                        min_item,
                        min_count,
                    });
                }
                held.settle(pending.first_key_value().map(|(w, _)| w + size - 1));
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{interaction, run};

    const T: u64 = 1_700_000_040_000;

    #[test]
    fn users_interactions_and_extreme_items_per_window() {
        // Window T: users 1 and 2; item 5 twice, items 6 and 4 once: the
        // maximum is 5, the minimum the smaller of the tied items, 4.
        let records = [
            interaction(T + 1, 0, 1, 5, "view"),
            interaction(T + 3, 2, 1, 6, "click"),
            interaction(T + 2, 1, 2, 5, "view"),
            interaction(T + 4, 3, 2, 4, "view"),
            // Window T+120 s: one record; T+60 s is empty.
            interaction(T + 120_000, 4, 9, 9, "purchase"),
        ];
        let mut rows = run::<Activity, _>(ActivityConfig::default(), &records, 100).rows;
        rows.sort_by_key(|r| r.window_start_ms);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let a = &rows[0];
        assert_eq!((a.window_start_ms, a.users, a.interactions, a.avg_per_user), (T, 2, 4, 2.0));
        assert_eq!((a.max_item, a.max_count, a.min_item, a.min_count), (5, 2, 4, 1));
        let b = &rows[1];
        assert_eq!((b.window_start_ms, b.users, b.interactions), (T + 120_000, 1, 1));
        assert_eq!((b.max_item, b.min_item), (9, 9));
    }
}
