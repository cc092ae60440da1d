//! A full disk: a result folder or a checkpoint folder on a small tmpfs
//! that fills up stops the run with one line naming the file it could not
//! write, after the last complete checkpoint; `--resume` once space is
//! freed (the tmpfs grown) gives the uninterrupted run's results.
//!
//! Mounting a tmpfs needs root (as the multi-host tests' namespaces do).

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::*;
use faults::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a given size, unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> SmallDisk {
        let dir = temp_dir();
        let at = dir.path().join("disk");
        std::fs::create_dir(&at).unwrap();
        let size = format!("size={}k", bytes.div_ceil(4096) * 4);
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "this test mounts a tmpfs (run it as root): {}",
            stderr(&o)
        );
        SmallDisk { at, _dir: dir }
    }

    /// Frees space the way an operator would: the disk grows.
    fn grow(&self, bytes: u64) {
        let size = format!("remount,size={}k", bytes.div_ceil(4096) * 4);
        ok(Command::new("mount")
            .args(["-o", &size])
            .arg(&self.at)
            .output()
            .unwrap());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).output();
    }
}

fn folder_bytes(dir: &Path) -> u64 {
    walk(dir).iter().map(|p| p.metadata().unwrap().len()).sum()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

/// The run failed with one line naming a file under `disk`, after at least
/// one complete checkpoint in `ck`.
fn assert_stopped_on_full_disk(o: &std::process::Output, disk: &Path, ck: &Path) {
    assert!(!o.status.success(), "the run went on: {}", stderr(o));
    let text = stderr(o);
    let full: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("No space left"))
        .collect();
    assert_eq!(full.len(), 1, "one line about the full disk: {text}");
    let expected = format!("eddy: error: cannot write {}/", disk.display());
    assert!(full[0].starts_with(&expected), "{text}");
    assert_eq!(text.lines().last(), Some(full[0]), "{text}");
    assert!(
        eddy::checkpoint::last_complete_epoch(ck, 0).is_some(),
        "no checkpoint was complete before the disk filled: {text}"
    );
}

#[test]
fn a_full_result_disk_stops_the_run_naming_the_file_and_a_resume_is_exact() {
    let data = data();
    let reference = data.reference();
    let results = folder_bytes(&reference);
    // A third of the results fit.
    let disk = SmallDisk::mount(results / 3);
    let out = disk.at.join("out");
    let ck = data.root.join("ck");
    let o = data.checkpointed(&out, &ck, 2, &[]).output().unwrap();
    assert_stopped_on_full_disk(&o, &disk.at, &ck);
    disk.grow(4 * results);
    let o = data
        .checkpointed(&out, &ck, 2, &["--resume"])
        .output()
        .unwrap();
    ok(o);
    assert_same_results(&reference, &out, "resumed after the result disk filled");
}

#[test]
fn a_full_checkpoint_disk_stops_the_run_naming_the_file_and_a_resume_is_exact() {
    let data = data();
    let reference = data.reference();
    // How much the checkpoints of this run take on disk at the end.
    let probe = data.root.join("probe");
    ok(data
        .checkpointed(&data.root.join("probe-out"), &probe, 2, &[])
        .output()
        .unwrap());
    let checkpoints = folder_bytes(&probe);
    // The two kept epochs of the end do not fit: a later epoch fails.
    let disk = SmallDisk::mount(checkpoints * 3 / 4);
    let ck = disk.at.join("ck");
    let out = data.root.join("out");
    let o = data.checkpointed(&out, &ck, 2, &[]).output().unwrap();
    assert_stopped_on_full_disk(&o, &disk.at, &ck);
    disk.grow(4 * checkpoints);
    ok(data
        .checkpointed(&out, &ck, 2, &["--resume"])
        .output()
        .unwrap());
    assert_same_results(&reference, &out, "resumed after the checkpoint disk filled");
}
