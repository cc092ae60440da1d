//! The full query set against brute-force references: both streams in one
//! dataflow, 1, 2 and 4 workers, max-delay at and above the disorder, and the
//! edge cases the definitions imply.

// Configs are set field by field: nested defaults make literals longer, not clearer.
#![allow(clippy::field_reassign_with_default)]

mod common;

use common::*;
use eddy::engine::{self, Job};
use eddy::sources::interactions::InteractionConfig;
use eddy::sources::market::MarketConfig;
use std::collections::BTreeMap;
use std::path::Path;

fn replay(
    trades: &Path,
    interactions: &Path,
    out: &Path,
    workers: usize,
    max_delay_ms: u64,
    threshold: u64,
) {
    let mut p = replay_pipeline(Some(trades), Some(interactions), out, workers);
    p.engine.max_delay_ms = max_delay_ms;
    p.engine.batch_size = Some(101);
    p.queries.set("alerts", "threshold", threshold as i64);
    p.queries.set("alerts", "log", false);
    let summary = engine::run(Job::new(p)).unwrap();
    assert_eq!(summary.records.late, 0);
    assert_eq!(summary.records.unaccounted, 0);
}

type EwmaRows = BTreeMap<String, Vec<EwmaPoint>>;

fn read_ewma(path: &Path) -> EwmaRows {
    let mut out: EwmaRows = BTreeMap::new();
    let mut reader = csv::Reader::from_path(path).unwrap();
    for r in reader.records() {
        let r = r.unwrap();
        let vol = if r[4].is_empty() {
            None
        } else {
            Some(r[4].parse().unwrap())
        };
        out.entry(r[0].to_string()).or_default().push((
            r[1].parse().unwrap(),
            r[2].parse().unwrap(),
            r[3].parse().unwrap(),
            vol,
        ));
    }
    out
}

fn assert_ewma_match(expected: &EwmaRows, got: &EwmaRows) {
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (symbol, want) in expected {
        let mut want = want.clone();
        let mut have = got[symbol].clone();
        // Rows of one symbol with equal ts may come in either order.
        let order = |v: &mut Vec<EwmaPoint>| v.sort_by_key(|a| (a.0, a.2.to_bits()));
        order(&mut want);
        order(&mut have);
        assert_eq!(want.len(), have.len(), "{symbol}");
        for (w, h) in want.iter().zip(&have) {
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1e-12);
            assert!(
                w.0 == h.0 && w.1 == h.1 && close(w.2, h.2),
                "{symbol}: {w:?} vs {h:?}"
            );
            match (w.3, h.3) {
                (None, None) => {}
                (Some(a), Some(b)) => assert!(close(a, b), "{symbol}: {w:?} vs {h:?}"),
                _ => panic!("{symbol}: {w:?} vs {h:?}"),
            }
        }
    }
}

fn check_all(trades: &[Row], interactions: &[Ix], out: &Path, threshold: u64, what: &str) {
    let sym = ["symbol", "window_start_ms"];
    let read = |name: &str, keys: &[&str]| read_table(&out.join(format!("{name}.csv")), keys);
    assert_tables_match(
        &reference_bars(trades, 1_000),
        &read("bars_1s", &sym),
        &format!("{what} bars_1s"),
    );
    assert_tables_match(
        &reference_stats(trades, 10_000, 1_000),
        &read("stats_10s", &sym),
        &format!("{what} stats_10s"),
    );
    assert_tables_match(
        &reference_vol(trades, 60_000),
        &read("vol_60s", &sym),
        &format!("{what} vol_60s"),
    );
    let corr = read("corr_60s", &["symbol_a", "symbol_b", "window_start_ms"]);
    assert_tables_match(
        &reference_corr(trades, 60_000),
        &corr,
        &format!("{what} corr_60s"),
    );
    assert_ewma_match(
        &reference_ewma(trades, 20.0),
        &read_ewma(&out.join("ewma.csv")),
    );
    let (counts, activity, alerts, totals) =
        reference_interactions(interactions, 60_000, threshold);
    assert_tables_match(
        &counts,
        &read("item_counts_60s", &["item_id", "window_start_ms"]),
        &format!("{what} item_counts_60s"),
    );
    assert_tables_match(
        &activity,
        &read("activity_60s", &["window_start_ms"]),
        &format!("{what} activity_60s"),
    );
    assert_tables_match(
        &alerts,
        &read("alerts", &["item_id", "window_start_ms"]),
        &format!("{what} alerts"),
    );
    assert_tables_match(
        &totals,
        &read("item_totals", &["item_id"]),
        &format!("{what} item_totals"),
    );
}

#[test]
fn every_query_matches_the_reference_for_1_2_and_4_workers() {
    let dir = temp_dir();
    let trades_file = dir.path().join("trades.csv");
    let mut m = MarketConfig::default();
    m.symbols = 8;
    m.arrivals.rate = 300.0;
    m.arrivals.count = Some(40_000);
    m.arrivals.disorder_ms = 200;
    m.arrivals.tie_prob = 0.05;
    eddy::generate::write_trades(&m, &trades_file, None).unwrap();
    let ix_file = dir.path().join("interactions.csv");
    let mut ic = InteractionConfig::default();
    ic.users = 100;
    ic.items = 40;
    ic.arrivals.rate = 150.0;
    ic.arrivals.count = Some(30_000);
    ic.arrivals.disorder_ms = 200;
    eddy::generate::write_interactions(&ic, &ix_file, None).unwrap();
    let trades = read_trades(&trades_file);
    let interactions = read_interactions(&ix_file);
    let reference_corr_rows = reference_corr(&trades, 60_000).len();
    assert!(
        reference_corr_rows >= 28 * 2,
        "the data must give correlations: {reference_corr_rows}"
    );
    for (workers, max_delay) in [(1, 200), (2, 200), (4, 200), (2, 1_000)] {
        let out = dir.path().join(format!("out-{workers}-{max_delay}"));
        replay(&trades_file, &ix_file, &out, workers, max_delay, 300);
        check_all(
            &trades,
            &interactions,
            &out,
            300,
            &format!("{workers} workers, max delay {max_delay}"),
        );
    }
}

#[test]
fn edge_cases_of_the_definitions() {
    let dir = temp_dir();
    let base = 1_700_000_040_000u64; // a 60 s window boundary
    let mut trades = Vec::new();
    let mut push = |ts: u64, symbol: &str, price: f64| {
        // seq is set from the file order below.
        let seq = trades.len() as u64;
        trades.push(Row {
            ts,
            seq,
            symbol: symbol.into(),
            price,
            size: 1 + seq % 5,
        });
    };
    // ONE: a single trade in all.
    push(base + 5, "ONE", 10.0);
    // TIES: equal timestamps, arrival order decides open/close; windows of 1, 2 and 3 trades.
    push(base + 1_000, "TIES", 20.0);
    push(base + 1_000, "TIES", 21.0);
    push(base + 1_000, "TIES", 19.0);
    push(base + 2_500, "TIES", 20.5);
    push(base + 2_999, "TIES", 20.6);
    // EDGE: exactly on window boundaries, the last ms before them.
    push(base - 1, "EDGE", 30.0);
    push(base, "EDGE", 31.0);
    push(base + 999, "EDGE", 30.5);
    push(base + 1_000, "EDGE", 30.7);
    push(base + 59_999, "EDGE", 30.9);
    push(base + 60_000, "EDGE", 31.1);
    // FLAT: a constant price every second (constant returns: no correlation row);
    // UP and DN: moving prices over the same seconds.
    for k in 0..10u64 {
        push(base + k * 1_000 + 10, "FLAT", 50.0);
        push(base + k * 1_000 + 20, "UP", 40.0 + (k * k % 7) as f64 * 0.1);
        push(base + k * 1_000 + 30, "DN", 60.0 - (k * 3 % 5) as f64 * 0.2);
    }
    // In file order by time (stable: ties keep their order), so that nothing is late.
    trades.sort_by_key(|r| r.ts);
    for (i, r) in trades.iter_mut().enumerate() {
        r.seq = i as u64;
    }
    let trades_file = dir.path().join("trades.csv");
    write_trades(&trades_file, &trades);
    // Interactions: item 1 exactly at the threshold (no alert), item 2 one above, item 3 tied with item 2.
    let threshold = 5;
    let mut ixs = Vec::new();
    for (item, n) in [
        (1u64, threshold),
        (2, threshold + 1),
        (3, threshold + 1),
        (4, 1),
    ] {
        for i in 0..n {
            let kind = ["view", "click", "purchase"][(i % 3) as usize];
            let ts = base + if i == 0 { 0 } else { 59_999 - i };
            ixs.push(Ix {
                ts,
                user: i % 2,
                item,
                kind: kind.into(),
            });
        }
    }
    ixs.sort_by_key(|r| r.ts);
    let mut text = String::from("ts_ms,user_id,item_id,interaction\n");
    for r in &ixs {
        text.push_str(&format!("{},{},{},{}\n", r.ts, r.user, r.item, r.kind));
    }
    let ix_file = dir.path().join("interactions.csv");
    std::fs::write(&ix_file, text).unwrap();
    for workers in [1, 3] {
        let out = dir.path().join(format!("edge-{workers}"));
        replay(&trades_file, &ix_file, &out, workers, 200, threshold);
        check_all(
            &trades,
            &ixs,
            &out,
            threshold,
            &format!("edge cases, {workers} workers"),
        );
        let bars = read_table(&out.join("bars_1s.csv"), &["symbol", "window_start_ms"]);
        let ties = &bars[&vec!["TIES".to_string(), (base + 1_000).to_string()]];
        let price = |c: &str| ties[c].parse::<f64>().unwrap();
        assert_eq!(
            (price("open"), price("close")),
            (20.0, 19.0),
            "ties go to arrival order"
        );
        let stats = read_table(&out.join("stats_10s.csv"), &["symbol", "window_start_ms"]);
        assert_eq!(
            stats[&vec!["ONE".to_string(), (base - 9_000).to_string()]]["std"],
            "",
            "one trade: empty std"
        );
        let corr = read_table(
            &out.join("corr_60s.csv"),
            &["symbol_a", "symbol_b", "window_start_ms"],
        );
        assert!(
            corr.keys().all(|k| k[0] != "FLAT" && k[1] != "FLAT"),
            "a constant series never correlates"
        );
        assert!(corr.contains_key(&vec!["DN".to_string(), "UP".to_string(), base.to_string()]));
        let alerts = read_table(&out.join("alerts.csv"), &["item_id", "window_start_ms"]);
        let items: Vec<&str> = alerts.keys().map(|k| k[0].as_str()).collect();
        assert_eq!(
            items,
            ["2", "3"],
            "a total equal to the threshold does not alert"
        );
        let activity = read_table(&out.join("activity_60s.csv"), &["window_start_ms"]);
        let a = &activity[&vec![base.to_string()]];
        assert_eq!(
            (a["max_item"].as_str(), a["min_item"].as_str()),
            ("2", "4"),
            "ties go to the smallest item"
        );
    }
}
