//! Per-event streaming metrics on the market stream (`ewma.csv`): for every
//! trade, in (`ts_ms`, `seq`) order per symbol, the exponentially weighted
//! moving average of price and the exponentially weighted volatility of log
//! returns.
//!
//! With a half-life of `h` trades, a trade weighs `a = 1 - 2^(-1/h)`:
//! `ewma = a * price + (1 - a) * ewma` (the first trade sets `ewma = price`);
//! `r = ln(price / previous price)`, `var = a * r^2 + (1 - a) * var` (the first
//! return sets `var = r^2`; a zero-mean estimate, as RiskMetrics); `ewm_vol =
//! sqrt(var)`, empty on a symbol's first trade.
//! Output: `symbol,ts_ms,price,ewma,ewm_vol,seq`.

use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::framework::ordered::{ordered, OrderedLogic};
use timely::dataflow::operators::core::Inspect;
use crate::record::{symbol_text, Symbol, Trade};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.ewma]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EwmaConfig {
    pub enabled: bool,
    /// Half-life in trades of the symbol.
    pub half_life: f64,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            enabled: true,
            half_life: 20.0,
        }
    }
}

impl EwmaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.half_life.is_finite() && self.half_life > 0.0) {
            return Err(format!(
                "half_life must be positive, got {}",
                self.half_life
            ));
        }
        Ok(())
    }
}

impl QueryConfig for EwmaConfig {
    const ID: &'static str = "ewma";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        EwmaConfig::validate(self)
    }
    fn reads(&self) -> &[Input] {
        &[Input::Trades]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<EwmaRow>().identified_by(&["seq", "symbol"])
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let ewma = ordered(
            b.trades(),
            b.trades_end(),
            Self::ID,
            Ewma::new(self),
            b.query_counters(),
            b.states,
        )?;
        // One row per trade: the per-record latency of the engine.
        let latency = b.latency.clone();
        let ewma = ewma.inspect_core(move |event| {
            if let Ok((_, rows)) = event {
                latency.records_emitted(rows.iter().map(|r| r.ts_ms));
            }
        });
        b.emit(ewma);
        Ok(())
    }
}


/// A row of `ewma.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EwmaRow {
    #[serde(with = "symbol_text")]
    pub symbol: Symbol,
    pub ts_ms: u64,
    pub price: f64,
    pub ewma: f64,
    pub ewm_vol: Option<f64>,
    /// The trade's arrival sequence number (`Trade::seq`): with the symbol,
    /// the row's identity (two trades of a symbol may share a millisecond).
    pub seq: u64,
}

#[derive(Serialize, Deserialize)]
struct SymbolState {
    ewma: f64,
    last_price: f64,
    var: Option<f64>,
}

/// The EWMA logic.
#[derive(Serialize, Deserialize)]
pub struct Ewma {
    weight: f64,
    symbols: FxHashMap<Symbol, SymbolState>,
}

impl Ewma {
    pub fn new(config: &EwmaConfig) -> Self {
        Ewma {
            weight: 1.0 - 0.5f64.powf(1.0 / config.half_life),
            symbols: FxHashMap::default(),
        }
    }
}

// Rescaled: each key's state goes with its key group; the rest is settings.
crate::grouped_by_map!(Ewma, symbols);

impl OrderedLogic for Ewma {
    type In = Trade;
    type Out = EwmaRow;

    fn order(&self, t: &Trade) -> (u64, u64) {
        (t.ts_ms, t.seq)
    }

    fn on_record(&mut self, t: &Trade, out: &mut Vec<EwmaRow>) {
        let a = self.weight;
        let (ewma, var) = match self.symbols.get_mut(&t.symbol) {
            None => {
                self.symbols.insert(
                    t.symbol,
                    SymbolState {
                        ewma: t.price,
                        last_price: t.price,
                        var: None,
                    },
                );
                (t.price, None)
            }
            Some(s) => {
                let r = (t.price / s.last_price).ln();
                let var = s.var.map_or(r * r, |v| a * r * r + (1.0 - a) * v);
                s.ewma = a * t.price + (1.0 - a) * s.ewma;
                s.last_price = t.price;
                s.var = Some(var);
                (s.ewma, Some(var))
            }
        };
        out.push(EwmaRow {
            symbol: t.symbol,
            ts_ms: t.ts_ms,
            price: t.price,
            ewma,
            ewm_vol: var.map(f64::sqrt),
            seq: t.seq,
        });
    }

    fn on_frontier(&mut self, _frontier_ms: Option<u64>, _out: &mut Vec<EwmaRow>) {}

    fn owes_at(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{run, trade};

    #[test]
    fn the_first_trade_sets_the_average_and_later_ones_weigh_in() {
        let config = EwmaConfig {
            half_life: 1.0,
            ..EwmaConfig::default()
        };
        // Half-life 1: a = 1/2. Ties in ts go by seq.
        let records = [
            trade(1_000, 1, "AAA", 110.0, 1),
            trade(1_000, 0, "AAA", 100.0, 1),
            trade(1_500, 2, "AAA", 121.0, 1),
        ];
        let rows = run::<EwmaRow, _>(config, &records, 500).rows;
        let got: Vec<(u64, f64, f64)> = rows.iter().map(|r| (r.ts_ms, r.price, r.ewma)).collect();
        assert_eq!(got, [(1_000, 100.0, 100.0), (1_000, 110.0, 105.0), (1_500, 121.0, 113.0)]);
        assert_eq!(rows[0].ewm_vol, None);
        let r1 = (110.0f64 / 100.0).ln();
        assert!((rows[1].ewm_vol.unwrap() - r1.abs()).abs() < 1e-12);
        let r2 = (121.0f64 / 110.0).ln();
        let var = 0.5 * r2 * r2 + 0.5 * r1 * r1;
        assert!((rows[2].ewm_vol.unwrap() - var.sqrt()).abs() < 1e-12);
    }
}
