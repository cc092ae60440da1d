//! `eddy checkpoint show DIR`: what a checkpoint folder holds, as a person
//! checking it before a rescale wants to see it: each epoch, the layout it
//! was written with and its key groups, the state bytes per query and per
//! worker's group range, the feeds (position bytes, records held back,
//! watermark), and per process the result files' committed lengths.

use super::store::{self, Layout, Manifest, ProcessFile, WorkerFile};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The report of a checkpoint folder, as printed.
pub fn show(dir: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(dir.is_dir(), "{} is not a checkpoint folder", dir.display());
    let layout = Layout { dir: dir.into() };
    let mut out = String::new();
    writeln!(out, "checkpoint folder {}", dir.display())?;
    for path in layout.manifests() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match store::read_file::<Manifest>(&path) {
            Ok(m) => writeln!(out, "  {name}: epoch {} complete", m.epoch)?,
            Err(e) => writeln!(out, "  {name}: unreadable ({e:#})")?,
        }
    }
    let epochs = layout.epochs();
    if epochs.is_empty() {
        writeln!(out, "  no epochs")?;
    }
    for epoch in epochs {
        show_epoch(&layout, epoch, &mut out)?;
    }
    Ok(out)
}

/// The files of one epoch folder, by kind and index.
fn files_of(layout: &Layout, epoch: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut workers, mut processes) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(layout.epoch_dir(epoch))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(w) = name.strip_prefix('w').and_then(|w| w.parse().ok()) {
            workers.push(w);
        } else if let Some(p) = name.strip_prefix('p').and_then(|p| p.parse().ok()) {
            processes.push(p);
        }
    }
    workers.sort_unstable();
    processes.sort_unstable();
    (workers, processes)
}

fn show_epoch(layout: &Layout, epoch: u64, out: &mut String) -> anyhow::Result<()> {
    writeln!(out, "epoch {epoch}")?;
    let (workers, processes) = files_of(layout, epoch);
    let mut per_state: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut written_by = None;
    for p in processes {
        match store::read_file::<ProcessFile>(&layout.process_file(epoch, p)) {
            Ok(f) => {
                written_by.get_or_insert(f.layout);
                let committed: u64 = f.sinks.values().sum();
                writeln!(
                    out,
                    "  process {p}: results {} ({} files, {committed} bytes committed)",
                    f.out_dir
                        .as_ref()
                        .map_or("none".into(), |d| d.display().to_string()),
                    f.sinks.len()
                )?;
            }
            Err(e) => writeln!(out, "  process {p}: {e:#}")?,
        }
    }
    if let Some(l) = written_by {
        writeln!(
            out,
            "  layout {}, {} key groups",
            l.describe(),
            l.key_groups.count()
        )?;
    }
    for w in workers {
        let f = match store::read_file::<WorkerFile>(&layout.worker_file(epoch, w)) {
            Ok(f) => f,
            Err(e) => {
                writeln!(out, "  worker {w}: {e:#}")?;
                continue;
            }
        };
        let groups = f.layout.key_groups.range(w, f.layout.peers());
        let bytes: usize = f.states.values().map(|s| s.len()).sum();
        writeln!(
            out,
            "  worker {w}: key groups {}..{}, state {bytes} bytes",
            groups.start, groups.end
        )?;
        for (name, parts) in &f.states {
            let e = per_state.entry(name.clone()).or_default();
            e.0 += parts.len();
            e.1 += parts.groups.len();
        }
        for (name, bytes) in &f.feeds {
            match super::feed_state::summary(name, bytes) {
                Ok(s) => writeln!(out, "    {name}: {s}")?,
                Err(e) => writeln!(out, "    {name}: {} bytes ({e:#})", bytes.len())?,
            }
        }
    }
    if !per_state.is_empty() {
        writeln!(out, "  state by operator (bytes, key groups with entries):")?;
        for (name, (bytes, groups)) in per_state {
            writeln!(out, "    {name}: {bytes} bytes, {groups} groups")?;
        }
    }
    Ok(())
}
