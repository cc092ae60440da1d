//! M2 `stats_10s`: per-symbol price statistics over hopping windows (default
//! length 10 000 ms, slide 1 000 ms).
//!
//! count = number of trades; mean = arithmetic mean of price; std = sample
//! standard deviation (divisor n - 1), empty when count = 1. Panes hold
//! Welford moments merged with Chan's formula (`moments.rs`), so a record is
//! folded once whatever length / slide.
//! Output: `symbol,window_start_ms,count,mean,std`.

use super::moments::Moments;
use super::pane_window::{WindowAggregate, WindowSpec};
use crate::record::{serialize_symbol, Symbol, Trade};
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.stats_10s]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    pub enabled: bool,
    pub length_ms: u64,
    pub slide_ms: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            enabled: true,
            length_ms: 10_000,
            slide_ms: 1_000,
        }
    }
}

impl StatsConfig {
    pub fn spec(&self) -> WindowSpec {
        WindowSpec {
            length_ms: self.length_ms,
            slide_ms: self.slide_ms,
        }
    }
}

/// A row of `stats_10s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PriceStats {
    #[serde(serialize_with = "serialize_symbol")]
    pub symbol: Symbol,
    pub window_start_ms: u64,
    pub count: u64,
    pub mean: f64,
    pub std: Option<f64>,
}

/// The M2 aggregate.
pub struct Stats;

impl WindowAggregate for Stats {
    type In = Trade;
    type Key = Symbol;
    type State = Moments;
    const ORDER_SENSITIVE: bool = true;
    type Out = PriceStats;

    fn key(&self, t: &Trade) -> Symbol {
        t.symbol
    }
    fn ts_ms(&self, t: &Trade) -> u64 {
        t.ts_ms
    }
    fn seq(&self, t: &Trade) -> u64 {
        t.seq
    }
    fn init(&self, t: &Trade) -> Moments {
        Moments::of(t.price)
    }
    #[inline]
    fn add(&self, m: &mut Moments, t: &Trade) {
        m.add(t.price);
    }
    fn merge(&self, m: &mut Moments, o: &Moments) {
        m.merge(o);
    }
    fn finish(&self, symbol: Symbol, window_start_ms: u64, m: &Moments) -> Option<PriceStats> {
        Some(PriceStats {
            symbol,
            window_start_ms,
            count: m.count,
            mean: m.mean,
            std: m.std(),
        })
    }
}
