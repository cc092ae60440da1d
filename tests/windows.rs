//! M1 and M2 against the brute-force reference: generated data with disorder,
//! 1, 2 and 4 workers, shuffles within the disorder bound, and late records.

// Configs are set field by field: nested defaults make literals longer, not clearer.
#![allow(clippy::field_reassign_with_default)]

mod common;

use common::*;
use eddy::engine::{self, Job};
use eddy::metrics::Summary;
use eddy::pipeline::{Pipeline, TradeSource};
use eddy::sources::market::MarketConfig;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// A generated trades file: 20 s of 8 symbols at 1000 trades/s with 200 ms disorder.
fn generated_trades(dir: &Path, seed: u64, disorder_ms: u64) -> std::path::PathBuf {
    let mut c = MarketConfig::default();
    c.symbols = 8;
    c.arrivals.rate = 1_000.0;
    c.arrivals.count = Some(20_000);
    c.arrivals.seed = seed;
    c.arrivals.disorder_ms = disorder_ms;
    c.arrivals.tie_prob = 0.05;
    let path = dir.join(format!("trades-{seed}.csv"));
    eddy::generate::write_trades(&c, &path, None).unwrap();
    path
}

fn replay(trades: &Path, out: &Path, workers: usize, max_delay_ms: u64) -> Summary {
    let mut p = replay_pipeline(Some(trades), None, out, workers);
    p.engine.max_delay_ms = max_delay_ms;
    // A small batch and a coarse tick exercise many capability moves.
    p.engine.batch_size = Some(97);
    p.engine.tick_ms = 7;
    engine::run(Job::new(p)).unwrap()
}

fn check_against_reference(rows: &[Row], out: &Path, what: &str) {
    let bars = read_table(&out.join("bars_1s.csv"), &["symbol", "window_start_ms"]);
    assert_tables_match(
        &reference_bars(rows, 1_000),
        &bars,
        &format!("{what} bars_1s"),
    );
    let stats = read_table(&out.join("stats_10s.csv"), &["symbol", "window_start_ms"]);
    assert_tables_match(
        &reference_stats(rows, 10_000, 1_000),
        &stats,
        &format!("{what} stats_10s"),
    );
}

#[test]
fn m1_m2_match_the_reference_for_1_2_and_4_workers() {
    let dir = temp_dir();
    let trades = generated_trades(dir.path(), 11, 200);
    let rows = read_trades(&trades);
    // The data really is disordered and has exact ties, or this test proves little.
    let mut max_ts = 0;
    let (mut behind, mut ties) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        behind += (r.ts < max_ts) as u32;
        ties += (i > 0
            && rows[..i]
                .iter()
                .rev()
                .take(50)
                .any(|p| p.ts == r.ts && p.symbol == r.symbol)) as u32;
        max_ts = max_ts.max(r.ts);
    }
    assert!(
        behind > 1_000 && ties > 100,
        "{behind} out-of-order rows, {ties} ties"
    );
    for workers in [1, 2, 4] {
        let out = dir.path().join(format!("out-{workers}"));
        let summary = replay(&trades, &out, workers, 200);
        assert_eq!(summary.records.late, 0);
        assert_eq!(summary.records.processed, rows.len() as u64);
        assert_eq!(summary.records.unaccounted, 0);
        check_against_reference(&rows, &out, &format!("{workers} workers"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
    /// Any arrival order within the disorder bound gives the reference's answer;
    /// the order-free columns are the same for every such order.
    #[test]
    fn shuffles_within_the_disorder_bound_give_the_reference(seed in 0u64..1_000, workers in 1usize..4) {
        let dir = temp_dir();
        let sorted = {
            let mut rows = read_trades(&generated_trades(dir.path(), 5, 0));
            rows.sort_by_key(|r| (r.ts, r.seq));
            rows
        };
        // Arrival by ts + jitter in [0, 200]: no row arrives more than 200 ms behind any earlier one.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut keyed: Vec<(u64, Row)> = sorted.iter().map(|r| (r.ts + rng.gen_range(0..=200), r.clone())).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Row> = keyed.into_iter().enumerate().map(|(i, (_, r))| Row { seq: i as u64, ..r }).collect();
        let file = dir.path().join("shuffled.csv");
        write_trades(&file, &shuffled);
        let out = dir.path().join("out");
        let summary = replay(&file, &out, workers, 200);
        prop_assert_eq!(summary.records.late, 0);
        check_against_reference(&shuffled, &out, "shuffled");
        // Orders differ only in tie-breaking: high, low, volume, trades, vwap never change.
        let bars = read_table(&out.join("bars_1s.csv"), &["symbol", "window_start_ms"]);
        let sorted_ref = reference_bars(&sorted, 1_000);
        for (key, want) in &sorted_ref {
            for column in ["high", "low", "volume", "trades"] {
                prop_assert_eq!(&bars[key][column], &want[column]);
            }
        }
    }
}

#[test]
fn late_records_are_counted_exactly_and_excluded() {
    let dir = temp_dir();
    let trades = generated_trades(dir.path(), 23, 400);
    let rows = read_trades(&trades);
    let max_delay = 150;
    // Truly late: behind the maximum of everything before it (in file order) by more than the bound.
    let mut max_ts = 0;
    let mut late_seqs = Vec::new();
    let mut on_time = Vec::new();
    for r in &rows {
        max_ts = max_ts.max(r.ts);
        if r.ts + max_delay < max_ts {
            late_seqs.push(r.seq);
        } else {
            on_time.push(r.clone());
        }
    }
    assert!(
        late_seqs.len() > 100,
        "the input must have late records: {}",
        late_seqs.len()
    );
    for workers in [1, 3] {
        let out = dir.path().join(format!("late-{workers}"));
        let summary = replay(&trades, &out, workers, max_delay);
        assert_eq!(
            summary.records.late,
            late_seqs.len() as u64,
            "{workers} workers"
        );
        assert_eq!(summary.records.generated, rows.len() as u64);
        assert_eq!(
            summary.records.processed + summary.records.late,
            rows.len() as u64
        );
        let late_file = read_table(&out.join("late.csv"), &["seq"]);
        let mut got: Vec<u64> = late_file.keys().map(|k| k[0].parse().unwrap()).collect();
        got.sort();
        assert_eq!(got, late_seqs);
        check_against_reference(
            &on_time,
            &out,
            &format!("on-time records, {workers} workers"),
        );
    }
}

#[test]
fn generated_runs_give_identical_results_for_every_worker_count() {
    let dir = temp_dir();
    let mut outputs = Vec::new();
    for workers in [1, 2, 4] {
        let mut p = Pipeline::default();
        let mut m = MarketConfig::default();
        m.symbols = 9;
        m.arrivals.rate = 3_000.0;
        m.arrivals.count = Some(40_000);
        m.arrivals.disorder_ms = 150;
        p.sources.trades = Some(TradeSource::Market(m));
        p.engine.workers = workers;
        p.engine.status = false;
        p.engine.max_delay_ms = 150;
        let out = dir.path().join(format!("gen-{workers}"));
        p.output.dir = Some(out.clone());
        let summary = engine::run(Job::new(p)).unwrap();
        assert_eq!(
            (summary.records.generated, summary.records.late),
            (40_000, 0)
        );
        let bars = read_table(&out.join("bars_1s.csv"), &["symbol", "window_start_ms"]);
        let stats = read_table(&out.join("stats_10s.csv"), &["symbol", "window_start_ms"]);
        outputs.push((bars, stats));
    }
    assert!(outputs[0].0.len() > 9 * 10);
    for (bars, stats) in &outputs[1..] {
        assert_eq!(bars, &outputs[0].0);
        assert_eq!(stats, &outputs[0].1);
    }
}
