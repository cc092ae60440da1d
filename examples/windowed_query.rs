//! Adding a windowed query from outside the crate: a 5-second VWAP per
//! symbol, as a pane-window aggregate, in this one file.
//!
//! cargo run --release --example windowed_query [TRADES] [OUT_DIR]
//!
//! Semantics of `vwap_5s.csv` (`symbol,window_start_ms,trades,volume,vwap`):
//! per symbol and tumbling 5 000 ms window of event time, the trades, their
//! total size and `vwap = sum(price * size) / sum(size)`, folded in
//! (`ts_ms`, `seq`) order; windows without trades have no row.
//!
//! The aggregate implements `WindowAggregate` (init, add, merge, finish);
//! `WindowQuery` makes it a query and `Job::with_query` adds it to every
//! worker's dataflow on the same path as the built-in queries: its rows go
//! to `vwap_5s.csv` (the header is `VwapRow`'s fields), its counters to
//! `metrics.json`, its panes into checkpoints. The example writes a file of
//! generated trades, replays it on 1 and 3 workers, and checks every row
//! against the VWAP recomputed here from the file.

use eddy::engine::{self, Job};
use eddy::extend::WindowQuery;
use eddy::framework::pane_window::{WindowAggregate, WindowSpec};
use eddy::pipeline::{CsvSource, Pipeline, TradeSource};
use eddy::record::{Symbol, Trade};
use eddy::sources::market::MarketConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const WINDOW_MS: u64 = 5_000;

/// A row of `vwap_5s.csv`.
#[derive(Clone, Serialize, Deserialize)]
struct VwapRow {
    symbol: String,
    window_start_ms: u64,
    trades: u64,
    volume: u64,
    vwap: f64,
}

/// The partial state of one pane: trades, volume and notional.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct Notional {
    trades: u64,
    volume: u64,
    notional: f64,
}

struct Vwap;

impl WindowAggregate for Vwap {
    type In = Trade;
    type Key = Symbol;
    type State = Notional;
    // A float sum: fold in (ts, seq) order, so the bits do not depend on arrival.
    const ORDER_SENSITIVE: bool = true;
    type Out = VwapRow;

    fn key(&self, t: &Trade) -> Symbol {
        t.symbol
    }
    fn ts_ms(&self, t: &Trade) -> u64 {
        t.ts_ms
    }
    fn seq(&self, t: &Trade) -> u64 {
        t.seq
    }
    fn init(&self, t: &Trade) -> Notional {
        let mut n = Notional::default();
        self.add(&mut n, t);
        n
    }
    fn add(&self, n: &mut Notional, t: &Trade) {
        n.trades += 1;
        n.volume += t.size;
        n.notional += t.price * t.size as f64;
    }
    fn merge(&self, n: &mut Notional, o: &Notional) {
        n.trades += o.trades;
        n.volume += o.volume;
        n.notional += o.notional;
    }
    fn finish(&self, symbol: Symbol, window_start_ms: u64, n: &Notional) -> Option<VwapRow> {
        Some(VwapRow {
            symbol: symbol.text(),
            window_start_ms,
            trades: n.trades,
            volume: n.volume,
            vwap: n.notional / n.volume as f64,
        })
    }
}

/// Per (symbol, window start): trades, volume, VWAP.
type Expected = BTreeMap<(String, u64), (u64, u64, f64)>;

/// The VWAP of every symbol and window, recomputed from the file in (ts, seq) order.
fn reference(trades: &str) -> anyhow::Result<Expected> {
    let mut rows: Vec<(u64, u64, String, f64, u64)> = Vec::new();
    for (seq, row) in csv::Reader::from_path(trades)?.records().enumerate() {
        let row = row?;
        rows.push((
            row[0].parse()?,
            seq as u64,
            row[1].to_string(),
            row[2].parse()?,
            row[3].parse()?,
        ));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    let mut sums: BTreeMap<(String, u64), (u64, u64, f64)> = BTreeMap::new();
    for (ts, _, symbol, price, size) in rows {
        let s = sums.entry((symbol, ts - ts % WINDOW_MS)).or_default();
        s.0 += 1;
        s.1 += size;
        s.2 += price * size as f64;
    }
    Ok(sums
        .into_iter()
        .map(|(k, (n, v, notional))| (k, (n, v, notional / v as f64)))
        .collect())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let out = args.next().unwrap_or_else(|| "out/windowed_query".into());
    std::fs::create_dir_all(&out)?;

    let trades = format!("{out}/trades.csv");
    let mut market = MarketConfig {
        symbols: 12,
        ..MarketConfig::default()
    };
    market.arrivals.rate = 2_000.0;
    market.arrivals.count = Some(count);
    market.arrivals.disorder_ms = 100;
    eddy::generate::write_trades(&market, trades.as_ref(), None)?;
    let expected = reference(&trades)?;

    for workers in [1, 3] {
        let dir = format!("{out}/w{workers}");
        let mut pipeline = Pipeline::default();
        pipeline.sources.trades = Some(TradeSource::Csv(CsvSource {
            path: trades.clone().into(),
        }));
        pipeline.engine.workers = workers;
        pipeline.engine.status = false;
        pipeline.output.dir = Some(dir.clone().into());

        let vwap = WindowQuery::new("vwap_5s", WindowSpec::tumbling(WINDOW_MS), || Vwap)?;
        let summary = engine::run(Job::new(pipeline).with_query(vwap))?;
        anyhow::ensure!(
            summary.records.late == 0,
            "the file's disorder is within the bound"
        );

        let mut compared = 0;
        for row in csv::Reader::from_path(format!("{dir}/vwap_5s.csv"))?.deserialize() {
            let row: VwapRow = row?;
            let key = (row.symbol.clone(), row.window_start_ms);
            let (n, volume, vwap) = expected
                .get(&key)
                .ok_or_else(|| anyhow::anyhow!("{key:?}: not in the reference"))?;
            anyhow::ensure!(
                (row.trades, row.volume) == (*n, *volume) && (row.vwap - vwap).abs() <= 1e-12 * vwap,
                "{key:?} on {workers} worker(s): got {} trades, volume {}, vwap {}; recomputed {n}, {volume}, {vwap}",
                row.trades,
                row.volume,
                row.vwap
            );
            compared += 1;
        }
        anyhow::ensure!(
            compared == expected.len(),
            "{compared} rows on {workers} worker(s), {} expected",
            expected.len()
        );
        println!(
            "vwap_5s.csv on {workers} worker(s): {compared} rows, each equal to the VWAP recomputed from the trades"
        );
    }
    Ok(())
}
