//! M3 `vol_60s`: per-symbol realised volatility over tumbling windows (default
//! 60 000 ms).
//!
//! Within a window, trades sorted by (`ts_ms`, `seq`); r_i = ln(p_i / p_{i-1})
//! for consecutive trades of the window (the first trade of a window has no
//! return); returns = number of r_i; volatility = sample standard deviation of
//! the r_i. Only windows with returns >= 2 produce a row. Runs on the ordered
//! machinery (`ordered.rs`): per symbol it keeps the open window's last price
//! and the Welford moments of its returns, nothing per trade.
//! Output: `symbol,window_start_ms,returns,volatility`.

use super::moments::Moments;
use super::ordered::OrderedLogic;
use crate::record::{serialize_symbol, Symbol, Trade};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.vol_60s]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VolatilityConfig {
    pub enabled: bool,
    pub size_ms: u64,
}

impl Default for VolatilityConfig {
    fn default() -> Self {
        VolatilityConfig {
            enabled: true,
            size_ms: 60_000,
        }
    }
}

/// A row of `vol_60s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Volatility {
    #[serde(serialize_with = "serialize_symbol")]
    pub symbol: Symbol,
    pub window_start_ms: u64,
    pub returns: u64,
    pub volatility: f64,
}

#[derive(Serialize, Deserialize)]
struct OpenWindow {
    start_ms: u64,
    last_price: f64,
    returns: Moments,
}

/// The M3 logic.
#[derive(Serialize, Deserialize)]
pub struct RealisedVolatility {
    size_ms: u64,
    open: FxHashMap<Symbol, OpenWindow>,
}

impl RealisedVolatility {
    pub fn new(config: &VolatilityConfig) -> Self {
        RealisedVolatility {
            size_ms: config.size_ms.max(1),
            open: FxHashMap::default(),
        }
    }

    fn finish(symbol: Symbol, w: &OpenWindow, out: &mut Vec<Volatility>) {
        if let Some(std) = w.returns.std() {
            out.push(Volatility {
                symbol,
                window_start_ms: w.start_ms,
                returns: w.returns.count,
                volatility: std,
            });
        }
    }
}

impl OrderedLogic for RealisedVolatility {
    type In = Trade;
    type Out = Volatility;

    fn order(&self, t: &Trade) -> (u64, u64) {
        (t.ts_ms, t.seq)
    }

    fn on_record(&mut self, t: &Trade, out: &mut Vec<Volatility>) {
        let start_ms = t.ts_ms - t.ts_ms % self.size_ms;
        match self.open.get_mut(&t.symbol) {
            Some(w) if w.start_ms == start_ms => {
                w.returns.add((t.price / w.last_price).ln());
                w.last_price = t.price;
            }
            previous => {
                if let Some(w) = previous {
                    Self::finish(t.symbol, w, out);
                }
                self.open.insert(
                    t.symbol,
                    OpenWindow {
                        start_ms,
                        last_price: t.price,
                        returns: Moments::default(),
                    },
                );
            }
        }
    }

    fn on_frontier(&mut self, frontier_ms: Option<u64>, out: &mut Vec<Volatility>) {
        let size = self.size_ms;
        let closed = |w: &OpenWindow| frontier_ms.is_none_or(|f| w.start_ms + size <= f);
        if !self.open.values().any(closed) {
            return;
        }
        let mut done: Vec<Symbol> = self
            .open
            .iter()
            .filter(|(_, w)| closed(w))
            .map(|(s, _)| *s)
            .collect();
        done.sort();
        for symbol in done {
            if let Some(w) = self.open.remove(&symbol) {
                Self::finish(symbol, &w, out);
            }
        }
    }

    fn owes_at(&self) -> Option<u64> {
        self.open
            .values()
            .map(|w| w.start_ms + self.size_ms - 1)
            .min()
    }
}
