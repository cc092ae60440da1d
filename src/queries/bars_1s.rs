//! M1 `bars_1s`: per-symbol OHLCV bars over tumbling windows (default 1 000 ms).
//!
//! open/close are the prices of the first/last trade by (`ts_ms`, `seq`), so
//! ties in event time go to arrival order; high/low the extremes; volume the
//! sum of sizes; trades the count; vwap = sum(price * size) / sum(size).
//! Output: `symbol,window_start_ms,open,high,low,close,volume,trades,vwap`.

use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::framework::pane_window::{WindowAggregate, WindowSpec};
use crate::record::{symbol_text, Symbol, Trade};
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

impl QueryConfig for BarsConfig {
    const ID: &'static str = "bars_1s";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(self.spec().pane_ms())
    }
    fn validate(&self, _: &super::QueryTables) -> Result<(), String> {
        self.spec().validate()
    }
    fn reads(&self) -> &[Input] {
        &[Input::Trades]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<Bar>().identified_by(&["symbol", "window_start_ms"])
    }
    /// The bars are shared with the queries that read them ([`Build::bars`]).
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let bars = b.bars()?;
        b.emit(bars);
        Ok(())
    }
}


/// A row of `bars_1s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bar {
    #[serde(with = "symbol_text")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{run, trade};

    const T: u64 = 1_700_000_000_000;

    fn bars(records: &[crate::queries::testing::Record]) -> Vec<Bar> {
        let mut rows = run::<Bar, _>(BarsConfig::default(), records, 200).rows;
        rows.sort_by_key(|b| (b.symbol.text(), b.window_start_ms));
        rows
    }

    #[test]
    fn the_module_docs_example_open_close_by_ts_then_seq() {
        // Two trades share ts T+500: the close is the later by seq (price 9),
        // though it arrived first.
        let rows = bars(&[
            trade(T + 100, 0, "AAA", 10.0, 1),
            trade(T + 500, 2, "AAA", 9.0, 1),
            trade(T + 500, 1, "AAA", 12.0, 3),
            trade(T + 1_500, 3, "AAA", 11.0, 2),
        ]);
        assert_eq!(rows.len(), 2);
        let b = &rows[0];
        assert_eq!(b.window_start_ms, T);
        assert_eq!((b.open, b.high, b.low, b.close), (10.0, 12.0, 9.0, 9.0));
        assert_eq!((b.volume, b.trades), (5, 3));
        assert_eq!(b.vwap, (10.0 + 36.0 + 9.0) / 5.0);
        assert_eq!((rows[1].window_start_ms, rows[1].close), (T + 1_000, 11.0));
    }

    #[test]
    fn a_second_without_trades_has_no_bar() {
        let rows = bars(&[trade(T, 0, "AAA", 1.0, 1), trade(T + 2_000, 1, "AAA", 2.0, 1)]);
        let starts: Vec<u64> = rows.iter().map(|b| b.window_start_ms).collect();
        assert_eq!(starts, [T, T + 2_000]);
    }

    #[test]
    fn merging_panes_equals_adding_one_by_one() {
        let t = |ts, seq, price, size| Trade {
            ts_ms: ts,
            seq,
            symbol: Symbol::parse(b"AAA").unwrap(),
            price,
            size,
        };
        let all = [t(5, 0, 3.0, 2), t(1, 1, 4.0, 1), t(5, 2, 1.0, 7), t(9, 3, 2.5, 1)];
        let mut one = Bars.init(&all[0]);
        all[1..].iter().for_each(|r| Bars.add(&mut one, r));
        let mut left = Bars.init(&all[0]);
        Bars.add(&mut left, &all[1]);
        let mut right = Bars.init(&all[2]);
        Bars.add(&mut right, &all[3]);
        Bars.merge(&mut left, &right);
        assert_eq!(Bars.finish(all[0].symbol, 0, &left), Bars.finish(all[0].symbol, 0, &one));
    }
}
