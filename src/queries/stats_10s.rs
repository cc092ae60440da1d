//! M2 `stats_10s`: per-symbol price statistics over hopping windows (default
//! length 10 000 ms, slide 1 000 ms).
//!
//! count = number of trades; mean = arithmetic mean of price; std = sample
//! standard deviation (divisor n - 1), empty when count = 1. Panes hold
//! Welford moments merged with Chan's formula (`moments.rs`), so a record is
//! folded once whatever length / slide.
//! Output: `symbol,window_start_ms,count,mean,std`.

use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::framework::moments::Moments;
use crate::framework::pane_window::{window, WindowAggregate, WindowSpec};
use crate::record::{symbol_text, Symbol, Trade};
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

impl QueryConfig for StatsConfig {
    const ID: &'static str = "stats_10s";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(self.spec().pane_ms())
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        self.spec().validate()
    }
    fn reads(&self) -> &[Input] {
        &[Input::Trades]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<PriceStats>().identified_by(&["symbol", "window_start_ms"])
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let stats = window(
            b.trades(),
            Self::ID,
            self.spec(),
            Stats,
            b.query_counters(),
            b.latency.clone(),
            b.states,
        )?;
        b.emit(stats);
        Ok(())
    }
}


/// A row of `stats_10s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PriceStats {
    #[serde(with = "symbol_text")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{run, trade};

    const T: u64 = 1_700_000_000_000;

    #[test]
    fn hopping_windows_hold_the_trades_of_their_ten_seconds() {
        // Prices 1, 2, 3 at T+0.5 s, T+1.5 s, T+2.5 s (the last arrives first).
        let records = [
            trade(T + 2_500, 2, "AAA", 3.0, 1),
            trade(T + 500, 0, "AAA", 1.0, 1),
            trade(T + 1_500, 1, "AAA", 2.0, 1),
        ];
        let mut rows = run::<PriceStats, _>(StatsConfig::default(), &records, 5_000).rows;
        rows.sort_by_key(|r| r.window_start_ms);
        let at = |start: u64| rows.iter().find(|r| r.window_start_ms == start).unwrap();
        // The window starting at T holds all three; T+1 s the last two; T+2 s one.
        assert_eq!((at(T).count, at(T).mean, at(T).std), (3, 2.0, Some(1.0)));
        assert_eq!((at(T + 1_000).count, at(T + 1_000).mean), (2, 2.5));
        assert!((at(T + 1_000).std.unwrap() - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!((at(T + 2_000).count, at(T + 2_000).std), (1, None));
        // Windows starting before T that hold T+0.5 s: T-9 s ... T-1 s, and none after T+2 s.
        assert_eq!(rows.len(), 9 + 3);
        assert_eq!(rows.first().unwrap().window_start_ms, T - 9_000);
    }

    #[test]
    fn merging_moments_equals_adding_one_by_one() {
        let t = |price| Trade {
            ts_ms: 0,
            seq: 0,
            symbol: Symbol::parse(b"AAA").unwrap(),
            price,
            size: 1,
        };
        let prices = [100.0, 100.5, 99.25, 101.0, 100.125];
        let mut one = Stats.init(&t(prices[0]));
        prices[1..].iter().for_each(|p| Stats.add(&mut one, &t(*p)));
        let mut left = Stats.init(&t(prices[0]));
        Stats.add(&mut left, &t(prices[1]));
        let mut right = Stats.init(&t(prices[2]));
        prices[3..].iter().for_each(|p| Stats.add(&mut right, &t(*p)));
        Stats.merge(&mut left, &right);
        let (a, b) = (Stats.finish(t(0.0).symbol, 0, &left).unwrap(), Stats.finish(t(0.0).symbol, 0, &one).unwrap());
        assert_eq!(a.count, b.count);
        assert!((a.mean - b.mean).abs() < 1e-12 && (a.std.unwrap() - b.std.unwrap()).abs() < 1e-12);
    }
}
