//! The hand-written lower bound for M1+M2, file to file: a deliberately plain
//! single-threaded loop (no timely) that reads a trades CSV, drops late rows
//! by the serial rule (watermark = greatest ts before the row − 200 ms), keeps
//! 1 s bars and 1 s moment panes in hash maps, and writes `bars_1s.csv` and
//! `stats_10s.csv` (10 s windows sliding by 1 s, merged from the panes) with
//! eddy's own row types. `benches/limit.sh` times it against `eddy run` on the
//! same file, both as whole commands.
//!
//! cargo run --release --example plain_m1m2 -- TRADES.csv OUT_DIR
//!
//! Simplifications that only make it faster than the engine: no checkpoints,
//! no metrics, rows written at the end, pane moments added in file order (the
//! engine adds them in (ts, seq) order, so `std` may differ in the last bits).

use eddy::framework::moments::Moments;
use eddy::queries::bars_1s::Bar;
use eddy::queries::stats_10s::PriceStats;
use eddy::record::{Symbol, Trade};
use eddy::sources::parse::ParseRow;
use rustc_hash::FxHashMap;
use std::path::Path;

const MAX_DELAY_MS: u64 = 200;

struct PlainBar {
    first: (u64, u64, f64),
    last: (u64, u64, f64),
    high: f64,
    low: f64,
    volume: u64,
    trades: u64,
    notional: f64,
}

impl PlainBar {
    fn new(t: &Trade) -> Self {
        let at = (t.ts_ms, t.seq, t.price);
        PlainBar {
            first: at,
            last: at,
            high: t.price,
            low: t.price,
            volume: 0,
            trades: 0,
            notional: 0.0,
        }
    }

    fn add(&mut self, t: &Trade) {
        let at = (t.ts_ms, t.seq, t.price);
        if (at.0, at.1) < (self.first.0, self.first.1) {
            self.first = at;
        }
        if (at.0, at.1) > (self.last.0, self.last.1) {
            self.last = at;
        }
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        self.volume += t.size;
        self.trades += 1;
        self.notional += t.price * t.size as f64;
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out] = args.as_slice() else {
        anyhow::bail!("usage: plain_m1m2 TRADES.csv OUT_DIR");
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(input)?;
    let mut bars: FxHashMap<(Symbol, u64), PlainBar> = FxHashMap::default();
    let mut panes: FxHashMap<(Symbol, u64), Moments> = FxHashMap::default();
    let mut row = csv::ByteRecord::new();
    let (mut seq, mut max_ts, mut late, mut malformed) = (0u64, 0u64, 0u64, 0u64);
    while reader.read_byte_record(&mut row)? {
        let Ok(t) = Trade::parse_row(&row, seq) else {
            malformed += 1;
            continue;
        };
        seq += 1;
        if t.ts_ms + MAX_DELAY_MS < max_ts {
            late += 1;
            continue;
        }
        max_ts = max_ts.max(t.ts_ms);
        let second = t.ts_ms - t.ts_ms % 1_000;
        bars.entry((t.symbol, second))
            .or_insert_with(|| PlainBar::new(&t))
            .add(&t);
        panes.entry((t.symbol, second)).or_default().add(t.price);
    }
    let mut windows: FxHashMap<(Symbol, u64), Moments> = FxHashMap::default();
    for ((symbol, second), m) in &panes {
        for k in 0..10 {
            if let Some(start) = second.checked_sub(k * 1_000) {
                windows.entry((*symbol, start)).or_default().merge(m);
            }
        }
    }
    let out = Path::new(out);
    std::fs::create_dir_all(out)?;
    let mut w = csv::Writer::from_path(out.join("bars_1s.csv"))?;
    for ((symbol, window_start_ms), b) in &bars {
        w.serialize(Bar {
            symbol: *symbol,
            window_start_ms: *window_start_ms,
            open: b.first.2,
            high: b.high,
            low: b.low,
            close: b.last.2,
            volume: b.volume,
            trades: b.trades,
            vwap: b.notional / b.volume as f64,
        })?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(out.join("stats_10s.csv"))?;
    for ((symbol, window_start_ms), m) in &windows {
        w.serialize(PriceStats {
            symbol: *symbol,
            window_start_ms: *window_start_ms,
            count: m.count,
            mean: m.mean,
            std: m.std(),
        })?;
    }
    w.flush()?;
    eprintln!(
        "plain_m1m2: {seq} trades, {late} late, {malformed} malformed, {} bars, {} stats rows",
        bars.len(),
        windows.len()
    );
    Ok(())
}
