//! Rescaling from a checkpoint: a replay killed (SIGKILL, at an injected
//! point after a checkpoint) and resumed on another layout, again and again,
//! ends with results equal to an uninterrupted run's (every query's file,
//! malformed and late rows, the counts): 1 process × 2 workers → 1 × 3 →
//! `eddy cluster -n 2 -w 1` → 1 × 1, and the reverse ways.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::*;
use faults::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `command`, which must be killed at its `nth` checkpoint (process 0's).
fn killed_at_checkpoint(mut command: Command, nth: u64, what: &str) -> Output {
    let o = command
        .env("EDDY_CRASH_AT", format!("after-manifest@{nth}/p0"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{what}: not killed: {}", stderr(&o));
    o
}

fn assert_rescaled(o: &Output, from: &str, what: &str) {
    let log = stderr(o);
    assert!(
        log.contains("rescaling: the checkpoint of epoch") && log.contains(from),
        "{what}: no rescale from {from} reported: {log}"
    );
}

#[test]
fn a_replay_rescaled_through_several_layouts_equals_an_uninterrupted_run() {
    let data = data();
    let reference = data.reference();
    let out = data.root.join("rescaled");
    let ck = data.root.join("ck");

    let first = killed_at_checkpoint(data.checkpointed(&out, &ck, 2, &[]), 4, "1 × 2");
    assert_eq!(first.status.signal(), Some(9));

    let second = killed_at_checkpoint(data.checkpointed(&out, &ck, 3, &["--resume"]), 5, "1 × 3");
    assert_eq!(second.status.signal(), Some(9));
    assert_rescaled(&second, "1 process × 2 workers", "1 × 3");

    // Process 0 is killed; process 1 loses its peer; the launcher gives up.
    let third = killed_at_checkpoint(
        data.checkpointed_cluster(&out, &ck, 2, &["--resume"]),
        5,
        "2 × 1",
    );
    assert_rescaled(&third, "1 process × 3 workers", "2 × 1");

    let last = data
        .checkpointed(&out, &ck, 1, &["--resume"])
        .output()
        .unwrap();
    ok(last.clone());
    assert_rescaled(&last, "2 processes × 1 worker", "1 × 1");
    assert_same_results(&reference, &out, "1×2 → 1×3 → 2×1 → 1×1");
}

#[test]
fn a_cluster_shrinks_and_grows_from_its_checkpoints() {
    let data = data();
    let reference = data.reference();
    let out = data.root.join("cluster");
    let ck = data.root.join("ck");

    killed_at_checkpoint(data.checkpointed_cluster(&out, &ck, 3, &[]), 3, "3 × 1");
    let shrunk = killed_at_checkpoint(
        data.checkpointed_cluster(&out, &ck, 2, &["--resume"]),
        4,
        "2 × 1",
    );
    assert_rescaled(&shrunk, "3 processes × 1 worker", "3 → 2 processes");
    let grown = data
        .checkpointed_cluster(&out, &ck, 3, &["--resume"])
        .output()
        .unwrap();
    ok(grown.clone());
    assert_rescaled(&grown, "2 processes × 1 worker", "2 → 3 processes");
    assert_same_results(&reference, &out, "3×1 → 2×1 → 3×1");
}

/// The built-in demo's pipeline (generators of both streams with their
/// anomalies, every query), bounded by record counts so that it ends.
fn bounded_demo(dir: &Path) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dataflows/demo.toml"))
        .unwrap();
    let bounded = demo
        .replace("seed = 7\n", "seed = 7\ncount = 200000\n")
        .replace("seed = 8\n", "seed = 8\ncount = 70000\n");
    assert_ne!(bounded, demo, "the demo's generators are bounded");
    let path = dir.join("demo.toml");
    std::fs::write(&path, bounded).unwrap();
    path
}

/// `eddy run PIPELINE` as fast as possible (on `workers` workers, else the
/// pipeline's or the launcher's), checkpointed into `ck` when given.
fn demo_run(
    pipeline: &Path,
    out: &Path,
    ck: Option<&Path>,
    workers: Option<usize>,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
    c.arg("run")
        .arg(pipeline)
        .args(["--quiet", "--no-dashboard", "--timing", "as-fast"])
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "info");
    if let Some(ck) = ck {
        c.arg("--checkpoint-dir")
            .arg(ck)
            .args(["--checkpoint-interval-ms", "300"]);
    }
    if let Some(w) = workers {
        c.args(["-w", &w.to_string()]);
    }
    c.args(extra);
    c
}

#[test]
fn the_demo_with_generators_rescaled_equals_an_uninterrupted_run() {
    let dir = common::temp_dir();
    let pipeline = bounded_demo(dir.path());
    let reference = dir.path().join("reference");
    ok(demo_run(&pipeline, &reference, None, Some(1), &[])
        .output()
        .unwrap());
    let out = dir.path().join("rescaled");
    let ck = dir.path().join("ck");

    let resume = &["--resume"];
    killed_at_checkpoint(
        demo_run(&pipeline, &out, Some(&ck), Some(2), &[]),
        3,
        "demo 1 × 2",
    );
    let grown = demo_run(&pipeline, &out, Some(&ck), Some(3), resume);
    let grown = killed_at_checkpoint(grown, 5, "demo 1 × 3");
    assert_rescaled(&grown, "1 process × 2 workers", "demo 1 × 3");

    let mut cluster = Command::new(env!("CARGO_BIN_EXE_eddy"));
    cluster.args(["cluster", "-n", "2", "-w", "1", "--"]);
    cluster.args(demo_run(&pipeline, &out, Some(&ck), None, resume).get_args());
    let last = cluster.env("RUST_LOG", "info").output().unwrap();
    ok(last.clone());
    assert_rescaled(&last, "1 process × 3 workers", "demo 2 × 1");
    assert_same_files(
        &reference,
        &out,
        "demo 1×2 → 1×3 → 2×1",
        &["late.csv", "malformed.csv"],
    );
}

#[test]
fn workers_beyond_the_key_groups_are_refused_in_one_line() {
    let data = data();
    let o = data
        .replay(&data.root.join("out"), 3, &["--key-groups", "2"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let log = stderr(&o);
    assert!(
        log.contains("engine.workers (3) must not exceed engine.key_groups (2)"),
        "{log}"
    );
}
