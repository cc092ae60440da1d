//! Rolling result files (`--roll-mb`, `--keep-parts`, `files = false`):
//! - a checkpointed replay whose rows roll into parts, killed (SIGKILL, by
//!   fault injection) inside a checkpoint, after one and mid-write, then
//!   resumed, leaves parts whose rows equal an uninterrupted single-file
//!   run's, every part finished and under its own header;
//! - retention keeps the newest parts only, while an SQLite sink still gets
//!   every row of every query, and a query with `files = false` leaves no
//!   file behind but its rows in the database;
//! - `eddy merge` and `eddy plot` read rolled folders.

mod common;
#[path = "common/databases.rs"]
mod databases;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/tables.rs"]
mod tables;

use common::*;
use databases::*;
use faults::*;
use std::path::{Path, PathBuf};
use tables::*;

/// The parts of a rolled query folder, by name.
fn parts(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The rows of a rolled folder as one file: every part finished and
/// opening with `header`, their rows in part order.
fn joined(folder: &Path, header: &str) -> String {
    let mut text = format!("{header}\n");
    for name in parts(folder) {
        assert!(
            name.starts_with("part-") && name.ends_with(".csv"),
            "{}: {name} is not a finished part",
            folder.display()
        );
        let part = std::fs::read_to_string(folder.join(&name)).unwrap();
        let rows = part
            .strip_prefix(&format!("{header}\n"))
            .unwrap_or_else(|| panic!("{name} does not open with the header"));
        text.push_str(rows);
    }
    text
}

/// Writes, beside each single-file reference, what the rolled folders of
/// `rolled` hold, so the shared comparison can read both as files.
fn as_single_files(reference: &Path, rolled: &Path, into: &Path) -> usize {
    std::fs::create_dir_all(into).unwrap();
    std::fs::copy(rolled.join("metrics.json"), into.join("metrics.json")).unwrap();
    let mut parts_seen = 0;
    for entry in std::fs::read_dir(reference).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".csv") else {
            continue;
        };
        let single = rolled.join(&name);
        let text = if single.is_file() {
            std::fs::read_to_string(single).unwrap()
        } else {
            let folder = rolled.join(id);
            parts_seen += parts(&folder).len();
            let header = std::fs::read_to_string(reference.join(&name)).unwrap();
            joined(&folder, header.lines().next().unwrap())
        };
        std::fs::write(into.join(&name), text).unwrap();
    }
    parts_seen
}

#[test]
fn rolled_parts_after_a_kill_and_resume_equal_an_uninterrupted_run() {
    let data = data();
    let reference = data.reference();
    let roll = ["--roll-mb", "0.005"];
    for (point, workers) in [
        ("before-manifest@3", 2),
        ("after-manifest@4", 1),
        ("mid-write@5", 2),
    ] {
        let what = format!("killed at {point} on {workers} worker(s)");
        let out = data.root.join(format!("out-{point}"));
        let ck = data.root.join(format!("ck-{point}"));
        let first = data
            .checkpointed(&out, &ck, workers, &roll)
            .env("EDDY_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(
            !first.status.success() && stderr(&first).contains("fault injection"),
            "{what}: not killed: {}",
            stderr(&first)
        );
        let in_progress = parts(&out.join("bars_1s"));
        assert!(
            in_progress.iter().any(|p| p.ends_with(".inprogress")),
            "{what}: a killed run leaves its current part in progress: {in_progress:?}"
        );
        ok(data
            .checkpointed(&out, &ck, workers, &[&roll[..], &["--resume"]].concat())
            .env("EDDY_ATTEMPT", "2")
            .output()
            .unwrap());
        let single = data.root.join(format!("single-{point}"));
        let seen = as_single_files(&reference, &out, &single);
        assert!(
            seen > 40,
            "{what}: only {seen} parts: the rows did not roll"
        );
        assert_same_results(&reference, &single, &what);
    }
}

#[test]
fn rolled_parts_rescaled_through_layouts_equal_an_uninterrupted_run() {
    let data = data();
    let reference = data.reference();
    let (out, ck) = (data.root.join("out"), data.root.join("ck"));
    let roll = ["--roll-mb", "0.005"];
    let resume = [&roll[..], &["--resume"]].concat();
    let killed = |mut c: std::process::Command, nth: u64, what: &str| {
        let o = c
            .env("EDDY_CRASH_AT", format!("after-manifest@{nth}/p0"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{what}: not killed: {}", stderr(&o));
    };
    killed(data.checkpointed(&out, &ck, 2, &roll), 4, "1 × 2");
    killed(data.checkpointed_cluster(&out, &ck, 2, &resume), 6, "2 × 1");
    let last = data.checkpointed(&out, &ck, 1, &resume).output().unwrap();
    assert!(
        stderr(&last).contains("rescaling: the checkpoint of epoch"),
        "{}",
        stderr(&last)
    );
    ok(last);
    let single = data.root.join("single");
    assert!(as_single_files(&reference, &out, &single) > 40);
    assert_same_results(&reference, &single, "rolled 1×2 → 2×1 → 1×1");
}

#[test]
fn retention_keeps_the_newest_parts_while_the_database_gets_every_row() {
    let data = data();
    let reference = data.reference();
    let (out, ck) = (data.root.join("out"), data.root.join("ck"));
    let db = data.root.join("results.db");
    // ewma's rows reach the database only.
    let pipeline = data.root.join("kept.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[sources.trades]\nkind = \"csv\"\npath = {:?}\n\
             [sources.interactions]\nkind = \"csv\"\npath = {:?}\n\
             [queries.ewma]\nfiles = false\n\
             [output]\nroll_mb = 0.005\nkeep_parts = 2\n\
             [sinks.sqlite]\npath = {:?}\n",
            data.trades, data.interactions, db
        ),
    )
    .unwrap();
    let o = eddy(&[
        "run",
        pipeline.to_str().unwrap(),
        "--quiet",
        "--no-dashboard",
        "--timing",
        "as-fast",
        "-w",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--checkpoint-dir",
        ck.to_str().unwrap(),
        "--checkpoint-interval-ms",
        "500",
    ]);
    ok(o);
    for table in TABLES.iter().filter(|t| **t != "ewma") {
        let kept = parts(&out.join(table));
        assert!(
            !kept.is_empty() && kept.len() <= 3,
            "{table}: the two newest finished parts and the last one: {kept:?}"
        );
        assert!(kept.iter().all(|p| p.ends_with(".csv")), "{kept:?}");
    }
    let bars = parts(&out.join("bars_1s"));
    assert!(
        (2..=3).contains(&bars.len()),
        "bars_1s (67 kB in 5 kB parts) keeps its 2 newest parts and its last: {bars:?}"
    );
    assert!(
        !out.join("ewma").exists() && !out.join("ewma.csv").exists(),
        "files = false leaves no ewma file"
    );
    let expected = csv_tables(&reference);
    assert_same_tables(&expected, &sqlite_tables(&db, &expected), "sqlite");
}

#[test]
fn merge_and_plot_read_rolled_folders() {
    let data = data();
    let reference = data.reference();
    let out: PathBuf = data.root.join("rolled");
    ok(data
        .replay(&out, 2, &["--roll-mb", "0.02"])
        .output()
        .unwrap());
    // Without checkpoints a part rolls after a whole block (128 KiB).
    assert!(parts(&out.join("ewma")).len() > 20, "ewma (6 MB) rolled");
    let merged = data.root.join("merged");
    ok(eddy(&[
        "merge",
        out.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]));
    assert_same_results(&reference, &merged, "merged from rolled parts");
    let plots = data.root.join("plots");
    ok(eddy(&[
        "plot",
        "--in",
        out.to_str().unwrap(),
        "--out",
        plots.to_str().unwrap(),
    ]));
    assert!(plots.join("bars.png").is_file() || plots.join("market.png").is_file());
}
