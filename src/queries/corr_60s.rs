//! C1 `corr_60s`: Pearson correlation of 1-second bar-close returns for every
//! pair of a configured symbol set, per tumbling window (default 60 000 ms),
//! computed from M1's bars inside the dataflow.
//!
//! A symbol's return for second k is ln(close_k / close_{k-1}), defined only
//! when both bars exist; it belongs to the window that holds k's start. For a
//! pair (a < b) and a window, the seconds where both have a return are paired:
//! n = their number; corr = Pearson correlation of the two series, from stable
//! co-moments (`moments.rs`). Rows only where n >= 3 and neither series is
//! constant. Output: `symbol_a,symbol_b,window_start_ms,n,corr`.
//!
//! Returns are computed per symbol in bar order (`ordered.rs`) on the worker
//! owning the symbol, then broadcast, so that every worker holds the window's
//! returns (symbols x 60 numbers) and computes its share of the pairs: pair p
//! of the window's sorted symbol list goes to worker p mod workers. The cost
//! per window is O(pairs x seconds), spread over the workers.

use super::bars_1s::{Bar, BarsConfig};
use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::checkpoint::state::StateRegistry;
use crate::framework::moments::CoMoments;
use crate::framework::ordered::{ordered, OrderedLogic};
use crate::framework::HeldCapability;
use crate::probes::{LatencyProbe, QueryCounters};
use crate::record::{symbol_text, Symbol};
use crate::rescale::parts::Replicated;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::Stream;

/// Pipeline `[queries.corr_60s]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    pub enabled: bool,
    pub size_ms: u64,
    /// The symbols whose pairs are correlated; none or empty means every symbol.
    pub symbols: Option<Vec<String>>,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            enabled: true,
            size_ms: 60_000,
            symbols: None,
        }
    }
}

impl CorrelationConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.size_ms == 0 || !self.size_ms.is_multiple_of(1_000) {
            return Err(format!(
                "size_ms must be a positive multiple of 1000, got {}",
                self.size_ms
            ));
        }
        for s in self.symbols.iter().flatten() {
            if Symbol::parse(s.as_bytes()).is_none() {
                return Err(format!("symbol `{s}` is not [A-Z0-9]{{1,12}}"));
            }
        }
        Ok(())
    }

    /// The configured symbol set; none means all.
    pub fn symbol_set(&self) -> Option<BTreeSet<Symbol>> {
        let list = self.symbols.as_ref().filter(|l| !l.is_empty())?;
        Some(
            list.iter()
                .filter_map(|s| Symbol::parse(s.as_bytes()))
                .collect(),
        )
    }
}

impl QueryConfig for CorrelationConfig {
    const ID: &'static str = "corr_60s";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(self.size_ms)
    }
    fn validate(&self, all: &QueryTables) -> Result<(), String> {
        CorrelationConfig::validate(self)?;
        let bars: BarsConfig = all.get()?;
        if bars.size_ms != 1_000 {
            return Err("needs 1-second bars (queries.bars_1s.size_ms = 1000)".into());
        }
        Ok(())
    }
    fn reads(&self) -> &[Input] {
        &[Input::Bars]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<Correlation>().identified_by(&["symbol_a", "symbol_b", "window_start_ms"])
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let bars = b.bars()?;
        let returns = ordered(
            bars,
            b.trades_end(),
            "returns",
            BarReturns::new(self.symbol_set()),
            b.counters("bars/returns"),
            b.states,
        )?;
        let corr = correlate(
            returns.broadcast(),
            self,
            b.index(),
            b.peers(),
            b.query_counters(),
            b.latency.clone(),
            b.states,
        )?;
        b.emit(corr);
        Ok(())
    }
}


/// A symbol's 1-second bar-close return.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct SecondReturn {
    pub symbol: Symbol,
    /// Start of second k, ms.
    pub second_ms: u64,
    pub value: f64,
}

/// Turns a symbol's bars, in order, into returns of consecutive seconds.
#[derive(Serialize, Deserialize)]
pub struct BarReturns {
    last_close: FxHashMap<Symbol, (u64, f64)>,
    set: Option<BTreeSet<Symbol>>,
}

impl BarReturns {
    pub fn new(set: Option<BTreeSet<Symbol>>) -> Self {
        BarReturns {
            last_close: FxHashMap::default(),
            set,
        }
    }
}

// Rescaled: each key's state goes with its key group; the rest is settings.
crate::grouped_by_map!(BarReturns, last_close);

impl OrderedLogic for BarReturns {
    type In = Bar;
    type Out = SecondReturn;

    fn order(&self, bar: &Bar) -> (u64, u64) {
        (bar.window_start_ms, 0)
    }

    fn on_record(&mut self, bar: &Bar, out: &mut Vec<SecondReturn>) {
        if self.set.as_ref().is_some_and(|s| !s.contains(&bar.symbol)) {
            return;
        }
        let previous = self
            .last_close
            .insert(bar.symbol, (bar.window_start_ms, bar.close));
        if let Some((second_ms, close)) = previous {
            if second_ms + 1_000 == bar.window_start_ms {
                out.push(SecondReturn {
                    symbol: bar.symbol,
                    second_ms: bar.window_start_ms,
                    value: (bar.close / close).ln(),
                });
            }
        }
    }

    fn on_frontier(&mut self, _frontier_ms: Option<u64>, _out: &mut Vec<SecondReturn>) {}

    fn owes_at(&self) -> Option<u64> {
        None
    }
}

/// A row of `corr_60s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Correlation {
    #[serde(with = "symbol_text")]
    pub symbol_a: Symbol,
    #[serde(with = "symbol_text")]
    pub symbol_b: Symbol,
    pub window_start_ms: u64,
    pub n: u64,
    pub corr: f64,
}

/// The returns of one window: per symbol, one slot per second.
type WindowReturns = BTreeMap<Symbol, Vec<Option<f64>>>;

/// Correlates every pair this worker owns, for one closed window.
pub fn correlate_window(
    start_ms: u64,
    returns: &WindowReturns,
    worker: usize,
    workers: usize,
    out: &mut Vec<Correlation>,
) {
    let symbols: Vec<(&Symbol, &Vec<Option<f64>>)> = returns.iter().collect();
    let mut pair = 0usize;
    for (i, (a, ra)) in symbols.iter().enumerate() {
        for (b, rb) in &symbols[i + 1..] {
            pair += 1;
            if pair % workers != worker {
                continue;
            }
            let mut m = CoMoments::default();
            for (x, y) in ra.iter().zip(rb.iter()) {
                if let (Some(x), Some(y)) = (x, y) {
                    m.add(*x, *y);
                }
            }
            if m.count >= 3 {
                if let Some(corr) = m.correlation() {
                    out.push(Correlation {
                        symbol_a: **a,
                        symbol_b: **b,
                        window_start_ms: start_ms,
                        n: m.count,
                        corr,
                    });
                }
            }
        }
    }
}

/// C1 over a broadcast stream of returns (see the module doc).
pub fn correlate<'scope>(
    returns: Stream<'scope, u64, Vec<SecondReturn>>,
    config: &CorrelationConfig,
    worker: usize,
    workers: usize,
    counters: Arc<QueryCounters>,
    latency: LatencyProbe,
    states: &StateRegistry,
) -> anyhow::Result<Stream<'scope, u64, Vec<Correlation>>> {
    let size_ms = config.size_ms;
    let seconds = (size_ms / 1_000) as usize;
    // Every worker holds every symbol's returns (a broadcast): restored
    // from any old worker's, whatever the layout.
    let windows = states.cell("corr_60s", Replicated::<BTreeMap<u64, WindowReturns>>::default)?;
    Ok(
        returns.unary_frontier(Pipeline, "corr_60s", move |initial, _info| {
            let mut held = HeldCapability::default();
            // Restored windows owe their rows.
            held.hold(initial);
            held.settle(
                windows
                    .borrow()
                    .0
                    .first_key_value()
                    .map(|(start, _)| start + size_ms - 1),
            );
            let mut rows = Vec::new();
            move |(input, frontier), output| {
                let mut windows = windows.borrow_mut();
                let windows = &mut windows.0;
                input.for_each_stamp(|cap, batches| {
                    let Some(cap) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    held.hold(cap);
                    for batch in batches {
                        counters.add_consumed(batch.len() as u64);
                        for r in batch.drain(..) {
                            let start = r.second_ms - r.second_ms % size_ms;
                            let slots = windows
                                .entry(start)
                                .or_default()
                                .entry(r.symbol)
                                .or_insert_with(|| vec![None; seconds]);
                            slots[((r.second_ms - start) / 1_000) as usize] = Some(r.value);
                        }
                    }
                });
                while let Some((&start, _)) = windows.first_key_value() {
                    let last_ms = start + size_ms - 1;
                    if frontier.less_equal(&last_ms) {
                        break;
                    }
                    let returns = windows.remove(&start).expect("first window");
                    rows.clear();
                    correlate_window(start, &returns, worker, workers, &mut rows);
                    latency.window_closed(start + size_ms);
                    if !rows.is_empty() {
                        counters.add_rows(rows.len() as u64);
                        output
                            .session(&held.at(last_ms))
                            .give_iterator(rows.drain(..));
                    }
                }
                held.settle(
                    windows
                        .first_key_value()
                        .map(|(start, _)| start + size_ms - 1),
                );
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{run, trade, Record};

    const T: u64 = 1_700_000_040_000;

    #[test]
    fn moving_together_is_one_and_moving_apart_is_minus_one() {
        // One trade a second for 5 s: BBB is twice AAA (the same returns),
        // CCC its inverse (the opposite returns).
        let prices = [100.0, 101.0, 99.0, 102.0, 100.5];
        let mut records: Vec<Record> = Vec::new();
        for (s, p) in prices.iter().enumerate() {
            let ts = T + s as u64 * 1_000 + 10;
            let seq = records.len() as u64;
            records.push(trade(ts, seq, "AAA", *p, 1));
            records.push(trade(ts, seq + 1, "BBB", 2.0 * p, 1));
            records.push(trade(ts, seq + 2, "CCC", 1.0 / p, 1));
        }
        let mut rows = run::<Correlation, _>(CorrelationConfig::default(), &records, 500).rows;
        rows.sort_by_key(|r| (r.symbol_a.text(), r.symbol_b.text()));
        let got: Vec<(String, String, u64, u64)> = rows
            .iter()
            .map(|r| (r.symbol_a.text(), r.symbol_b.text(), r.window_start_ms, r.n))
            .collect();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string(), T, 4);
        assert_eq!(got, [pair("AAA", "BBB"), pair("AAA", "CCC"), pair("BBB", "CCC")]);
        let corr: Vec<f64> = rows.iter().map(|r| r.corr).collect();
        for (c, want) in corr.iter().zip([1.0, -1.0, -1.0]) {
            assert!((c - want).abs() < 1e-9, "{corr:?}");
        }
    }

    #[test]
    fn fewer_than_three_paired_returns_give_no_row() {
        let records = [
            trade(T + 10, 0, "AAA", 1.0, 1),
            trade(T + 10, 1, "BBB", 2.0, 1),
            trade(T + 1_010, 2, "AAA", 1.1, 1),
            trade(T + 1_010, 3, "BBB", 2.1, 1),
            trade(T + 2_010, 4, "AAA", 1.2, 1),
            trade(T + 2_010, 5, "BBB", 2.0, 1),
        ];
        let rows = run::<Correlation, _>(CorrelationConfig::default(), &records, 500).rows;
        assert!(rows.is_empty(), "{rows:?}");
    }
}
