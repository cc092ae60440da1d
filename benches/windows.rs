//! Criterion micro-benchmarks of the window operators' per-record work (pane
//! folding and window closing, without timely), and of a whole 1-worker run.
//!
//! cargo bench --bench windows

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eddy::engine::{self, Job};
use eddy::framework::pane_window::{PaneStore, WindowAggregate, WindowSpec};
use eddy::pipeline::{Pipeline, TradeSource};
use eddy::queries::bars_1s::Bars;
use eddy::queries::stats_10s::Stats;
use eddy::record::{Symbol, Trade};
use eddy::sources::market::MarketConfig;

const N: usize = 100_000;

/// 100 000 trades over 20 symbols and 10 s, mildly out of order.
fn trades() -> Vec<Trade> {
    (0..N as u64)
        .map(|i| Trade {
            ts_ms: 1_700_000_000_000 + i / 10 - (i * 7919 % 50),
            seq: i,
            symbol: Symbol::parse(format!("SYM{:03}", i % 20).as_bytes()).unwrap(),
            price: 100.0 + (i % 97) as f64 * 0.01,
            size: 1 + i % 300,
        })
        .collect()
}

fn fold_and_close<A: WindowAggregate<In = Trade>>(
    agg: &A,
    spec: WindowSpec,
    trades: &[Trade],
) -> usize {
    let mut store = PaneStore::<A>::new(spec);
    let mut rows = Vec::new();
    for t in trades {
        store.insert(agg, t);
    }
    while store.close_next(agg, &mut rows).is_some() {}
    rows.len()
}

fn operators(c: &mut Criterion) {
    let trades = trades();
    let mut group = c.benchmark_group("window operators");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("bars_1s (tumbling 1 s)", |b| {
        b.iter(|| fold_and_close(&Bars, WindowSpec::tumbling(1_000), &trades))
    });
    group.bench_function("stats_10s (hopping 10 s / 1 s)", |b| {
        b.iter(|| {
            fold_and_close(
                &Stats,
                WindowSpec {
                    length_ms: 10_000,
                    slide_ms: 1_000,
                },
                &trades,
            )
        })
    });
    group.bench_function(
        "stats 60 s / 1 s (cost per record independent of length)",
        |b| {
            b.iter(|| {
                fold_and_close(
                    &Stats,
                    WindowSpec {
                        length_ms: 60_000,
                        slide_ms: 1_000,
                    },
                    &trades,
                )
            })
        },
    );
    group.finish();
}

fn whole_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(200_000));
    group.sample_size(10);
    group.bench_function("M1+M2, market generator, 1 worker, 200k trades", |b| {
        b.iter_batched(
            || {
                let mut m = MarketConfig::default();
                m.arrivals.rate = 100_000.0;
                m.arrivals.count = Some(200_000);
                let mut p = Pipeline::default();
                p.sources.trades = Some(TradeSource::Market(m));
                p.engine.status = false;
                // M1 and M2 only: the other queries are on by default.
                p.queries.disable("vol_60s");
                p.queries.disable("corr_60s");
                p.queries.disable("ewma");
                p
            },
            |pipeline| engine::run(Job::new(pipeline)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// One 60 s window of C1: `symbols` x 60 returns, every pair correlated on one worker.
fn correlation(c: &mut Criterion) {
    use eddy::queries::corr_60s::correlate_window;
    use std::collections::BTreeMap;
    let mut group = c.benchmark_group("corr_60s window");
    group.sample_size(10);
    for symbols in [100u64, 500] {
        let returns: BTreeMap<Symbol, Vec<Option<f64>>> = (0..symbols)
            .map(|s| {
                let symbol = Symbol::parse(format!("S{s:04}").as_bytes()).unwrap();
                let series = (0..60u64)
                    .map(|k| Some(((s * 31 + k * 17) % 101) as f64 * 1e-4 - 0.005))
                    .collect();
                (symbol, series)
            })
            .collect();
        let pairs = symbols * (symbols - 1) / 2;
        group.throughput(Throughput::Elements(pairs));
        group.bench_function(format!("{symbols} symbols ({pairs} pairs)"), |b| {
            b.iter(|| {
                let mut rows = Vec::new();
                correlate_window(0, &returns, 0, 1, &mut rows);
                rows.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, operators, whole_run, correlation);
criterion_main!(benches);
