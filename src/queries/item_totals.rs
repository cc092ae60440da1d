//! I4 `item_totals`: running interaction totals per item and kind since the
//! start, maintained incrementally by differential dataflow (`count_total` over
//! the collection of (item, kind), arranged on the item's worker: the
//! interactions arrive routed by item). The file holds the state after the last
//! record: the final operator keeps the current count of every (item, kind)
//! and emits the rows when the input ends. Its one capability follows its
//! input frontier, so it holds nothing back (checkpoints wait for it).
//!
//! Time granularity: the totals move on once per minute of event time
//! ([`PERIOD_MS`]). Each worker counts its records per (item, kind) and
//! minute first ([`period_counts`], checkpointed as `item_totals/open`) and
//! hands differential one update per (item, kind) when the minute closes:
//! the result is read only at the end, so finer times would only give
//! `count_total` more updates and more times to replay (at the tick, a
//! millisecond to a second, it was a seventh of the interaction queries).
//! Output: `item_id,views,clicks,purchases,total`.

use super::item_counts_60s::KindCounts;
use super::{Build, Input, QueryConfig, RowFile};
use crate::framework::arrange_in_place::arrange_in_place;
use crate::framework::period_counts::{period_counts, OpenCounts};
use crate::framework::count_consumed;
use crate::checkpoint::state::StateRegistry;
use crate::probes::QueryCounters;
use crate::record::{Interaction, InteractionKind};
use crate::rescale::groups::Router;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::ToStream;
use timely::dataflow::Stream;

/// Pipeline `[queries.item_totals]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ItemTotalsConfig {
    pub enabled: bool,
}

impl Default for ItemTotalsConfig {
    fn default() -> Self {
        ItemTotalsConfig { enabled: true }
    }
}

impl QueryConfig for ItemTotalsConfig {
    const ID: &'static str = "item_totals";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn reads(&self) -> &[Input] {
        &[Input::Interactions]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<ItemTotal>().identified_by(&["item_id"])
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let rows = item_totals(
            b.interactions_by_item(),
            b.router(),
            b.query_counters(),
            b.states,
        )?;
        b.emit(rows);
        Ok(())
    }
}


/// A row of `item_totals.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemTotal {
    pub item_id: u64,
    pub views: u64,
    pub clicks: u64,
    pub purchases: u64,
    pub total: u64,
}

/// The event time per update of the totals (see the module doc).
pub const PERIOD_MS: u64 = 60_000;

/// I4 over the interaction stream: the rows, when the input ends.
pub fn item_totals<'scope>(
    interactions: Stream<'scope, u64, Vec<Interaction>>,
    router: Router,
    counters: Arc<QueryCounters>,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<ItemTotal>>> {
    // The current count of each (item, kind): the one count with a positive weight.
    let state = states.cell(
        "item_totals",
        BTreeMap::<(u64, InteractionKind, isize), isize>::new,
    )?;
    // Resuming, the counts of the checkpoint re-enter the differential
    // computation as one weighted update each (its arrangements are rebuilt
    // from them) and come back to this state through it.
    let baseline: Vec<((u64, InteractionKind), u64, isize)> =
        std::mem::take(&mut *state.borrow_mut())
            .into_iter()
            .filter(|(_, weight)| *weight > 0)
            .map(|((item, kind, count), _)| ((item, kind), 0, count))
            .collect();
    let scope = interactions.scope();
    // The interactions come routed by item: each (item, kind) is counted
    // where it is, not sent to a hash of the pair first.
    let open = states.cell("item_totals/open", OpenCounts::new)?;
    let updates = period_counts(
        count_consumed(interactions, Arc::clone(&counters)),
        open,
        "item_totals/minutes",
        PERIOD_MS,
        |r: &Interaction| r.ts_ms,
        |r| (r.item, r.kind),
    )
    .map(|(_minute, item_kind)| item_kind)
    .concat(baseline.to_stream(scope).as_collection());
    let counts = arrange_in_place(updates, "item_totals/counts").count_total();
    // All kinds of an item meet on one worker, which writes the item's row.
    let by_item = Exchange::new(
        move |(((item, _), _), _, _): &(((u64, InteractionKind), isize), u64, isize)| {
            router.route(*item)
        },
    );
    let done = counts
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<ItemTotal>>, _, _, _>(
            by_item,
            "item_totals",
            move |initial, _info| {
                let mut cap = Some(initial);
                move |(input, frontier), output| {
                    let mut state = state.borrow_mut();
                    input.for_each_stamp(|_cap, batches| {
                        for batch in batches {
                            for (((item, kind), count), _time, diff) in batch.drain(..) {
                                let w = state.entry((item, kind, count)).or_insert(0);
                                *w += diff;
                                if *w == 0 {
                                    state.remove(&(item, kind, count));
                                }
                            }
                        }
                    });
                    // Follow the input frontier: the rows are owed only at the end.
                    if let (Some(c), Some(&f)) = (cap.as_mut(), frontier.frontier().first()) {
                        if *c.time() < f {
                            c.downgrade(&f);
                        }
                    }
                    if !frontier.is_empty() {
                        return;
                    }
                    let Some(cap) = cap.take() else {
                        return;
                    };
                    if !state.is_empty() {
                        let mut items: BTreeMap<u64, KindCounts> = BTreeMap::new();
                        for ((item, kind, count), _) in std::mem::take(&mut *state) {
                            items.entry(item).or_default().add(kind, count as u64);
                        }
                        let rows: Vec<ItemTotal> = items
                            .into_iter()
                            .map(|(item_id, c)| ItemTotal {
                                item_id,
                                views: c.views,
                                clicks: c.clicks,
                                purchases: c.purchases,
                                total: c.total(),
                            })
                            .collect();
                        counters.add_rows(rows.len() as u64);
                        output.session(&cap).give_iterator(rows.into_iter());
                    }
                }
            },
        );
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{interaction, run};

    #[test]
    fn totals_since_the_start_by_kind_one_row_per_item_at_the_end() {
        let records = [
            interaction(1_000, 0, 1, 7, "view"),
            interaction(900, 1, 2, 7, "purchase"),
            interaction(70_000, 2, 1, 8, "click"),
            interaction(200_000, 3, 3, 7, "view"),
        ];
        let mut rows = run::<ItemTotal, _>(ItemTotalsConfig::default(), &records, 500).rows;
        rows.sort_by_key(|r| r.item_id);
        let got: Vec<(u64, u64, u64, u64, u64)> = rows
            .iter()
            .map(|r| (r.item_id, r.views, r.clicks, r.purchases, r.total))
            .collect();
        assert_eq!(got, [(7, 2, 0, 1, 3), (8, 0, 1, 0, 1)]);
    }

    #[test]
    fn no_interactions_no_rows() {
        let rows = run::<ItemTotal, _>(ItemTotalsConfig::default(), &[], 500).rows;
        assert!(rows.is_empty());
    }
}
