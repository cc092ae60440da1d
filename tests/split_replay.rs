//! Split replay: each worker reads its own blocks of a file (`split.rs`).
//! Files whose rows straddle block boundaries in every way — CRLF line ends,
//! a last line without a newline, malformed rows with non-ASCII bytes, late
//! rows, blank lines — give the same result files, late.csv and
//! malformed.csv for 1, 2, 3 and 5 workers and for 2 processes; late.csv
//! holds exactly the rows a serial scan (written here) finds late.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::{eddy, generate, stderr, temp_dir};
use faults::assert_same_results;
use std::collections::BTreeSet;
use std::path::Path;

const MAX_DELAY_MS: u64 = 200;

/// Rewrites a generated file: CRLF line ends, every 37th data line replaced
/// by a malformed one with non-ASCII bytes, every 53rd by a late copy (its
/// ts 5 s back), every 211th followed by a blank line, no final newline.
fn mangle(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            lines.push(line.to_string());
            continue;
        }
        let mut fields: Vec<String> = line.split(',').map(String::from).collect();
        if i % 37 == 0 {
            lines.push(format!("{}é,{}ü,∞,x", fields[0], fields[1]));
            continue;
        }
        if i % 53 == 0 {
            let ts: u64 = fields[0].parse().unwrap();
            fields[0] = (ts - 5_000).to_string();
        }
        lines.push(fields.join(","));
        if i % 211 == 0 {
            lines.push(String::new());
        }
    }
    std::fs::write(path, lines.join("\r\n")).unwrap();
}

/// The data-row indices of the rows a serial read finds late: watermark =
/// greatest ts of the rows before − max delay (rows whose ts does not parse
/// move nothing; blank lines are not rows).
fn serial_late(path: &Path) -> BTreeSet<(u64, u64)> {
    let text = std::fs::read(path).unwrap();
    let mut late = BTreeSet::new();
    let (mut max, mut row) = (None::<u64>, 0u64);
    for line in text.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let first = line.split(|b| *b == b',').next().unwrap();
        let ts = std::str::from_utf8(first)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let fields = line.split(|b| *b == b',').count();
        if let Some(ts) = ts {
            let watermark = max.map_or(0, |m: u64| m.saturating_sub(MAX_DELAY_MS));
            // A malformed row (wrong field count) is not late: it is malformed.
            if ts < watermark
                && fields == 4
                && std::str::from_utf8(line).is_ok_and(|l| l.is_ascii())
            {
                late.insert((row, ts));
            }
            max = max.max(Some(ts));
        }
        row += 1;
    }
    late
}

/// (seq, ts) of late.csv's rows of `stream`.
fn late_rows(out: &Path, stream: &str) -> BTreeSet<(u64, u64)> {
    let text = std::fs::read_to_string(out.join("late.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| l.starts_with(&format!("{stream},")))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn split_replay_equals_serial_for_any_layout() {
    let dir = temp_dir();
    let trades = dir.path().join("trades.csv");
    let interactions = dir.path().join("interactions.csv");
    generate(
        "trades",
        &trades,
        40_000,
        &["--symbols", "9", "--disorder-ms", "100"],
    );
    generate(
        "interactions",
        &interactions,
        30_000,
        &["--items", "50", "--disorder-ms", "100"],
    );
    mangle(&trades);
    mangle(&interactions);
    let (t, i) = (trades.to_str().unwrap(), interactions.to_str().unwrap());
    let delay = MAX_DELAY_MS.to_string();
    let run_with = |out: &Path, workers: &str, extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--trades",
            t,
            "--interactions",
            i,
            "--out",
            out.to_str().unwrap(),
            "--workers",
            workers,
            "--max-delay-ms",
            &delay,
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let o = eddy(&args);
        assert!(o.status.success(), "{workers} worker(s): {}", stderr(&o));
    };
    let run = |out: &Path, workers: &str| run_with(out, workers, &[]);
    let serial = dir.path().join("w1");
    run(&serial, "1");
    // The serial run is the serial definition: late.csv against the scan above.
    for (stream, path) in [("trades", &trades), ("interactions", &interactions)] {
        let expected = serial_late(path);
        assert!(
            expected.len() > 100,
            "{stream}: {} late rows",
            expected.len()
        );
        assert_eq!(late_rows(&serial, stream), expected, "{stream}: late rows");
    }
    let malformed = std::fs::read_to_string(serial.join("malformed.csv")).unwrap();
    assert!(
        malformed.lines().count() > 1_000,
        "malformed rows are reported"
    );
    for workers in ["2", "3", "5"] {
        let out = dir.path().join(format!("w{workers}"));
        run(&out, workers);
        assert_same_results(&serial, &out, &format!("{workers} workers"));
    }
    // Timestamps at ticks (as replays ran before the coarse as-fast ones):
    // the same answers.
    let ticks = dir.path().join("w2-ticks");
    run_with(&ticks, "2", &["--as-fast-timestamp-ms", "0"]);
    assert_same_results(&serial, &ticks, "2 workers, timestamps at ticks");
    let cluster = dir.path().join("p2");
    let o = eddy(&[
        "cluster",
        "--processes",
        "2",
        "--workers",
        "1",
        "--",
        "replay",
        "--trades",
        t,
        "--interactions",
        i,
        "--out",
        cluster.to_str().unwrap(),
        "--max-delay-ms",
        &delay,
        "--quiet",
    ]);
    assert!(o.status.success(), "2 processes: {}", stderr(&o));
    assert_same_results(&serial, &cluster, "2 processes");
}
