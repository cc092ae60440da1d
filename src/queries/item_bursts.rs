//! Item traffic bursts (`anomalies.csv`, kind `item_burst`): per item, the
//! one-second pane counts of its interactions (from a pane window, as I1
//! counts them) go through the burst test of `burst.rs` in pane order; the
//! pane that starts an alarm is a row, at the pane's end, scored
//! `recent / expected` (how many times its normal rate the item ran over the
//! last `window_panes` panes).

use super::anomalies::Anomaly;
use super::item_counts_60s::ItemCount;
use crate::framework::burst::{BurstConfig, BurstTest};
use crate::framework::ordered::OrderedLogic;
use crate::sources::anomalies::AnomalyKind;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.anomalies.items]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ItemBurstConfig {
    #[serde(flatten)]
    pub burst: BurstConfig,
}

/// The detector: a burst test per item.
#[derive(Serialize, Deserialize)]
pub struct ItemBursts {
    config: BurstConfig,
    items: FxHashMap<u64, BurstTest>,
}

impl ItemBursts {
    pub fn new(config: &ItemBurstConfig) -> Self {
        ItemBursts {
            config: config.burst.clone(),
            items: FxHashMap::default(),
        }
    }
}

// Rescaled: each key's state goes with its key group; the rest is settings.
crate::grouped_by_map!(ItemBursts, items);

impl OrderedLogic for ItemBursts {
    type In = ItemCount;
    type Out = Anomaly;

    fn order(&self, pane: &ItemCount) -> (u64, u64) {
        (pane.window_start_ms, pane.item_id)
    }

    fn on_record(&mut self, p: &ItemCount, out: &mut Vec<Anomaly>) {
        let c = &self.config;
        let index = p.window_start_ms / c.pane_ms;
        let test = self
            .items
            .entry(p.item_id)
            .or_insert_with(|| BurstTest::new(index));
        if let Some(score) = test.pane(c, index, p.total, true).alarm {
            let at = p.window_start_ms + c.pane_ms;
            out.push(Anomaly::new(
                AnomalyKind::ItemBurst,
                p.item_id.to_string(),
                at,
                score,
            ));
        }
    }

    fn on_frontier(&mut self, _frontier_ms: Option<u64>, _out: &mut Vec<Anomaly>) {}

    fn owes_at(&self) -> Option<u64> {
        None
    }
}
