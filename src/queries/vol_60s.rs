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

use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::framework::moments::Moments;
use crate::framework::ordered::{ordered, OrderedLogic};
use crate::record::{symbol_text, Symbol, Trade};
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

impl QueryConfig for VolatilityConfig {
    const ID: &'static str = "vol_60s";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(self.size_ms)
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        if self.size_ms == 0 {
            return Err("size_ms must be positive".into());
        }
        Ok(())
    }
    fn reads(&self) -> &[Input] {
        &[Input::Trades]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<Volatility>().identified_by(&["symbol", "window_start_ms"])
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let vol = ordered(
            b.trades(),
            b.trades_end(),
            Self::ID,
            RealisedVolatility::new(self),
            b.query_counters(),
            b.states,
        )?;
        b.emit(vol);
        Ok(())
    }
}


/// A row of `vol_60s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Volatility {
    #[serde(with = "symbol_text")]
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

// Rescaled: each key's state goes with its key group; the rest is settings.
crate::grouped_by_map!(RealisedVolatility, open);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{run, trade};

    const T: u64 = 1_700_000_020_000 - 1_700_000_020_000 % 60_000;

    #[test]
    fn volatility_is_the_sample_std_of_log_returns_in_ts_seq_order() {
        // In (ts, seq) order the prices are 100, 110, 99: two returns. The
        // tie at T+10 s goes to seq: 110 before 99.
        let records = [
            trade(T + 10_000, 2, "AAA", 99.0, 1),
            trade(T, 0, "AAA", 100.0, 1),
            trade(T + 10_000, 1, "AAA", 110.0, 1),
            // The next window has one return only: no row.
            trade(T + 61_000, 3, "AAA", 98.0, 1),
            trade(T + 62_000, 4, "AAA", 97.0, 1),
        ];
        let rows = run::<Volatility, _>(VolatilityConfig::default(), &records, 20_000).rows;
        assert_eq!(rows.len(), 1, "{rows:?}");
        let (r1, r2) = ((110.0f64 / 100.0).ln(), (99.0f64 / 110.0).ln());
        let mean = (r1 + r2) / 2.0;
        let std = (((r1 - mean).powi(2) + (r2 - mean).powi(2)) / 1.0).sqrt();
        assert_eq!((rows[0].window_start_ms, rows[0].returns), (T, 2));
        assert!((rows[0].volatility - std).abs() < 1e-12);
    }
}
