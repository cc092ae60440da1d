//! Shared by the fault and sink tests (checkpoint.rs, tcp_ingest.rs,
//! database.rs, mongodb.rs): a generated
//! data set with disorder, malformed and late rows, and an exact comparison of
//! two result folders, and the checks of a database sink that failed or
//! retried.
#![allow(dead_code)]

use super::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Generated trades and interactions with disorder, plus malformed and late
/// rows, so that every result file (late.csv and malformed.csv too) has rows.
pub struct Data {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub trades: PathBuf,
    pub interactions: PathBuf,
}

pub fn ok(o: Output) {
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Inserts a malformed row every `every` lines and a row an hour late every `every + 7`.
pub fn spoil(path: &Path, every: usize, malformed: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if n > 0 && n % every == 0 {
            out.push_str(malformed);
            out.push('\n');
        }
        if n > 0 && n % (every + 7) == 0 {
            let (ts, rest) = line.split_once(',').unwrap();
            let late = ts.parse::<u64>().unwrap() - 3_600_000;
            out.push_str(&format!("{late},{rest}\n"));
        }
    }
    std::fs::write(path, out).unwrap();
}

/// Copies of two existing files (the shared sample, say).
pub fn data_from(trades: &Path, interactions: &Path) -> Data {
    let dir = temp_dir();
    let root = dir.path().to_path_buf();
    let data = Data {
        trades: root.join("trades.csv"),
        interactions: root.join("interactions.csv"),
        root,
        _dir: dir,
    };
    std::fs::copy(trades, &data.trades).unwrap();
    std::fs::copy(interactions, &data.interactions).unwrap();
    data
}

pub fn data() -> Data {
    data_of(80_000, 60_000)
}

/// `trades` over 40 s of event time (anomalies from 30 s on) and
/// `interactions` over 20 s, each spoilt twenty times.
pub fn data_of(trades_n: usize, interactions_n: usize) -> Data {
    let dir = temp_dir();
    let root = dir.path().to_path_buf();
    let trades = root.join("trades.csv");
    let interactions = root.join("interactions.csv");
    ok(eddy(&[
        "generate",
        "trades",
        "-o",
        trades.to_str().unwrap(),
        "-n",
        &trades_n.to_string(),
        "--symbols",
        "20",
        // 40 s of event time with labelled anomalies (from 30 s on), so that
        // anomalies.csv has rows.
        "--rate",
        &(trades_n / 40).to_string(),
        "--anomalies",
        "--disorder-ms",
        "150",
    ]));
    ok(eddy(&[
        "generate",
        "interactions",
        "-o",
        interactions.to_str().unwrap(),
        "-n",
        &interactions_n.to_string(),
        "--users",
        "400",
        "--items",
        "60",
        "--rate",
        &(interactions_n / 20).to_string(),
        "--disorder-ms",
        "150",
    ]));
    spoil(&trades, trades_n / 20, "1700000000000,SYM001,not-a-price,5");
    spoil(
        &interactions,
        interactions_n / 12,
        "1700000000000,12,7,hover",
    );
    Data {
        _dir: dir,
        root,
        trades,
        interactions,
    }
}

/// A run with a database sink that lost its database and got it back:
/// it succeeded, said it was retrying, and counted the retries of `kind`.
pub fn assert_sink_retried(o: &Output, out: &Path, kind: &str) {
    assert!(o.status.success(), "{}", stderr(o));
    assert!(stderr(o).contains("retrying"), "{}", stderr(o));
    let m = metrics(out);
    assert!(
        m["sinks"][kind]["retries"].as_u64().unwrap() >= 1,
        "{}",
        m["sinks"]
    );
}

impl Data {
    /// Runs the replay on 1 worker with `flags`; it must fail within 30 s,
    /// its last line starting with `starts` and containing `expected`.
    pub fn assert_fails_with(&self, flags: &[&str], starts: &str, expected: &str) {
        let started = std::time::Instant::now();
        let o = self
            .replay(&self.root.join("bad-out"), 1, flags)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{expected}: the run succeeded");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{expected}: {:?}",
            started.elapsed()
        );
        let text = stderr(&o);
        let last = text.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(starts) && last.contains(expected),
            "{expected}: {text}"
        );
    }

    /// `eddy replay` of both files into `out` on `workers` workers, with `extra` flags.
    pub fn replay(&self, out: &Path, workers: usize, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
        c.args(["replay", "--quiet", "--trades"])
            .arg(&self.trades)
            .arg("--interactions")
            .arg(&self.interactions)
            .arg("--out")
            .arg(out)
            .args(["--workers", &workers.to_string()])
            .args(extra)
            .env("RUST_LOG", "info");
        c
    }

    /// The uninterrupted run without checkpoints every other is compared with.
    pub fn reference(&self) -> PathBuf {
        let out = self.root.join("reference");
        ok(self.replay(&out, 2, &[]).output().unwrap());
        out
    }

    /// `eddy cluster -n PROCESSES -w 1` running the checkpointed replay.
    pub fn checkpointed_cluster(
        &self,
        out: &Path,
        ck: &Path,
        processes: usize,
        extra: &[&str],
    ) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
        c.args(["cluster", "-n", &processes.to_string(), "-w", "1", "--"])
            .args(["replay", "--quiet", "--trades"])
            .arg(&self.trades)
            .arg("--interactions")
            .arg(&self.interactions)
            .arg("--out")
            .arg(out)
            .arg("--checkpoint-dir")
            .arg(ck)
            .args(["--checkpoint-interval-ms", "500"])
            .args(extra)
            .env("RUST_LOG", "info");
        c
    }

    pub fn checkpointed(&self, out: &Path, ck: &Path, workers: usize, extra: &[&str]) -> Command {
        let mut flags = vec![
            "--checkpoint-dir",
            ck.to_str().unwrap(),
            "--checkpoint-interval-ms",
            "500",
        ];
        flags.extend_from_slice(extra);
        self.replay(out, workers, &flags)
    }
}

fn csv_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    names
}

/// Every result file of `got` equals `expected`'s, as sorted lines, and the
/// run accounted for every record.
pub fn assert_same_results(expected: &Path, got: &Path, what: &str) {
    let names = csv_names(expected);
    assert_eq!(names.len(), 14, "{what}: result files {names:?}");
    assert_same_files(expected, got, what, &[]);
}

/// Every result file of `got` equals `expected`'s, as sorted lines; each
/// has rows but those named in `may_be_empty` (late.csv of data without
/// late records, say).
pub fn assert_same_files(expected: &Path, got: &Path, what: &str, may_be_empty: &[&str]) {
    let names = csv_names(expected);
    assert_eq!(names, csv_names(got), "{what}: result files");
    for name in names {
        let sorted = |dir: &Path| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        let (e, g) = (sorted(expected), sorted(got));
        assert!(
            e.len() > 1 || may_be_empty.contains(&name.as_str()),
            "{what}: {name} has no rows"
        );
        if e != g {
            let missing = e.iter().filter(|l| !g.contains(l)).count();
            let extra = g.iter().filter(|l| !e.contains(l)).count();
            panic!(
                "{what}: {name} differs: {} rows expected, {} got, {missing} missing, {extra} not expected",
                e.len(),
                g.len()
            );
        }
    }
    let (m, n) = (metrics(expected), metrics(got));
    for counter in ["ingested", "processed", "late", "malformed", "rows_out"] {
        assert_eq!(
            m["records"][counter], n["records"][counter],
            "{what}: records.{counter}"
        );
    }
    assert_eq!(n["records"]["unaccounted"], 0, "{what}");
}
