//! Market anomalies per symbol (`anomalies.csv`, kinds `price_jump`,
//! `vol_burst`, `volume_spike`), on every trade in (`ts_ms`, `seq`) order.
//!
//! Per second, two measures of variance, both leaving out the returns judged
//! jumps: the squared close-to-close log return (divided by the seconds it
//! spans), immune to the order of trades within a second, into an
//! exponentially weighted mean `C` (half-life `long_half_life_s`); and the
//! realised variance, the sum of the squared trade returns `r`, which sees
//! volatility change within seconds but is inflated by out-of-order trades,
//! into a long and a short (`short_half_life_s`) mean. The scale of a return
//! is `σ² = C * max(1, short / long)`: the short/long ratio is free of the
//! inflation. Seconds without a trade count as 0 realised variance. Volumes
//! per second get a long and a short mean too.
//! - `price_jump`: once `warmup_s` seconds were seen, a trade with
//!   `|r| / σ >= jump_threshold` (score: `|r| / σ`, in standard deviations of
//!   the one-second return); at most one per `cooldown_ms`, since a jump seen
//!   out of order shows as more than one large return.
//! - `vol_burst`: at the close of a second, `short / long >= vol_ratio` of the
//!   realised variance (score: that ratio); once, until it falls below half.
//! - `volume_spike`: the same with the seconds' volumes and `volume_ratio`.
//!
//! The long means take at most `ratio` times their value from a second, so a
//! burst moves its own baseline little. State per symbol: a few numbers.

use super::anomalies::Anomaly;
use crate::framework::ew::{weight_of_half_life, EwMean};
use crate::framework::ordered::OrderedLogic;
use crate::record::{Symbol, Trade};
use crate::sources::anomalies::AnomalyKind;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.anomalies.price]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PriceAnomalyConfig {
    /// A jump: a trade's return of at least this many σ of the one-second return.
    pub jump_threshold: f64,
    pub cooldown_ms: u64,
    /// Seconds of a symbol seen before it is judged.
    pub warmup_s: u64,
    pub long_half_life_s: f64,
    pub short_half_life_s: f64,
    /// Short over long realised variance that is a volatility burst.
    pub vol_ratio: f64,
    /// Short over long volume per second that is a volume spike.
    pub volume_ratio: f64,
}

impl Default for PriceAnomalyConfig {
    fn default() -> Self {
        PriceAnomalyConfig {
            jump_threshold: 3.0,
            cooldown_ms: 1_000,
            warmup_s: 20,
            long_half_life_s: 60.0,
            short_half_life_s: 2.0,
            vol_ratio: 4.0,
            volume_ratio: 3.0,
        }
    }
}

impl PriceAnomalyConfig {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("jump_threshold", self.jump_threshold),
            ("long_half_life_s", self.long_half_life_s),
            ("short_half_life_s", self.short_half_life_s),
            ("vol_ratio", self.vol_ratio),
            ("volume_ratio", self.volume_ratio),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(format!("anomalies.price.{name} must be positive, got {v}"));
        }
        Ok(())
    }
}

/// A per-second measure with its long and short means and its alarm.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct Level {
    current: f64,
    long: EwMean,
    short: EwMean,
    alarm: bool,
}

impl Level {
    /// Closes the current second and `empty` seconds after it; returns the
    /// ratio short / long if it starts an alarm (once warmed up).
    fn close(&mut self, empty: u64, w: (f64, f64), ratio: f64, judged: bool) -> Option<f64> {
        let (long_w, short_w) = w;
        let value = self.current;
        self.current = 0.0;
        let capped = if self.long.mean > 0.0 {
            value.min(ratio * self.long.mean)
        } else {
            value
        };
        self.long.add(capped, long_w);
        self.short.add(value, short_w);
        self.long.add_zeros(empty, long_w);
        self.short.add_zeros(empty, short_w);
        let r = self.short.mean / self.long.mean.max(f64::MIN_POSITIVE);
        if self.alarm {
            self.alarm = r >= ratio / 2.0;
            return None;
        }
        if judged && self.long.mean > 0.0 && r >= ratio {
            self.alarm = true;
            return Some(r);
        }
        None
    }
}

#[derive(Serialize, Deserialize)]
struct SymbolModel {
    last_price: f64,
    /// The last price before the current second, and the jumps within it.
    previous_close: f64,
    jumps_in_second: f64,
    /// Variance per second from close-to-close returns (long half-life).
    close_variance: EwMean,
    second: u64,
    /// Seconds closed.
    seconds: u64,
    variance: Level,
    volume: Level,
    last_jump_ms: Option<u64>,
}

/// The detector: a few numbers per symbol.
#[derive(Serialize, Deserialize)]
pub struct PriceAnomalies {
    config: PriceAnomalyConfig,
    /// The weights of a second in the long and the short means.
    weights: (f64, f64),
    symbols: FxHashMap<Symbol, SymbolModel>,
}

impl PriceAnomalies {
    pub fn new(config: &PriceAnomalyConfig) -> Self {
        PriceAnomalies {
            config: config.clone(),
            weights: (
                weight_of_half_life(config.long_half_life_s),
                weight_of_half_life(config.short_half_life_s),
            ),
            symbols: FxHashMap::default(),
        }
    }
}

// Rescaled: each key's state goes with its key group; the rest is settings.
crate::grouped_by_map!(PriceAnomalies, symbols);

impl OrderedLogic for PriceAnomalies {
    type In = Trade;
    type Out = Anomaly;

    fn order(&self, t: &Trade) -> (u64, u64) {
        (t.ts_ms, t.seq)
    }

    fn on_record(&mut self, t: &Trade, out: &mut Vec<Anomaly>) {
        let c = &self.config;
        let second = t.ts_ms / 1000;
        let Some(s) = self.symbols.get_mut(&t.symbol) else {
            self.symbols.insert(
                t.symbol,
                SymbolModel {
                    last_price: t.price,
                    previous_close: t.price,
                    jumps_in_second: 0.0,
                    close_variance: EwMean::default(),
                    second,
                    seconds: 0,
                    variance: Level::default(),
                    volume: Level {
                        current: t.size as f64,
                        ..Level::default()
                    },
                    last_jump_ms: None,
                },
            );
            return;
        };
        let judged = s.seconds >= c.warmup_s;
        if second > s.second {
            let empty = second - s.second - 1;
            let weights = self.weights;
            let closed_at = (s.second + 1) * 1000;
            let key = || t.symbol.text();
            if let Some(r) = s.variance.close(empty, weights, c.vol_ratio, judged) {
                out.push(Anomaly::new(AnomalyKind::VolBurst, key(), closed_at, r));
            }
            if let Some(r) = s.volume.close(empty, weights, c.volume_ratio, judged) {
                out.push(Anomaly::new(AnomalyKind::VolumeSpike, key(), closed_at, r));
            }
            // The second's close-to-close return without its jumps: immune to
            // the order of trades within the second.
            let gap = (second - s.second) as f64;
            let r = (s.last_price / s.previous_close).ln() - s.jumps_in_second;
            s.close_variance.add(r * r / gap, weights.0);
            s.previous_close = s.last_price;
            s.jumps_in_second = 0.0;
            s.seconds += second - s.second;
            s.second = second;
        }
        let r = (t.price / s.last_price).ln();
        s.last_price = t.price;
        s.volume.current += t.size as f64;
        // The scale: the close-to-close variance, raised while the trades'
        // realised variance runs above its long mean (volatility building up).
        let building = s.variance.short.mean / s.variance.long.mean.max(f64::MIN_POSITIVE);
        let sigma = (s.close_variance.mean * building.max(1.0)).sqrt();
        let score = if sigma > 0.0 { r.abs() / sigma } else { 0.0 };
        if judged && score >= c.jump_threshold {
            let cooled = s
                .last_jump_ms
                .is_none_or(|last| t.ts_ms >= last + c.cooldown_ms);
            if cooled {
                s.last_jump_ms = Some(t.ts_ms);
                out.push(Anomaly::new(
                    AnomalyKind::PriceJump,
                    t.symbol.text(),
                    t.ts_ms,
                    score,
                ));
            }
            // A jump is not volatility: it stays out of both variances.
            s.jumps_in_second += r;
        } else {
            s.variance.current += r * r;
        }
    }

    fn on_frontier(&mut self, _frontier_ms: Option<u64>, _out: &mut Vec<Anomaly>) {}

    fn owes_at(&self) -> Option<u64> {
        None
    }
}
