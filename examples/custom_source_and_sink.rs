//! Embedding eddy as a library with a source and a sink of your own.
//!
//! cargo run --release --example custom_source_and_sink [TRADES] [OUT_DIR]
//!
//! The source is a made-up exchange feed (four symbols whose prices swing
//! on slow sine waves, a trade every 0.5 ms): anything that implements
//! `eddy::sources::Source` can feed the engine, one instance per worker. The
//! sink receives the 1-second bars and 10-second moving averages as the
//! dataflow computes them (here: it keeps a summary per symbol); the usual
//! CSV files are written too when OUT_DIR is given. The run ends by checking
//! the sink's total volume against the feed's, computed separately.

use eddy::engine::{self, Job};
use eddy::pipeline::Pipeline;
use eddy::queries::bars_1s::Bar;
use eddy::queries::stats_10s::PriceStats;
use eddy::record::{Symbol, Trade};
use eddy::sinks::row_sink::{RowBatch, RowSink};
use eddy::sources::schedule::Timing;
use eddy::sources::{Batch, Poll, Source};
use eddy::time::Watermark;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const SYMBOLS: [&str; 4] = ["ALPHA", "BETA", "GAMMA", "DELTA"];
const START_MS: u64 = 1_700_000_000_000;

/// Trade `n` of the feed: a pure function of `n`, so that any worker can make
/// its share and the check below can recompute the whole feed.
fn trade(n: u64) -> Trade {
    let k = (n % SYMBOLS.len() as u64) as usize;
    let ts_ms = START_MS + n / 2;
    let t = (ts_ms - START_MS) as f64 / 1000.0;
    let price = 100.0 * (k + 1) as f64 * (1.0 + 0.02 * (t / (20.0 + 7.0 * k as f64)).sin());
    Trade {
        ts_ms,
        seq: n,
        symbol: Symbol::parse(SYMBOLS[k].as_bytes()).expect("a valid symbol"),
        price: (price * 100.0).round() / 100.0,
        size: 1 + n % 9,
    }
}

/// One worker's share of the feed: trades `index`, `index + peers`, ...
struct ExchangeFeed {
    next: u64,
    peers: u64,
    total: u64,
}

impl Source<Trade> for ExchangeFeed {
    fn next_batch(
        &mut self,
        batch: &mut Batch<Trade>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll> {
        for _ in 0..1024 {
            if self.next >= self.total {
                return Ok(Poll::Done);
            }
            let t = trade(self.next);
            // The watermark trails the greatest time seen; a trade behind it is
            // filed as late (counted, written to late.csv), never dropped.
            watermark.observe(t.ts_ms);
            batch.generated += 1;
            batch.admit(t, t.ts_ms, watermark);
            self.next += self.peers;
        }
        Ok(Poll::Ready)
    }

    // Checkpoints store where the source is, and resume from exactly there.
    fn save(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.next.to_le_bytes().to_vec())
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        self.next = u64::from_le_bytes(saved.try_into()?);
        Ok(())
    }
}

/// What the sink keeps per symbol.
#[derive(Default, Debug)]
struct SymbolSummary {
    bars: u64,
    volume: u64,
    /// The latest bar's (window start, close) and 10-second mean.
    last_close: (u64, f64),
    last_mean: (u64, f64),
}

/// A sink: called on whichever worker computed the rows, so it locks.
#[derive(Default)]
struct Summaries(Mutex<BTreeMap<String, SymbolSummary>>);

/// Takes the row types it wants from each batch, and ignores the others.
impl RowSink for Summaries {
    fn rows(&self, batch: &RowBatch<'_>) {
        if let Some(bars) = batch.of::<Bar>() {
            self.bars(bars);
        } else if let Some(stats) = batch.of::<PriceStats>() {
            self.stats(stats);
        }
    }
}

impl Summaries {
    fn bars(&self, rows: &[Bar]) {
        let mut map = self.0.lock().unwrap();
        for bar in rows {
            let s = map.entry(bar.symbol.text()).or_default();
            s.bars += 1;
            s.volume += bar.volume;
            if bar.window_start_ms >= s.last_close.0 {
                s.last_close = (bar.window_start_ms, bar.close);
            }
        }
    }

    fn stats(&self, rows: &[PriceStats]) {
        let mut map = self.0.lock().unwrap();
        for row in rows {
            let s = map.entry(row.symbol.text()).or_default();
            if row.window_start_ms >= s.last_mean.0 {
                s.last_mean = (row.window_start_ms, row.mean);
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(Ok(400_000), |a| a.parse())?;
    let out = args.next();

    let mut pipeline = Pipeline::default();
    pipeline.engine.workers = 2;
    pipeline.engine.timing = Timing::AsFast;
    pipeline.engine.status = false;
    pipeline.output.dir = out.clone().map(Into::into);

    let summaries = Arc::new(Summaries::default());
    let job = Job::new(pipeline)
        .with_trade_source(move |index, peers| {
            Ok(Box::new(ExchangeFeed {
                next: index as u64,
                peers: peers as u64,
                total,
            }))
        })
        .with_sink(summaries.clone());
    let summary = engine::run(job)?;
    println!("{}", summary.report());

    println!("\nsymbol  bars  volume   last close  last 10 s mean");
    let map = summaries.0.lock().unwrap();
    for (symbol, s) in map.iter() {
        println!(
            "{symbol:<6} {:>5} {:>7} {:>12.2} {:>15.3}",
            s.bars, s.volume, s.last_close.1, s.last_mean.1
        );
    }
    let from_sink: u64 = map.values().map(|s| s.volume).sum();
    let fed: u64 = (0..total).map(|n| trade(n).size).sum();
    anyhow::ensure!(from_sink == fed, "volume {from_sink} in bars, {fed} fed");
    println!("volume checked: {from_sink} in the sink's bars = {fed} fed");
    if let Some(out) = out {
        println!("CSV files in {out}/");
    }
    Ok(())
}
