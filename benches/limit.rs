//! The hand-written lower bound: a deliberately plain single-threaded loop (no
//! timely) computing M1 and M2 over the same generated trades as the engine,
//! and the engine's 1-worker throughput as a ratio to it, measured in one run.
//!
//! cargo bench --bench limit [-- TRADES]      (default 5 000 000)
//!
//! Both sides pull the trades from the same market generator (100 symbols,
//! 100 000 trades/s of event time, 100 ms disorder), so generation costs both
//! the same; the plain loop keeps everything in hash maps and emits at the end,
//! the engine runs its event-time dataflow with windows closing on the frontier.
//! Prints one CSV line: trades,limit_s,limit_per_s,engine_s,engine_per_s,ratio.

use eddy::engine::{self, Job};
use eddy::framework::moments::Moments;
use eddy::pipeline::{Pipeline, TradeSource};
use eddy::record::Symbol;
use eddy::sources::market::{MarketConfig, MarketGenerator};
use eddy::sources::schedule::{Schedule, Timing};
use eddy::sources::{Batch, Poll, Source};
use eddy::time::Watermark;
use rustc_hash::FxHashMap;
use std::time::Instant;

fn market(count: u64) -> MarketConfig {
    let mut m = MarketConfig {
        symbols: 100,
        ..MarketConfig::default()
    };
    m.arrivals.rate = 100_000.0;
    m.arrivals.count = Some(count);
    m.arrivals.disorder_ms = 100;
    m
}

struct PlainBar {
    first: (u64, u64, f64),
    last: (u64, u64, f64),
    high: f64,
    low: f64,
    volume: u64,
    trades: u64,
    notional: f64,
}

/// M1 and M2 in hash maps, everything emitted at the end; returns the row count.
fn plain_loop(config: &MarketConfig) -> usize {
    let schedule = Schedule::new(
        Timing::AsFast,
        1.0,
        engine::DEFAULT_START_MS,
        Instant::now(),
        10_240,
    );
    let mut source = MarketGenerator::new(config, schedule, 1024, 0, 1);
    let mut bars: FxHashMap<(Symbol, u64), PlainBar> = FxHashMap::default();
    let mut panes: FxHashMap<(Symbol, u64), Moments> = FxHashMap::default();
    let mut batch = Batch::default();
    let mut watermark = Watermark::new(u64::MAX);
    loop {
        batch.clear();
        let poll = source
            .next_batch(&mut batch, &mut watermark)
            .expect("generator");
        for t in &batch.on_time {
            let second = t.ts_ms - t.ts_ms % 1_000;
            let at = (t.ts_ms, t.seq, t.price);
            let bar = bars.entry((t.symbol, second)).or_insert(PlainBar {
                first: at,
                last: at,
                high: t.price,
                low: t.price,
                volume: 0,
                trades: 0,
                notional: 0.0,
            });
            if (at.0, at.1) < (bar.first.0, bar.first.1) {
                bar.first = at;
            }
            if (at.0, at.1) > (bar.last.0, bar.last.1) {
                bar.last = at;
            }
            bar.high = bar.high.max(t.price);
            bar.low = bar.low.min(t.price);
            bar.volume += t.size;
            bar.trades += 1;
            bar.notional += t.price * t.size as f64;
            panes.entry((t.symbol, second)).or_default().add(t.price);
        }
        if poll == Poll::Done {
            break;
        }
    }
    // M2: each 10 s window merges its ten 1 s panes.
    let mut windows: FxHashMap<(Symbol, u64), Moments> = FxHashMap::default();
    for ((symbol, second), m) in &panes {
        for k in 0..10 {
            if let Some(start) = second.checked_sub(k * 1_000) {
                windows.entry((*symbol, start)).or_default().merge(m);
            }
        }
    }
    let vwaps: f64 = bars
        .values()
        .map(|b| b.notional / b.volume as f64 + b.high - b.low + b.first.2 - b.last.2)
        .sum();
    let stds: f64 = windows.values().filter_map(|m| m.std()).sum();
    std::hint::black_box((vwaps, stds));
    bars.len() + windows.len()
}

fn engine_run(config: &MarketConfig) -> u64 {
    let mut p = Pipeline::default();
    p.sources.trades = Some(TradeSource::Market(config.clone()));
    p.engine.status = false;
    p.queries.disable("vol_60s");
    p.queries.disable("corr_60s");
    p.queries.disable("ewma");
    engine::run(Job::new(p))
        .expect("engine run")
        .records
        .rows_out
}

fn main() {
    let count: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let config = market(count);
    let started = Instant::now();
    let plain_rows = plain_loop(&config);
    let limit_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let engine_rows = engine_run(&config);
    let engine_s = started.elapsed().as_secs_f64();
    assert_eq!(plain_rows as u64, engine_rows, "both compute the same rows");
    println!("trades,limit_s,limit_per_s,engine_s,engine_per_s,ratio");
    println!(
        "{count},{limit_s:.3},{:.0},{engine_s:.3},{:.0},{:.3}",
        count as f64 / limit_s,
        count as f64 / engine_s,
        limit_s / engine_s
    );
}
