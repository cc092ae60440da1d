//! M1 `bars_1s`: per-symbol OHLCV bars over tumbling windows (default 1 000 ms).
//!
//! open/close are the prices of the first/last trade by (`ts_ms`, `seq`), so
//! ties in event time go to arrival order; high/low the extremes; volume the
//! sum of sizes; trades the count; vwap = sum(price * size) / sum(size).
//! Output: `symbol,window_start_ms,open,high,low,close,volume,trades,vwap`.

use super::pane_window::{WindowAggregate, WindowSpec};
use crate::record::{serialize_symbol, Symbol, Trade};
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.bars_1s]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BarsConfig {
    pub enabled: bool,
    pub size_ms: u64,
}

impl Default for BarsConfig {
    fn default() -> Self {
        BarsConfig {
            enabled: true,
            size_ms: 1_000,
        }
    }
}

impl BarsConfig {
    pub fn spec(&self) -> WindowSpec {
        WindowSpec::tumbling(self.size_ms)
    }
}

/// A row of `bars_1s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bar {
    #[serde(serialize_with = "serialize_symbol")]
    pub symbol: Symbol,
    pub window_start_ms: u64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
    pub trades: u64,
    pub vwap: f64,
}

/// The partial bar of one pane.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct BarState {
    first: (u64, u64, f64),
    last: (u64, u64, f64),
    high: f64,
    low: f64,
    volume: u64,
    trades: u64,
    notional: f64,
}

/// The M1 aggregate.
pub struct Bars;

impl WindowAggregate for Bars {
    type In = Trade;
    type Key = Symbol;
    type State = BarState;
    const ORDER_SENSITIVE: bool = true;
    type Out = Bar;

    fn key(&self, t: &Trade) -> Symbol {
        t.symbol
    }
    fn ts_ms(&self, t: &Trade) -> u64 {
        t.ts_ms
    }
    fn seq(&self, t: &Trade) -> u64 {
        t.seq
    }
    fn init(&self, t: &Trade) -> BarState {
        let at = (t.ts_ms, t.seq, t.price);
        BarState {
            first: at,
            last: at,
            high: t.price,
            low: t.price,
            volume: t.size,
            trades: 1,
            notional: t.price * t.size as f64,
        }
    }
    #[inline]
    fn add(&self, s: &mut BarState, t: &Trade) {
        let at = (t.ts_ms, t.seq, t.price);
        if (at.0, at.1) < (s.first.0, s.first.1) {
            s.first = at;
        }
        if (at.0, at.1) > (s.last.0, s.last.1) {
            s.last = at;
        }
        s.high = s.high.max(t.price);
        s.low = s.low.min(t.price);
        s.volume += t.size;
        s.trades += 1;
        s.notional += t.price * t.size as f64;
    }
    fn merge(&self, s: &mut BarState, o: &BarState) {
        if (o.first.0, o.first.1) < (s.first.0, s.first.1) {
            s.first = o.first;
        }
        if (o.last.0, o.last.1) > (s.last.0, s.last.1) {
            s.last = o.last;
        }
        s.high = s.high.max(o.high);
        s.low = s.low.min(o.low);
        s.volume += o.volume;
        s.trades += o.trades;
        s.notional += o.notional;
    }
    fn finish(&self, symbol: Symbol, window_start_ms: u64, s: &BarState) -> Option<Bar> {
        Some(Bar {
            symbol,
            window_start_ms,
            open: s.first.2,
            high: s.high,
            low: s.low,
            close: s.last.2,
            volume: s.volume,
            trades: s.trades,
            vwap: s.notional / s.volume as f64,
        })
    }
}
