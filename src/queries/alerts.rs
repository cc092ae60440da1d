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

use super::item_counts_60s::{ItemCount, ItemCountsConfig};
use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::checkpoint::state::StateRegistry;
use crate::probes::QueryCounters;
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

impl QueryConfig for AlertsConfig {
    const ID: &'static str = "alerts";
    fn enabled(&self) -> bool {
        self.enabled
    }
    /// Its rows are I1's windows.
    fn window_grid_ms(&self, tables: &QueryTables) -> Option<u64> {
        let counts: ItemCountsConfig = tables.get().ok()?;
        Some(counts.spec().pane_ms())
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        Ok(())
    }
    fn reads(&self) -> &[Input] {
        &[Input::Interactions]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<Alert>().identified_by(&["item_id", "window_start_ms"])
    }
    /// The rows come from I1's windows (whatever `item_counts_60s.enabled`
    /// says); the firing half reads the interactions keyed by item.
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let counts_config: ItemCountsConfig = b.tables.get().map_err(anyhow::Error::msg)?;
        let spec = counts_config.spec();
        let counts = b.item_counts(ItemCountsConfig::ID, spec)?;
        b.emit(alert_rows(counts, self.threshold));
        let fired = fire_alerts(
            b.interactions_by_item(),
            spec.length_ms,
            self.threshold,
            self.log,
            b.query_counters(),
            b.states,
        )?;
        b.emit_live(fired);
        Ok(())
    }
}


/// An alert the moment it fires (not written to a file: the dashboard shows
/// it, through the row sinks).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FiredAlert {
    pub item_id: u64,
    pub window_start_ms: u64,
    /// The count when it fired: the threshold + 1.
    pub count: u64,
    pub threshold: u64,
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

/// Logs an alert (when `log`) and emits it the moment an item's count in a
/// window first exceeds the threshold; expects the stream partitioned by item.
pub fn fire_alerts<'scope>(
    interactions: Stream<'scope, u64, Vec<Interaction>>,
    window_ms: u64,
    threshold: u64,
    log: bool,
    counters: Arc<QueryCounters>,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<FiredAlert>>> {
    let counts = states.cell("alerts/firing", FxHashMap::<(u64, u64), u64>::default)?;
    let fired = interactions.unary_frontier::<CapacityContainerBuilder<Vec<FiredAlert>>, _, _, _>(
        Pipeline,
        "alert firing",
        move |_initial, _info| {
            move |(input, frontier), output| {
                let mut counts = counts.borrow_mut();
                input.for_each_stamp(|cap, batches| {
                    let mut session = output.session(&cap);
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
                                session.give(FiredAlert {
                                    item_id: r.item,
                                    window_start_ms: window,
                                    count: *count,
                                    threshold,
                                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{interaction, run_with};

    const T: u64 = 1_700_000_040_000;

    fn tables(threshold: i64) -> QueryTables {
        let mut t = QueryTables::default();
        t.set("alerts", "threshold", threshold);
        t.set("alerts", "log", false);
        t
    }

    fn records() -> Vec<crate::queries::testing::Record> {
        // Item 7: three interactions in window T; item 8: two (equal to the threshold).
        vec![
            interaction(T + 1, 0, 1, 7, "view"),
            interaction(T + 2, 1, 2, 8, "view"),
            interaction(T + 3, 2, 2, 7, "click"),
            interaction(T + 4, 3, 3, 8, "view"),
            interaction(T + 5, 4, 3, 7, "purchase"),
        ]
    }

    #[test]
    fn a_total_above_the_threshold_alerts_and_one_equal_to_it_does_not() {
        let config: AlertsConfig = tables(2).get().unwrap();
        let rows = run_with::<Alert, _>(config, &tables(2), &records(), 100).rows;
        assert_eq!(
            rows,
            [Alert {
                item_id: 7,
                window_start_ms: T,
                total: 3,
                threshold: 2
            }]
        );
    }

    #[test]
    fn an_alert_fires_once_the_moment_the_count_passes_the_threshold() {
        let config: AlertsConfig = tables(2).get().unwrap();
        let fired = run_with::<FiredAlert, _>(config, &tables(2), &records(), 100).rows;
        assert_eq!(
            fired,
            [FiredAlert {
                item_id: 7,
                window_start_ms: T,
                count: 3,
                threshold: 2
            }]
        );
    }
}
