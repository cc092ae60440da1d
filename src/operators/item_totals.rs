//! I4 `item_totals`: running interaction totals per item and kind since the
//! start, maintained incrementally by differential dataflow (`count_total` over
//! the collection of (item, kind)). The file holds the state after the last
//! record: the final operator keeps the current count of every (item, kind)
//! and writes the rows when the input ends.
//! Output: `item_id,views,clicks,purchases,total`.

use super::count_consumed;
use super::item_counts::KindCounts;
use crate::checkpoint::state::StateRegistry;
use crate::metrics::QueryCounters;
use crate::record::{route_hash, Interaction, InteractionKind};
use crate::sinks::CsvSink;
use crate::time::Tick;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Map, ToStream};
use timely::dataflow::operators::Concat;
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

/// A row of `item_totals.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemTotal {
    pub item_id: u64,
    pub views: u64,
    pub clicks: u64,
    pub purchases: u64,
    pub total: u64,
}

/// I4 over the interaction stream; rows go to `sink` when the input ends.
/// The returned stream carries nothing: its frontier is the final operator's
/// input frontier, for the probe (a checkpoint must wait for this operator too).
pub fn item_totals<'scope>(
    interactions: Stream<'scope, u64, Vec<Interaction>>,
    tick: Tick,
    sink: Option<Arc<CsvSink<ItemTotal>>>,
    counters: Arc<QueryCounters>,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<()>>> {
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
    let counts = count_consumed(interactions, Arc::clone(&counters))
        .map(move |r: Interaction| ((r.item, r.kind), tick.coarsen(r.ts_ms), 1isize))
        .concat(baseline.to_stream(scope))
        .as_collection()
        .count_total();
    // All kinds of an item meet on one worker, which writes the item's row.
    let by_item = Exchange::new(
        |(((item, _), _), _, _): &(((u64, InteractionKind), isize), u64, isize)| route_hash(*item),
    );
    let done = counts
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            by_item,
            "item_totals",
            move |_initial, _info| {
                move |(input, frontier), _output| {
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
                    if frontier.is_empty() && !state.is_empty() {
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
                        if let Some(sink) = &sink {
                            if let Err(e) = sink.write_all(&rows) {
                                tracing::error!("cannot write item_totals: {e}");
                            }
                        }
                    }
                }
            },
        );
    Ok(done)
}
