//! Backpressure: when the generators offer far more than the engine can
//! process, memory stays bounded and the overload is reported as generator
//! lag, with every generated record still processed (nothing dropped).
//!
//! The offered rate (10 M events/s, every query) is several times what a
//! 2-core machine processes, so the outcome does not depend on the machine's
//! speed. Without the in-flight record bound, the 2 s event-time bound alone
//! let 370 MiB pile up in 5 s on a 2-core machine; with it, 87 MiB. What an
//! event-time engine must buffer regardless, offered rate x max_delay, is kept
//! small here (20 ms).

mod common;

use common::*;

const PIPELINE: &str = r#"
name = "overload"
[engine]
workers = 2
timing = "real_time"
duration_s = 4.0
max_delay_ms = 20
max_inflight_records = 200000

[sources.trades]
kind = "market"
symbols = 50
rate = 8000000.0
seed = 1
disorder_ms = 10

[sources.interactions]
kind = "generator"
users = 1000
items = 200
rate = 2000000.0
seed = 2
disorder_ms = 10
"#;

/// Stated bound on peak resident memory under overload.
const RSS_BOUND_MIB: f64 = 200.0;

#[test]
fn overload_keeps_memory_bounded_and_reports_lag() {
    let dir = temp_dir();
    let pipeline = dir.path().join("overload.toml");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    let out = dir.path().join("out");
    let o = eddy(&[
        "run",
        pipeline.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&out);
    let rss_mib = m["peak_rss_bytes"].as_f64().unwrap() / (1024.0 * 1024.0);
    assert!(
        rss_mib < RSS_BOUND_MIB,
        "peak RSS {rss_mib:.0} MiB over {RSS_BOUND_MIB} MiB"
    );
    // The generators fell behind their schedule, and said so.
    let lag_max = m["generator_lag_ms"]["max"].as_f64().unwrap();
    assert!(lag_max > 1000.0, "generator lag max {lag_max} ms");
    // Far fewer records than offered, but every one generated was processed.
    let r = &m["records"];
    let generated = r["generated"].as_u64().unwrap();
    assert!(generated > 0 && generated < 10_000_000 * 4);
    assert_eq!(r["processed"].as_u64().unwrap(), generated);
    assert_eq!(r["unaccounted"].as_u64().unwrap(), 0);
    assert_eq!(r["late"].as_u64().unwrap(), 0);
}

/// The newest window start in result file `name` (its second column).
fn newest_window_ms(out: &std::path::Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(out.join(name)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap_or_else(|| panic!("{name} has no rows"))
}

/// Under overload each generator falls behind at its own pace: the
/// interactions (fewer records per second of event time) ran ahead of the
/// trades by 1 150 s of event time in 8 s, and their operators held every
/// pane of that future until the trades' time let it go: memory grew
/// without bound. The feeds of a worker now keep within the in-flight span
/// (2 s) of each other, so both streams end near the same event time.
#[test]
fn overloaded_streams_stay_aligned_in_event_time() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let o = eddy(&[
        "run",
        "--speed",
        "1300",
        "--duration",
        "8",
        "--quiet",
        "--no-dashboard",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lag_max = metrics(&out)["generator_lag_ms"]["max"].as_f64().unwrap();
    assert!(
        lag_max > 1000.0,
        "not overloaded: generator lag max {lag_max} ms"
    );
    let trades = newest_window_ms(&out, "bars_1s.csv");
    let interactions = newest_window_ms(&out, "item_counts_60s.csv");
    // 1 s bars against 60 s windows: the starts differ by at most a window
    // plus the alignment span.
    assert!(
        trades.abs_diff(interactions) <= 62_000,
        "trades end at {trades} ms, interactions at {interactions} ms"
    );
}
