//! Faults: a replay with checkpoints on is killed (SIGKILL) at injected points
//! — in the middle of a checkpoint file, before and after the manifest — and
//! at timed moments, then resumed; its result files must equal, after
//! sorting, those of an uninterrupted run without checkpoints: no row lost,
//! none doubled. Also: a 2-process cluster restarted after a death, corrupted
//! and truncated checkpoints, a checkpoint of another pipeline.
//!
//! Injected kills use `EDDY_CRASH_AT=STAGE@N[/pP]` (see src/checkpoint/mod.rs):
//! deterministic, so each stage is hit whatever the machine's speed.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::*;
use faults::*;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn killed(o: &Output) -> bool {
    o.status.signal() == Some(9)
}

#[test]
fn kills_at_injected_points_leave_the_results_unchanged() {
    let data = data();
    let reference = data.reference();
    let points = [
        ("mid-write@2", 2),
        ("mid-write@4", 2),
        ("before-manifest@3", 1),
        ("after-manifest@6", 2),
        ("mid-write@9", 3),
        ("after-manifest@2", 1),
    ];
    for (point, workers) in points {
        let what = format!("{point} on {workers} worker(s)");
        let out = data.root.join(format!("out-{point}-{workers}"));
        let ck = data.root.join(format!("ck-{point}-{workers}"));
        let first = data
            .checkpointed(&out, &ck, workers, &[])
            .env("EDDY_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(killed(&first), "{what}: not killed: {}", stderr(&first));
        let resumed = data
            .checkpointed(&out, &ck, workers, &["--resume"])
            .env("EDDY_ATTEMPT", "2")
            .output()
            .unwrap();
        ok(resumed.clone());
        assert!(
            stderr(&resumed).contains("resuming from the checkpoint of epoch"),
            "{what}: {}",
            stderr(&resumed)
        );
        assert_same_results(&reference, &out, &what);
    }
}

/// Starts `command`, waits until its checkpoints have passed `epoch`, lets it
/// run `delay_ms` more — between checkpoints, in the middle of processing —
/// and kills it.
fn kill_after(mut command: Command, ck: &Path, epoch: u64, delay_ms: u64) {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while eddy::checkpoint::last_complete_epoch(ck, 0).is_none_or(|e| e < epoch) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before epoch {epoch}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "not killed after epoch {epoch}");
}

#[test]
fn kills_between_checkpoints_leave_the_results_unchanged() {
    let data = data();
    let reference = data.reference();
    // The data spans 20 s of event time from 1.7e12 ms; checkpoints every 0.5 s.
    let at = |s: u64| 1_700_000_000_000 + s * 1000;
    let plans: [&[(u64, u64)]; 3] = [
        &[(at(3), 0), (at(9), 4)],
        &[(at(6), 2), (at(7), 0), (at(15), 6)],
        &[(at(17), 1)],
    ];
    for (n, kills) in plans.iter().enumerate() {
        let out = data.root.join(format!("between-{n}"));
        let ck = data.root.join(format!("ck-between-{n}"));
        // Kill the first run, then each resumption but the last.
        for (attempt, &(epoch, delay_ms)) in kills.iter().enumerate() {
            let resume: &[&str] = if attempt == 0 { &[] } else { &["--resume"] };
            kill_after(
                data.checkpointed(&out, &ck, 2, resume),
                &ck,
                epoch,
                delay_ms,
            );
        }
        ok(data
            .checkpointed(&out, &ck, 2, &["--resume"])
            .output()
            .unwrap());
        assert_same_results(&reference, &out, &format!("kills {kills:?}"));
    }
}

#[test]
fn a_cluster_restarts_all_processes_when_one_dies() {
    let data = data();
    let reference = data.reference();
    for (point, what) in [
        ("mid-write@3/p1", "process 1 killed writing a checkpoint"),
        ("after-manifest@5/p0", "process 0 killed after a manifest"),
    ] {
        let out = data.root.join(format!("cluster-{point}").replace('/', "-"));
        let ck = data
            .root
            .join(format!("ck-cluster-{point}").replace('/', "-"));
        let o = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "cluster",
                "-n",
                "2",
                "-w",
                "1",
                "--restart-on-failure",
                "--",
            ])
            .args(["replay", "--quiet", "--trades"])
            .arg(&data.trades)
            .arg("--interactions")
            .arg(&data.interactions)
            .arg("--out")
            .arg(&out)
            .arg("--checkpoint-dir")
            .arg(&ck)
            .args(["--checkpoint-interval-ms", "500"])
            .env("EDDY_CRASH_AT", point)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        ok(o.clone());
        assert!(
            stderr(&o).contains("restarting all 2 processes"),
            "{what}: {}",
            stderr(&o)
        );
        assert_same_results(&reference, &out, what);
        let recoveries = metrics(&out)["recoveries"].as_array().unwrap().clone();
        assert_eq!(recoveries.len(), 1, "{what}");
        assert!(recoveries[0]["recovery_s"].as_f64().unwrap() > 0.0);
        assert!(recoveries[0]["resumed_epoch"].as_u64().is_some(), "{what}");
    }
}

/// The newest epoch folder of a checkpoint folder.
fn newest_epoch(ck: &Path) -> PathBuf {
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("epoch-")
        })
        .collect();
    epochs.sort();
    epochs.pop().expect("an epoch folder")
}

#[test]
fn a_damaged_checkpoint_is_detected_and_the_previous_one_used() {
    let data = data();
    let reference = data.reference();
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 2] = [
        ("a flipped byte", |f| {
            let mut bytes = std::fs::read(f).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            std::fs::write(f, bytes).unwrap();
        }),
        ("a truncated file", |f| {
            let bytes = std::fs::read(f).unwrap();
            std::fs::write(f, &bytes[..bytes.len() * 2 / 3]).unwrap();
        }),
    ];
    for (n, (damage, spoil_file)) in damages.iter().enumerate() {
        let out = data.root.join(format!("damaged-{n}"));
        let ck = data.root.join(format!("ck-damaged-{n}"));
        let first = data
            .checkpointed(&out, &ck, 2, &[])
            .env("EDDY_CRASH_AT", "after-manifest@6")
            .output()
            .unwrap();
        assert!(killed(&first), "{damage}: {}", stderr(&first));
        let newest = newest_epoch(&ck);
        let file = newest.join("w1");
        spoil_file(&file);
        let resumed = data
            .checkpointed(&out, &ck, 2, &["--resume"])
            .env("EDDY_ATTEMPT", "2")
            .output()
            .unwrap();
        ok(resumed.clone());
        let log = stderr(&resumed);
        let epoch = newest.file_name().unwrap().to_string_lossy()["epoch-".len()..]
            .trim_start_matches('0')
            .to_string();
        assert!(
            log.contains("w1") && log.contains(&epoch) && log.contains("older"),
            "{damage}: the damage is not reported: {log}"
        );
        assert!(
            !log.contains(&format!("resuming from the checkpoint of epoch {epoch}")),
            "{damage}: resumed from the damaged epoch: {log}"
        );
        assert_same_results(&reference, &out, damage);
    }
}

#[test]
fn a_checkpoint_of_another_pipeline_is_refused() {
    let data = data();
    let out = data.root.join("out");
    let ck = data.root.join("ck");
    let first = data
        .checkpointed(&out, &ck, 2, &[])
        .env("EDDY_CRASH_AT", "after-manifest@2")
        .output()
        .unwrap();
    assert!(killed(&first), "{}", stderr(&first));
    for (flags, difference) in [
        (vec!["--threshold", "7"], "queries"),
        (vec!["--max-delay-ms", "999"], "max_delay_ms"),
    ] {
        let mut all = flags.clone();
        all.push("--resume");
        let o = data.checkpointed(&out, &ck, 2, &all).output().unwrap();
        assert!(!o.status.success(), "{flags:?} resumed");
        let log = stderr(&o);
        assert!(
            log.contains("another pipeline") && log.contains(difference),
            "{flags:?}: {log}"
        );
    }
    // The layout may change (tests/rescale.rs); the key groups may not.
    let o = data
        .checkpointed(&out, &ck, 3, &["--resume", "--key-groups", "64"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("key_groups (256 there, 64 here)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn resume_without_a_checkpoint_starts_afresh() {
    let data = data();
    let reference = data.reference();
    let out = data.root.join("out");
    let ck = data.root.join("empty");
    let o = data
        .checkpointed(&out, &ck, 2, &["--resume"])
        .output()
        .unwrap();
    ok(o.clone());
    assert!(
        stderr(&o).contains("no complete checkpoint"),
        "{}",
        stderr(&o)
    );
    assert_same_results(&reference, &out, "fresh start");
}
