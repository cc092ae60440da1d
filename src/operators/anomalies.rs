//! The anomaly detectors' shared parts: their pipeline settings
//! (`[queries.anomalies]`), the `anomalies.csv` row, and the exponentially
//! weighted mean they all keep per key.
//!
//! The detectors themselves, one a file: `price_anomalies.rs` (price jumps,
//! volatility bursts and volume spikes, per symbol on every trade),
//! `item_bursts.rs` (traffic bursts per item, over one-second panes) and
//! `bot_users.rs` (bot-like users, over one-second panes). Each runs per key
//! in (`ts_ms`, `seq`) order on the ordered machinery (`ordered.rs`) with
//! constant memory per key, so its rows are the same for any worker count.
//! Every row also fires an alert: on the dashboard, and logged with `log = true`.
//! Output: `stream,key,ts_ms,kind,score`.

use super::bot_users::BotConfig;
use super::item_bursts::ItemBurstConfig;
use super::price_anomalies::PriceAnomalyConfig;
use crate::sources::anomalies::AnomalyKind;
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.anomalies]`, with a table per detector.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnomaliesConfig {
    pub enabled: bool,
    /// Log every anomaly as it is detected.
    pub log: bool,
    pub price: PriceAnomalyConfig,
    pub items: ItemBurstConfig,
    pub bots: BotConfig,
}

impl Default for AnomaliesConfig {
    fn default() -> Self {
        AnomaliesConfig {
            enabled: true,
            log: false,
            price: PriceAnomalyConfig::default(),
            items: ItemBurstConfig::default(),
            bots: BotConfig::default(),
        }
    }
}

impl AnomaliesConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.price.validate()?;
        self.items.burst.validate("items")?;
        self.bots.validate()
    }
}

/// A row of `anomalies.csv`: what was detected, on which key, when (event
/// time of the record or pane that showed it), and how strongly (`score`:
/// the detector's statistic, see each detector).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub stream: String,
    pub key: String,
    pub ts_ms: u64,
    pub kind: AnomalyKind,
    pub score: f64,
}

impl Anomaly {
    pub fn new(kind: AnomalyKind, key: String, ts_ms: u64, score: f64) -> Self {
        Anomaly {
            stream: kind.stream().into(),
            key,
            ts_ms,
            kind,
            score,
        }
    }
}

/// The weight of a new value in an exponentially weighted mean of half-life `h` updates.
pub fn weight_of_half_life(h: f64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / h.max(1e-9))
}

/// An exponentially weighted mean, bias-corrected while young: the n-th
/// update weighs `max(a, 1/n)`, so the first values are averaged plainly.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EwMean {
    pub mean: f64,
    pub updates: u64,
}

impl EwMean {
    pub fn add(&mut self, value: f64, weight: f64) {
        self.updates += 1;
        let a = weight.max(1.0 / self.updates as f64);
        self.mean += a * (value - self.mean);
    }

    /// `n` updates with the value 0, at once.
    pub fn add_zeros(&mut self, n: u64, weight: f64) {
        // Young means take them one at a time (their weight changes); old ones in closed form.
        let mut left = n;
        while left > 0 && (self.updates as f64) * weight < 1.0 {
            self.add(0.0, weight);
            left -= 1;
        }
        if left > 0 {
            self.updates += left;
            self.mean *= (1.0 - weight).powf(left as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn zeros_at_once_equal_zeros_one_by_one(
            values in proptest::collection::vec(0.0f64..1e6, 0..20),
            zeros in 0u64..300,
            half_life in 1.0f64..200.0,
        ) {
            let w = weight_of_half_life(half_life);
            let (mut at_once, mut one_by_one) = (EwMean::default(), EwMean::default());
            for v in &values {
                at_once.add(*v, w);
                one_by_one.add(*v, w);
            }
            at_once.add_zeros(zeros, w);
            for _ in 0..zeros {
                one_by_one.add(0.0, w);
            }
            prop_assert_eq!(at_once.updates, one_by_one.updates);
            prop_assert!((at_once.mean - one_by_one.mean).abs() <= 1e-9 * (1.0 + one_by_one.mean.abs()));
        }
    }

    #[test]
    fn a_young_mean_is_the_plain_average() {
        let mut m = EwMean::default();
        for v in [2.0, 4.0, 9.0] {
            m.add(v, 0.01);
        }
        assert!((m.mean - 5.0).abs() < 1e-12);
    }
}
