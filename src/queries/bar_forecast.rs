//! Per-symbol forecasts from 1-second bars (`forecasts.csv`, stream `trades`),
//! updated with each closed bar, in bar order.
//!
//! - `close`: Holt's linear trend on the log close (`close_alpha`,
//!   `close_beta`): `l' = a y + (1 - a)(l + b)`, `b' = c (l' - l) + (1 - c) b`;
//!   the forecast of the next bar's close is `exp(l + b)`; naive: the last close.
//! - `volatility`: a bar return is `ln(close_k / close_(k-1))` for bars of
//!   consecutive seconds; a window's (`vol_window_ms`) realised volatility is
//!   `sqrt(mean r²)` over its returns (at least 2). The forecast of the next
//!   window's, made when a window closes, is `sqrt` of the exponentially
//!   weighted mean of `r²` (half-life `vol_half_life_bars` returns; each `r²`
//!   capped at 16 times the mean once 10 returns were seen, so that a jump
//!   does not dominate); naive: the closing window's realised volatility.
//!
//! A volatility window is scored when the frontier passes its end (every bar
//! of it is in); when the input ends, every window ending at or before its
//! last event is, and the window holding the last event (perhaps partial) is not.

use super::bars_1s::Bar;
use super::forecasts::{ErrorTally, Forecast, ForecastsConfig, Target};
use crate::framework::ew::{weight_of_half_life, EwMean};
use crate::framework::ordered::OrderedLogic;
use crate::record::Symbol;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct SymbolForecast {
    level: f64,
    trend: f64,
    last_close: f64,
    last_second: u64,
    close_errors: ErrorTally,
    squared_returns: EwMean,
    /// The open volatility window's index, and its returns' sum of squares and count.
    window: u64,
    sum_sq: f64,
    returns: u64,
    /// The forecast made for the open window, and the last window's realised volatility.
    forecast: Option<f64>,
    naive: Option<f64>,
    vol_errors: ErrorTally,
}

/// The forecaster: a few numbers per symbol.
#[derive(Serialize, Deserialize)]
pub struct BarForecast {
    config: ForecastsConfig,
    /// The weight of a bar return in the squared returns' mean.
    vol_weight: f64,
    symbols: FxHashMap<Symbol, SymbolForecast>,
    /// Every window before this index is closed.
    closed_before: u64,
    ended: bool,
}

impl BarForecast {
    pub fn new(config: &ForecastsConfig) -> Self {
        BarForecast {
            config: config.clone(),
            vol_weight: weight_of_half_life(config.vol_half_life_bars),
            symbols: FxHashMap::default(),
            closed_before: 0,
            ended: false,
        }
    }

    /// Closes the symbol's open window and the empty ones after it, up to `window`.
    fn close(
        c: &ForecastsConfig,
        symbol: Symbol,
        s: &mut SymbolForecast,
        window: u64,
        out: &mut Vec<Forecast>,
    ) {
        while s.window < window {
            let empty = s.returns == 0;
            let realised = (s.returns >= 2).then(|| (s.sum_sq / s.returns as f64).sqrt());
            if let (Some(forecast), Some(naive), Some(actual)) = (s.forecast, s.naive, realised) {
                let start = s.window * c.vol_window_ms;
                let values = (forecast, naive, actual);
                let row =
                    s.vol_errors
                        .row(("trades", symbol.text()), Target::Volatility, start, values);
                out.push(row);
            }
            s.naive = realised;
            s.forecast = (s.squared_returns.updates >= 2).then(|| s.squared_returns.mean.sqrt());
            s.window += 1;
            s.sum_sq = 0.0;
            s.returns = 0;
            if empty {
                // After an empty window, empty windows change nothing: skip the gap.
                s.window = window;
            }
        }
    }
}

// Rescaled: each key's state goes with its key group.
crate::grouped_by_map!(BarForecast, symbols, closes_windows);

impl OrderedLogic for BarForecast {
    type In = Bar;
    type Out = Forecast;

    fn order(&self, bar: &Bar) -> (u64, u64) {
        (bar.window_start_ms, bar.symbol.0)
    }

    fn on_record(&mut self, bar: &Bar, out: &mut Vec<Forecast>) {
        let c = &self.config;
        let second = bar.window_start_ms / 1000;
        let window = bar.window_start_ms / c.vol_window_ms;
        let y = bar.close.ln();
        let Some(s) = self.symbols.get_mut(&bar.symbol) else {
            self.symbols.insert(
                bar.symbol,
                SymbolForecast {
                    level: y,
                    trend: 0.0,
                    last_close: bar.close,
                    last_second: second,
                    close_errors: ErrorTally::default(),
                    squared_returns: EwMean::default(),
                    window,
                    sum_sq: 0.0,
                    returns: 0,
                    forecast: None,
                    naive: None,
                    vol_errors: ErrorTally::default(),
                },
            );
            return;
        };
        // The close forecast made at the previous bar, scored.
        let forecast = (s.level + s.trend).exp();
        let values = (forecast, s.last_close, bar.close);
        out.push(s.close_errors.row(
            ("trades", bar.symbol.text()),
            Target::Close,
            bar.window_start_ms,
            values,
        ));
        let level = c.close_alpha * y + (1.0 - c.close_alpha) * (s.level + s.trend);
        s.trend = c.close_beta * (level - s.level) + (1.0 - c.close_beta) * s.trend;
        s.level = level;
        // Volatility: the bar's return, in its window.
        Self::close(c, bar.symbol, s, window, out);
        if second == s.last_second + 1 {
            let r = (bar.close / s.last_close).ln();
            s.sum_sq += r * r;
            s.returns += 1;
            let cap = if s.squared_returns.updates >= 10 {
                16.0 * s.squared_returns.mean
            } else {
                f64::INFINITY
            };
            s.squared_returns.add((r * r).min(cap), self.vol_weight);
        }
        s.last_close = bar.close;
        s.last_second = second;
    }

    fn on_frontier(&mut self, frontier_ms: Option<u64>, out: &mut Vec<Forecast>) {
        let Some(f) = frontier_ms else {
            self.ended = true;
            return;
        };
        let before = f / self.config.vol_window_ms;
        if before <= self.closed_before {
            return;
        }
        self.closed_before = before;
        let mut open: Vec<Symbol> = self
            .symbols
            .iter()
            .filter(|(_, s)| s.window < before)
            .map(|(k, _)| *k)
            .collect();
        open.sort();
        for symbol in open {
            let s = self.symbols.get_mut(&symbol).expect("listed above");
            Self::close(&self.config, symbol, s, before, out);
        }
    }

    fn owes_at(&self) -> Option<u64> {
        (!self.ended && !self.symbols.is_empty())
            .then(|| (self.closed_before + 1) * self.config.vol_window_ms - 1)
    }
}
