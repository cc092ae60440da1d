//! One result folder from the folders of a cluster's processes: `eddy merge
//! DIR... --out DIR` and the end of `eddy cluster` both come here.
//!
//! Each folder's `metrics.json` says which run it belongs to (the pipeline's
//! fingerprint, the cluster size and generation, its process). The folders
//! must be of one run, one per process, every process present; otherwise
//! the merge is refused with a line naming the difference. Each result file
//! is then the concatenation, in process order, of the processes' files
//! under one header (copied in the kernel, `copy_file_range`; a rolled
//! query folder's finished parts in order, into one file), and
//! `metrics.json` their merged summary (counts added, latency histograms
//! merged, the heartbeat's bytes added).

use crate::metrics::{ClusterStats, RunIdentity, Summary};
use crate::rolling;
use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What to do with the process folders once merged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// `eddy merge`: leave them as they are.
    Keep,
    /// `eddy cluster`: its own scratch folders, moved from and removed.
    Consume,
}

/// Merges the result folders `dirs` of one run into `out`; returns the merged summary.
pub fn merge_folders(dirs: &[PathBuf], out: &Path, inputs: Inputs) -> anyhow::Result<Summary> {
    if dirs.is_empty() {
        bail!("nothing to merge: name the result folders of a run's processes");
    }
    let mut parts: Vec<(PathBuf, Summary)> = dirs
        .iter()
        .map(|d| Ok((d.clone(), read_summary(d)?)))
        .collect::<anyhow::Result<_>>()?;
    let run = check_one_run(&parts)?;
    parts.sort_by_key(|(_, s)| s.run.as_ref().map(|r| r.process.clone()));
    let ordered: Vec<PathBuf> = parts.iter().map(|(d, _)| d.clone()).collect();
    for d in &ordered {
        if same_folder(d, out) {
            bail!(
                "--out {} is one of the folders to merge: choose a new folder",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    merge_csv_files(&ordered, out, inputs)?;
    let summaries: Vec<Summary> = parts.into_iter().map(|(_, s)| s).collect();
    let mut summary = Summary::merge(&summaries)?;
    summary.run = Some(run);
    summary.cluster = merged_cluster_stats(&summaries);
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    if inputs == Inputs::Consume {
        for d in &ordered {
            std::fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
        }
    }
    Ok(summary)
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn read_summary(dir: &Path) -> anyhow::Result<Summary> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: not the result folder of a finished run",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
}

/// The run the folders share, with every process named once; or the first difference.
fn check_one_run(parts: &[(PathBuf, Summary)]) -> anyhow::Result<RunIdentity> {
    let identity = |(dir, s): &(PathBuf, Summary)| {
        s.run.clone().with_context(|| {
            format!(
                "{} does not say which run it belongs to (written by an eddy before `eddy merge`)",
                dir.display()
            )
        })
    };
    let (first_dir, _) = &parts[0];
    let first = identity(&parts[0])?;
    let mut seen = std::collections::BTreeMap::new();
    for part in parts {
        let (dir, _) = part;
        let r = identity(part)?;
        if r.pipeline != first.pipeline {
            bail!(
                "{} and {} are results of different pipelines: they differ in {}",
                first_dir.display(),
                dir.display(),
                crate::checkpoint::differences(&first.pipeline, &r.pipeline)
            );
        }
        if r.processes != first.processes {
            bail!(
                "{} is of a cluster of {} processes, {} of {}",
                first_dir.display(),
                first.processes,
                dir.display(),
                r.processes
            );
        }
        if r.generation != first.generation {
            bail!(
                "{} and {} are of different runs: cluster generation {} and {}",
                first_dir.display(),
                dir.display(),
                show(first.generation),
                show(r.generation)
            );
        }
        for p in &r.process {
            if let Some(other) = seen.insert(*p, dir.clone()) {
                bail!(
                    "{} and {} both hold the results of process {p}",
                    other.display(),
                    dir.display()
                );
            }
        }
    }
    let missing: Vec<String> = (0..first.processes)
        .filter(|p| !seen.contains_key(p))
        .map(|p| p.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the results of process(es) {} of {} are missing",
            missing.join(", "),
            first.processes
        );
    }
    Ok(RunIdentity {
        process: (0..first.processes).collect(),
        ..first
    })
}

fn show(generation: Option<u64>) -> String {
    generation.map_or_else(|| "none".into(), |g| g.to_string())
}

fn merged_cluster_stats(parts: &[Summary]) -> Option<ClusterStats> {
    let mut stats = parts.iter().flat_map(|p| &p.cluster);
    let mut merged = stats.next()?.clone();
    for s in stats {
        merged.heartbeat_bytes_sent += s.heartbeat_bytes_sent;
        merged.heartbeat_bytes_received += s.heartbeat_bytes_received;
    }
    Some(merged)
}

/// Concatenates each CSV file of the folders under a single header: the
/// first folder's file is moved (or copied) to `out` and the bytes after
/// each other file's header are appended to it (`io::copy`:
/// `copy_file_range` on Linux). Per-record files such as `ewma.csv` are
/// large; reading them line by line was a tenth of a 2-process run's CPU.
fn merge_csv_files(dirs: &[PathBuf], out: &Path, inputs: Inputs) -> anyhow::Result<()> {
    let names = csv_names(&dirs[0])?;
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let theirs = csv_names(dir)?;
        if let Some(extra) = theirs.iter().find(|n| !names.contains(n)) {
            bail!(
                "{} has {extra}, which {} has not (folders of different pipelines?)",
                dir.display(),
                dirs[0].display()
            );
        }
        if let Some(missing) = names.iter().find(|n| !theirs.contains(n)) {
            bail!("process {i} wrote no {missing} (in {})", dir.display());
        }
    }
    for name in names {
        let merged_path = out.join(&name);
        let mut sources = Vec::new();
        for dir in dirs {
            sources.extend(rolling::finished_files(dir, &name)?);
        }
        let Some((first, rest)) = sources.split_first() else {
            continue;
        };
        match inputs {
            Inputs::Consume => std::fs::rename(first, &merged_path),
            Inputs::Keep => std::fs::copy(first, &merged_path).map(|_| ()),
        }
        .with_context(|| format!("cannot put {name} into {}", out.display()))?;
        // Written at its end, not opened to append: Linux copies in the
        // kernel (`copy_file_range`) only into a file not in append mode.
        let mut merged = std::fs::OpenOptions::new().write(true).open(&merged_path)?;
        merged.seek(SeekFrom::End(0))?;
        for source in rest {
            let mut part = BufReader::new(std::fs::File::open(source)?);
            let mut header = Vec::new();
            part.read_until(b'\n', &mut header)?;
            std::io::copy(&mut part, &mut merged)?;
        }
    }
    Ok(())
}

/// The result files of a folder: its `.csv` files and its rolled query
/// folders (`ID/` of `part-NNNNN.csv` files, named `ID.csv` here).
fn csv_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".csv") {
            names.push(name);
        } else if entry.path().is_dir() && !rolling::parts(&entry.path())?.is_empty() {
            names.push(crate::queries::file_name(&name));
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished process folder of run `pipeline`/`generation` with `rows.csv`.
    fn folder(
        root: &Path,
        name: &str,
        process: usize,
        pipeline: &str,
        generation: u64,
        rows: &str,
    ) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rows.csv"), rows).unwrap();
        let mut summary = empty_summary();
        summary.run = Some(RunIdentity {
            pipeline: pipeline.into(),
            processes: 3,
            process: vec![process],
            generation: Some(generation),
        });
        std::fs::write(
            dir.join("metrics.json"),
            serde_json::to_string(&summary).unwrap(),
        )
        .unwrap();
        dir
    }

    fn empty_summary() -> Summary {
        crate::metrics::Metrics::new(1).summary(1, 1)
    }

    #[test]
    fn folders_of_one_run_merge_in_process_order_under_one_header() {
        let root = tempfile::tempdir().unwrap();
        let p = r#"{"workers":1}"#;
        // Named out of order: the process index orders them, not the name.
        let dirs = vec![
            folder(root.path(), "c", 2, p, 5, "ts_ms,value\n3,é\r\n4,d\n"),
            folder(root.path(), "a", 0, p, 5, "ts_ms,value\n1,a\n2,b\n"),
            folder(root.path(), "b", 1, p, 5, "ts_ms,value\n"),
        ];
        let out = root.path().join("merged");
        let summary = merge_folders(&dirs, &out, Inputs::Keep).unwrap();
        let merged = std::fs::read_to_string(out.join("rows.csv")).unwrap();
        assert_eq!(merged, "ts_ms,value\n1,a\n2,b\n3,é\r\n4,d\n");
        assert_eq!(summary.run.unwrap().process, vec![0, 1, 2]);
        assert!(
            dirs.iter().all(|d| d.join("rows.csv").exists()),
            "inputs kept"
        );
        let written: Summary =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(written.processes, 3);
    }

    #[test]
    fn folders_of_different_runs_are_refused_naming_the_difference() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("merged");
        let rows = "ts_ms,value\n";
        let a = folder(root.path(), "a", 0, r#"{"workers":1}"#, 5, rows);
        let b = folder(root.path(), "b", 1, r#"{"workers":2}"#, 5, rows);
        let c = folder(root.path(), "c", 2, r#"{"workers":1}"#, 5, rows);
        let e = merge_folders(&[a.clone(), b, c.clone()], &out, Inputs::Keep).unwrap_err();
        assert!(
            e.to_string()
                .contains("different pipelines: they differ in workers"),
            "{e}"
        );
        let b6 = folder(root.path(), "b6", 1, r#"{"workers":1}"#, 6, rows);
        let e = merge_folders(&[a.clone(), b6, c.clone()], &out, Inputs::Keep).unwrap_err();
        assert!(e.to_string().contains("generation 5 and 6"), "{e}");
        let e = merge_folders(&[a.clone(), c.clone()], &out, Inputs::Keep).unwrap_err();
        assert!(
            e.to_string().contains("process(es) 1 of 3 are missing"),
            "{e}"
        );
        let again = folder(root.path(), "again", 0, r#"{"workers":1}"#, 5, rows);
        let e = merge_folders(&[a, again, c], &out, Inputs::Keep).unwrap_err();
        assert!(
            e.to_string().contains("both hold the results of process 0"),
            "{e}"
        );
        assert!(!out.exists(), "nothing written on a refusal");
    }

    #[test]
    fn a_missing_result_file_is_named() {
        let root = tempfile::tempdir().unwrap();
        let p = r#"{"workers":1}"#;
        let rows = "ts_ms,value\n1,a\n";
        let dirs: Vec<PathBuf> = (0..3)
            .map(|i| folder(root.path(), &format!("p{i}"), i, p, 1, rows))
            .collect();
        std::fs::remove_file(dirs[1].join("rows.csv")).unwrap();
        let e = merge_folders(&dirs, &root.path().join("m"), Inputs::Keep).unwrap_err();
        assert!(e.to_string().contains("process 1 wrote no rows.csv"), "{e}");
    }
}
