//! Two minutes of the soak benchmark (`benches/soak.py`, the hour-long run
//! is `benches/soak.sh`): the demo and the same queries over TCP with rolling
//! results (1 MB or 10 s parts), 20 s retention, checkpoints every 5 s and
//! the input log in 1 MiB segments. Nothing about time is asserted, only
//! sizes: a result folder, the input log and the checkpoints stop growing
//! once retention and trimming set in, although rows and lines keep coming.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

/// One sample of one engine: column → value (empty columns left out).
type Sample = BTreeMap<String, f64>;

fn samples(csv: &std::path::Path) -> BTreeMap<String, Vec<Sample>> {
    let mut by_engine: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let header = reader.headers().unwrap().clone();
    for record in reader.records() {
        let record = record.unwrap();
        let engine = record[1].to_string();
        let sample = header
            .iter()
            .zip(record.iter())
            .filter_map(|(k, v)| Some((k.to_string(), v.parse::<f64>().ok()?)))
            .collect();
        by_engine.entry(engine).or_default().push(sample);
    }
    by_engine
}

/// The largest value of `column` at or after `from_s`.
fn peak_after(samples: &[Sample], column: &str, from_s: f64) -> f64 {
    samples
        .iter()
        .filter(|s| s["t_s"] >= from_s)
        .map(|s| s[column])
        .fold(0.0, f64::max)
}

/// The value of `column` at the first sample at or after `at_s`.
fn at(samples: &[Sample], column: &str, at_s: f64) -> f64 {
    samples.iter().find(|s| s["t_s"] >= at_s).unwrap()[column]
}

#[test]
fn two_minutes_of_soak_keep_results_input_log_and_checkpoints_bounded() {
    let dir = common::temp_dir();
    let csv = dir.path().join("soak.csv");
    let o = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/soak.py"))
        .args(["--eddy", env!("CARGO_BIN_EXE_eddy")])
        .args(["--duration", "120", "--every", "5", "--tcp-rate", "3000"])
        .args(["--roll-mb", "1", "--roll-s", "10", "--keep-s", "20"])
        .args(["--segment-mib", "1"])
        .arg("--work")
        .arg(dir.path().join("work"))
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let engines = samples(&csv);
    let (demo, tcp) = (&engines["demo"], &engines["tcp"]);
    assert!(demo.len() >= 20 && tcp.len() >= 20, "{engines:?}");
    for (name, s) in [("demo", demo), ("tcp", tcp)] {
        // Retention keeps finished parts 20 s (checked every 5 s); a part
        // holds 10 to 15 s of rows: the folder holds at most about 50 s of
        // rows. Nothing is removed before 30 s, which gives the rate; with
        // no retention the folder would hold 120 s of rows at the end.
        let per_s = at(s, "results_mb", 30.0) / at(s, "t_s", 30.0);
        let peak = peak_after(s, "results_mb", 60.0);
        assert!(
            peak <= 70.0 * per_s + 0.3,
            "{name}: the result folder reached {peak} MB at {per_s} MB/s"
        );
        let checkpoints = peak_after(s, "checkpoints_mb", 0.0);
        assert!(
            checkpoints < 10.0,
            "{name}: checkpoints reached {checkpoints} MB"
        );
    }
    // 3000 lines/s, about 170 kB/s, are logged: 20 MB over the run. Two
    // checkpoints are kept, 5 s apart, and the log is trimmed by whole 1 MiB
    // segments: it holds 2 × 5 s of lines and at most two segments more
    // (the one the older checkpoint falls in and the one being written).
    let log = peak_after(tcp, "input_log_mb", 30.0);
    let bound = 2.0 * 5.0 * 0.17 + 2.0 * 1.05;
    assert!(log < 1.3 * bound, "the input log reached {log} MB");
    let first = at(tcp, "input_log_mb", 0.0);
    assert!(first > 0.1, "the tcp engine logged nothing: {tcp:?}");
}
