//! Per-item forecasts of the next window's interaction count
//! (`forecasts.csv`, stream `interactions`, target `count`), from the
//! one-second item panes, in pane order.
//!
//! An item's counts per window (`count_window_ms`; windows without
//! interactions count 0, from the item's first window on) feed an
//! exponentially weighted mean (half-life `count_half_life_windows`); the
//! forecast of the next window's count is that mean; naive: the last window's
//! count. A window is scored when the frontier passes its end; when the input
//! ends, every window ending at or before its last event is, and the window
//! holding the last event (perhaps partial) is not. An item without
//! interactions for `count_forget_after_windows` windows in a row is
//! forgotten (its last row is that window's); seen again, it starts afresh —
//! so an idle item costs neither memory nor rows, however long the gap.

use super::forecasts::{ErrorTally, Forecast, ForecastsConfig, Target};
use super::item_counts_60s::ItemCount;
use crate::framework::ew::{weight_of_half_life, EwMean};
use crate::framework::ordered::OrderedLogic;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ItemModel {
    window: u64,
    count: u64,
    mean: EwMean,
    last: Option<u64>,
    /// Windows in a row closed without interactions.
    idle: u64,
    errors: ErrorTally,
}

/// The settings a model's update needs.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Setting {
    window_ms: u64,
    weight: f64,
    forget_after: u64,
}

/// The forecaster: a few numbers per item.
#[derive(Serialize, Deserialize)]
pub struct ItemForecast {
    setting: Setting,
    items: FxHashMap<u64, ItemModel>,
    closed_before: u64,
    ended: bool,
}

impl ItemForecast {
    pub fn new(config: &ForecastsConfig) -> Self {
        ItemForecast {
            setting: Setting {
                window_ms: config.count_window_ms,
                weight: weight_of_half_life(config.count_half_life_windows),
                forget_after: config.count_forget_after_windows,
            },
            items: FxHashMap::default(),
            closed_before: 0,
            ended: false,
        }
    }
}

impl ItemModel {
    fn new(window: u64) -> Self {
        ItemModel {
            window,
            count: 0,
            mean: EwMean::default(),
            last: None,
            idle: 0,
            errors: ErrorTally::default(),
        }
    }

    /// Closes the item's open window and the empty ones after it, up to
    /// `window`; false when the item is to be forgotten on the way.
    fn close(&mut self, item: u64, window: u64, s: Setting, out: &mut Vec<Forecast>) -> bool {
        while self.window < window {
            if let Some(last) = self.last {
                let values = (self.mean.mean, last as f64, self.count as f64);
                let start = self.window * s.window_ms;
                out.push(self.errors.row(
                    ("interactions", item.to_string()),
                    Target::Count,
                    start,
                    values,
                ));
            }
            self.idle = if self.count == 0 { self.idle + 1 } else { 0 };
            if self.idle >= s.forget_after {
                return false;
            }
            self.mean.add(self.count as f64, s.weight);
            self.last = Some(self.count);
            self.window += 1;
            self.count = 0;
        }
        true
    }
}

// Rescaled: each key's state goes with its key group.
crate::grouped_by_map!(ItemForecast, items, closes_windows);

impl OrderedLogic for ItemForecast {
    type In = ItemCount;
    type Out = Forecast;

    fn order(&self, pane: &ItemCount) -> (u64, u64) {
        (pane.window_start_ms, pane.item_id)
    }

    fn on_record(&mut self, p: &ItemCount, out: &mut Vec<Forecast>) {
        let window = p.window_start_ms / self.setting.window_ms;
        let m = self
            .items
            .entry(p.item_id)
            .or_insert_with(|| ItemModel::new(window));
        if !m.close(p.item_id, window, self.setting, out) {
            *m = ItemModel::new(window);
        }
        m.count += p.total;
    }

    fn on_frontier(&mut self, frontier_ms: Option<u64>, out: &mut Vec<Forecast>) {
        let Some(f) = frontier_ms else {
            self.ended = true;
            return;
        };
        let before = f / self.setting.window_ms;
        if before <= self.closed_before {
            return;
        }
        self.closed_before = before;
        let mut open: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, m)| m.window < before)
            .map(|(k, _)| *k)
            .collect();
        open.sort_unstable();
        for item in open {
            let m = self.items.get_mut(&item).expect("listed above");
            if !m.close(item, before, self.setting, out) {
                self.items.remove(&item);
            }
        }
    }

    fn owes_at(&self) -> Option<u64> {
        (!self.ended && !self.items.is_empty())
            .then(|| (self.closed_before + 1) * self.setting.window_ms - 1)
    }
}
