//! I3 `alerts`: an alert for every item and window whose interaction total
//! exceeds the threshold (strictly: a total equal to it does not alert).
//!
//! Two halves. The *firing* half counts each item's interactions per window as
//! they arrive, in any order, and logs an alert the moment the count first
//! exceeds the threshold, long before the window closes; counts only grow, so
//! it fires exactly once per item and window, and exactly for the windows
//! whose final total exceeds the threshold. The *row* half turns closed I1
//! rows into `alerts.csv` rows with the window's final total.
//! Output: `item_id,window_start_ms,total,threshold`.

use super::item_counts::ItemCount;
use crate::checkpoint::state::StateRegistry;
use crate::dashboard::board::Board;
use crate::metrics::QueryCounters;
use crate::record::Interaction;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

/// Pipeline `[queries.alerts]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// An item alerts when its window total exceeds this.
    pub threshold: u64,
    /// Log each alert the moment it fires.
    pub log: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            threshold: 50,
            log: true,
        }
    }
}

/// A row of `alerts.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    pub item_id: u64,
    pub window_start_ms: u64,
    pub total: u64,
    pub threshold: u64,
}

/// The rows of closed windows over the threshold.
pub fn alert_rows<'scope>(
    counts: Stream<'scope, u64, Vec<ItemCount>>,
    threshold: u64,
) -> Stream<'scope, u64, Vec<Alert>> {
    counts.unary(Pipeline, "alerts", move |_cap, _info| {
        move |input, output| {
            input.for_each_stamp(|cap, batches| {
                let mut session = output.session(&cap);
                for batch in batches {
                    session.give_iterator(batch.iter().filter(|c| c.total > threshold).map(|c| {
                        Alert {
                            item_id: c.item_id,
                            window_start_ms: c.window_start_ms,
                            total: c.total,
                            threshold,
                        }
                    }));
                }
            });
        }
    })
}

/// Logs an alert (when `log`) and shows it on the dashboard (when `board`)
/// the moment an item's count in a window first exceeds the threshold;
/// expects the stream partitioned by item. The returned stream carries
/// nothing; its frontier is for the probe (checkpoints wait for this operator).
pub fn fire_alerts<'scope>(
    interactions: Stream<'scope, u64, Vec<Interaction>>,
    window_ms: u64,
    threshold: u64,
    log: bool,
    board: Option<Arc<Board>>,
    counters: Arc<QueryCounters>,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<()>>> {
    let counts = states.cell("alerts/firing", FxHashMap::<(u64, u64), u64>::default)?;
    let fired = interactions.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        "alert firing",
        move |_initial, _info| {
            move |(input, frontier), _output| {
                let mut counts = counts.borrow_mut();
                input.for_each_stamp(|_cap, batches| {
                    for batch in batches {
                        counters.add_consumed(batch.len() as u64);
                        for r in batch.iter() {
                            let window = r.ts_ms - r.ts_ms % window_ms;
                            let count = counts.entry((r.item, window)).or_insert(0);
                            *count += 1;
                            if *count == threshold + 1 {
                                counters.add_rows(1);
                                if log {
                                    tracing::warn!(
                            "ALERT item {} has {} interactions in window {} (threshold {})",
                            r.item,
                            *count,
                            window,
                            threshold
                        );
                                }
                                if let Some(board) = &board {
                                    board.alert_fired(r.item, window, *count, threshold);
                                }
                            }
                        }
                    }
                });
                // Forget windows the frontier has passed: no record can reach them any more.
                match frontier.frontier().first() {
                    Some(&f) => counts.retain(|(_, w), _| w + window_ms > f),
                    None => counts.clear(),
                }
            }
        },
    );
    Ok(fired)
}
