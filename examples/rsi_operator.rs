//! Writing a new operator and registering it with the engine, in one file:
//! a per-symbol RSI (relative strength index) over 1-second closes.
//!
//! cargo run --release --example rsi_operator [TRADES] [OUT_DIR]
//!
//! Semantics of `rsi.csv` (`symbol,second_ms,close,rsi`): a symbol's close in
//! a second is its last trade in (`ts_ms`, `seq`) order; a change is the
//! difference between consecutive closes (seconds without trades are
//! skipped); the first `PERIOD` changes seed the average gain and loss as
//! plain means, later ones update them as Wilder does
//! (`avg = (avg * (PERIOD - 1) + x) / PERIOD`); `rsi = 100 - 100 / (1 + gain / loss)`
//! (100 when there was no loss). A second's row is emitted once the frontier
//! passes its end, or when the input ends.
//!
//! The logic implements `OrderedLogic`: the engine hands it each worker's
//! trades per symbol in (`ts_ms`, `seq`) order as the watermark makes them
//! final, tells it the frontier, and keeps it in checkpoints (it is serde).
//! `Job::with_query(OrderedQuery::new(..))` adds it to every worker's
//! dataflow after the exchange by symbol; its rows go to `rsi.csv` (header
//! from `RsiRow`'s fields), its counters to `metrics.json`. The run ends by recomputing every RSI from `bars_1s.csv`
//! (the engine's own bars, a separate path) and comparing.

use eddy::engine::{self, Job};
use eddy::extend::OrderedQuery;
use eddy::framework::ordered::OrderedLogic;
use eddy::pipeline::{Pipeline, TradeSource};
use eddy::record::{Symbol, Trade};
use eddy::sources::market::MarketConfig;
use eddy::sources::schedule::Timing;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

const PERIOD: f64 = 14.0;

/// A row of `rsi.csv`.
#[derive(Clone, Serialize, Deserialize)]
struct RsiRow {
    symbol: String,
    second_ms: u64,
    close: f64,
    rsi: f64,
}

/// One symbol's state: the open second's close, and the averages.
#[derive(Serialize, Deserialize)]
struct SymbolRsi {
    open_second: Option<(u64, f64)>,
    last_close: Option<f64>,
    changes: u32,
    avg_gain: f64,
    avg_loss: f64,
}

/// The operator: a few numbers per symbol.
#[derive(Serialize, Deserialize, Default)]
struct Rsi {
    symbols: HashMap<Symbol, SymbolRsi>,
}

impl SymbolRsi {
    /// Closes the open second: one change, one row once seeded.
    fn close_second(&mut self, symbol: Symbol, out: &mut Vec<RsiRow>) {
        let Some((second_ms, close)) = self.open_second.take() else {
            return;
        };
        if let Some(last) = self.last_close.replace(close) {
            let (gain, loss) = ((close - last).max(0.0), (last - close).max(0.0));
            self.changes += 1;
            let n = f64::from(self.changes).min(PERIOD);
            self.avg_gain += (gain - self.avg_gain) / n;
            self.avg_loss += (loss - self.avg_loss) / n;
            if f64::from(self.changes) >= PERIOD {
                out.push(RsiRow {
                    symbol: symbol.text(),
                    second_ms,
                    close,
                    rsi: rsi(self.avg_gain, self.avg_loss),
                });
            }
        }
    }
}

fn rsi(gain: f64, loss: f64) -> f64 {
    if loss == 0.0 {
        100.0
    } else {
        100.0 - 100.0 / (1.0 + gain / loss)
    }
}

// Checkpoints save the per-symbol map in key groups, so a run resumed on
// more or fewer workers restores each symbol where its trades now arrive.
eddy::grouped_by_map!(Rsi, symbols);

impl OrderedLogic for Rsi {
    type In = Trade;
    type Out = RsiRow;

    fn order(&self, t: &Trade) -> (u64, u64) {
        (t.ts_ms, t.seq)
    }

    fn on_record(&mut self, t: &Trade, out: &mut Vec<RsiRow>) {
        let second = t.ts_ms - t.ts_ms % 1000;
        let s = self.symbols.entry(t.symbol).or_insert(SymbolRsi {
            open_second: None,
            last_close: None,
            changes: 0,
            avg_gain: 0.0,
            avg_loss: 0.0,
        });
        // Trades come in time order: a new second completes the previous one.
        if s.open_second.is_some_and(|(open, _)| open != second) {
            s.close_second(t.symbol, out);
        }
        s.open_second = Some((second, t.price));
    }

    fn on_frontier(&mut self, frontier_ms: Option<u64>, out: &mut Vec<RsiRow>) {
        // Every trade before the frontier is in: seconds ending by it are complete.
        let complete = |open: u64| frontier_ms.is_none_or(|f| open + 1000 <= f);
        let mut done: Vec<Symbol> = (self.symbols.iter())
            .filter(|(_, s)| s.open_second.is_some_and(|(open, _)| complete(open)))
            .map(|(symbol, _)| *symbol)
            .collect();
        done.sort();
        for symbol in done {
            let s = self.symbols.get_mut(&symbol).expect("listed above");
            s.close_second(symbol, out);
        }
    }

    fn owes_at(&self) -> Option<u64> {
        // The operator holds its output back to the earliest second it may still close.
        (self.symbols.values())
            .filter_map(|s| s.open_second.map(|(open, _)| open + 999))
            .min()
    }
}

/// RSI rows recomputed from `bars_1s.csv`, by (symbol, second).
fn reference(bars_csv: &str) -> anyhow::Result<BTreeMap<(String, u64), f64>> {
    let mut closes: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for row in csv::Reader::from_path(bars_csv)?.records() {
        let row = row?;
        let bar = (row[1].parse()?, row[5].parse()?);
        closes.entry(row[0].to_string()).or_default().push(bar);
    }
    let mut rows = BTreeMap::new();
    for (symbol, mut bars) in closes {
        bars.sort_by_key(|b| b.0);
        let (mut gain, mut loss) = (0.0, 0.0);
        for (k, pair) in bars.windows(2).enumerate() {
            let change = pair[1].1 - pair[0].1;
            let n = ((k + 1) as f64).min(PERIOD);
            gain += (change.max(0.0) - gain) / n;
            loss += ((-change).max(0.0) - loss) / n;
            if (k + 1) as f64 >= PERIOD {
                rows.insert((symbol.clone(), pair[1].0), rsi(gain, loss));
            }
        }
    }
    Ok(rows)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let trades: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let out = args.next().unwrap_or_else(|| "out/rsi".into());

    let mut market = MarketConfig {
        symbols: 8,
        ..MarketConfig::default()
    };
    market.arrivals.rate = 4_000.0;
    market.arrivals.count = Some(trades);
    market.arrivals.disorder_ms = 100;
    let mut pipeline = Pipeline::default();
    pipeline.sources.trades = Some(TradeSource::Market(market));
    pipeline.engine.workers = 2;
    pipeline.engine.timing = Timing::AsFast;
    pipeline.engine.status = false;
    pipeline.output.dir = Some(out.clone().into());

    let query = OrderedQuery::new("rsi", Rsi::default);
    let summary = engine::run(Job::new(pipeline).with_query(query))?;
    println!("{}", summary.report());

    let expected = reference(&format!("{out}/bars_1s.csv"))?;
    let mut compared = 0;
    for row in csv::Reader::from_path(format!("{out}/rsi.csv"))?.records() {
        let row = row?;
        let key = (row[0].to_string(), row[1].parse::<u64>()?);
        let got: f64 = row[3].parse()?;
        let want = expected
            .get(&key)
            .ok_or_else(|| anyhow::anyhow!("{key:?}: not in the reference"))?;
        anyhow::ensure!(
            (got - want).abs() < 1e-9,
            "{key:?}: rsi {got}, reference {want}"
        );
        if compared < 3 {
            println!("{},{},{},{got:.2}", &row[0], &row[1], &row[2]);
        }
        compared += 1;
    }
    anyhow::ensure!(
        compared == expected.len(),
        "{compared} rows, {} expected",
        expected.len()
    );
    println!("rsi.csv: {compared} rows, each equal to the RSI recomputed from bars_1s.csv");
    Ok(())
}
