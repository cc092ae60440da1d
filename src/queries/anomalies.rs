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

use super::bot_users::{user_kind_counts, BotConfig, BotUsers};
use super::item_bursts::{ItemBurstConfig, ItemBursts};
use super::price_anomalies::{PriceAnomalies, PriceAnomalyConfig};
use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::time::gcd;
use crate::framework::ordered::ordered;
use crate::framework::pane_window::{window, WindowSpec};
use crate::sources::anomalies::AnomalyKind;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::{Concatenate, Inspect};

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

impl QueryConfig for AnomaliesConfig {
    const ID: &'static str = "anomalies";
    fn enabled(&self) -> bool {
        self.enabled
    }
    /// Both pane detectors' panes (price anomalies are per trade).
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(gcd(self.items.burst.pane_ms, self.bots.burst.pane_ms))
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        AnomaliesConfig::validate(self).map_err(|e| format!("anomalies.{e}"))
    }
    fn reads(&self) -> &[Input] {
        &[Input::Trades, Input::ItemPanes, Input::Interactions]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<Anomaly>().identified_by(&["stream", "key", "kind", "ts_ms"])
    }
    /// The three detectors' rows, in one file.
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let prices = ordered(
            b.trades(),
            b.trades_end(),
            "price_anomalies",
            PriceAnomalies::new(&self.price),
            b.counters("trades/price_anomalies"),
            b.states,
        )?;
        let item_panes = b.item_panes(self.items.burst.pane_ms)?;
        let items = ordered(
            item_panes,
            b.interactions_end(),
            "item_bursts",
            ItemBursts::new(&self.items),
            b.counters("item_panes/bursts"),
            b.states,
        )?;
        let user_panes = window(
            b.interactions_by_user(),
            "user_panes",
            WindowSpec::tumbling(self.bots.burst.pane_ms),
            user_kind_counts(),
            b.counters("interactions/user_panes"),
            b.latency.clone(),
            b.states,
        )?;
        let bots = ordered(
            user_panes,
            b.interactions_end(),
            "bot_users",
            BotUsers::new(&self.bots),
            b.counters("user_panes/bots"),
            b.states,
        )?;
        let log = self.log;
        let rows = b
            .scope
            .concatenate([prices, items, bots])
            .inspect_core(move |event| {
                if let (Ok((_, rows)), true) = (event, log) {
                    for a in rows.iter() {
                        tracing::warn!(
                            "anomaly: {} on {} {} at {} ms (score {:.1})",
                            a.kind.name(),
                            a.stream,
                            a.key,
                            a.ts_ms,
                            a.score
                        );
                    }
                }
            });
        b.emit(rows);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{run, trade, Record};

    const T: u64 = 1_700_000_040_000;

    #[test]
    fn a_price_jump_after_a_calm_minute_is_found_and_nothing_before_it() {
        // Four trades a second for 60 s, each return uniform in ±0.05 % (a
        // trade's return stays well under 3 σ of the one-second return);
        // then a 10 % jump.
        let mut records: Vec<Record> = Vec::new();
        let (mut price, mut seed) = (100.0f64, 7u64);
        for i in 0..240u64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let z = (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            price *= (0.0005 * z).exp();
            records.push(trade(T + i * 250, i, "AAA", price, 10));
        }
        let jump_ts = T + 60_100;
        records.push(trade(jump_ts, 240, "AAA", price * 1.1, 10));
        let rows = run::<Anomaly, _>(AnomaliesConfig::default(), &records, 200).rows;
        assert!(rows.iter().all(|a| a.ts_ms >= jump_ts), "{rows:?}");
        let jumps: Vec<&Anomaly> = rows
            .iter()
            .filter(|a| a.kind == AnomalyKind::PriceJump)
            .collect();
        assert_eq!(jumps.len(), 1, "{rows:?}");
        assert_eq!((jumps[0].key.as_str(), jumps[0].ts_ms), ("AAA", jump_ts));
        assert!(jumps[0].score >= AnomaliesConfig::default().price.jump_threshold);
    }
}
