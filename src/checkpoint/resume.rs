//! Finding the checkpoint to resume from, and reading it for a run of any
//! layout.
//!
//! An epoch is usable when every file it needs is intact: under the layout
//! that wrote it, a process needs only its own files (each host may keep its
//! own folder); under another layout (a rescale), every file of the epoch,
//! since any old worker may hold state the new ones own (a folder shared by
//! the hosts, or the hosts' folders copied into one). What a new worker and
//! process take from the old files is decided in `crate::rescale`.

use super::store::{self, Layout, Manifest, ProcessFile, WorkerFile};
use super::CheckpointConfig;
use crate::rescale::layout::RunLayout;
use crate::rescale::parts::RestoredParts;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The checkpoint a process can resume from, found before the workers start.
pub struct Resumable {
    /// Epochs whose needed files are intact, newest first.
    pub usable: Vec<u64>,
    /// The newest of them, read.
    pub newest: Arc<OldEpoch>,
}

/// The files of one epoch that a process of the new layout needs.
pub struct OldEpoch {
    pub epoch: u64,
    /// The layout that wrote it.
    pub layout: RunLayout,
    /// The layout resuming from it.
    pub new: RunLayout,
    /// Worker files by global index: this process's when the layout is
    /// unchanged, every one otherwise.
    pub workers: BTreeMap<usize, WorkerFile>,
    /// Process files by index, likewise.
    pub processes: BTreeMap<usize, ProcessFile>,
}

/// What checking an epoch found.
enum Check {
    Usable(OldEpoch),
    /// Intact, but written by another pipeline: its fingerprint.
    OtherPipeline(String),
}

impl OldEpoch {
    /// Whether the layout is unchanged (each worker takes back its own state).
    pub fn same_layout(&self) -> bool {
        self.layout == self.new
    }

    /// Reads what process `process` of `new` needs of `epoch`.
    fn read(
        layout: &Layout,
        epoch: u64,
        fingerprint: &str,
        new: RunLayout,
        process: usize,
    ) -> anyhow::Result<Check> {
        let old = written_by(layout, epoch, process)?;
        new.can_resume_from(&old)?;
        let (worker_range, process_range) = if old == new {
            (
                process * old.workers..(process + 1) * old.workers,
                process..process + 1,
            )
        } else {
            (0..old.peers(), 0..old.processes)
        };
        let mut e = OldEpoch {
            epoch,
            layout: old,
            new,
            workers: BTreeMap::new(),
            processes: BTreeMap::new(),
        };
        for p in process_range {
            let f: ProcessFile = store::read_file(&layout.process_file(epoch, p))?;
            anyhow::ensure!(
                f.epoch == epoch && f.process == p,
                "process file {p} misplaced"
            );
            if f.fingerprint != fingerprint {
                return Ok(Check::OtherPipeline(f.fingerprint));
            }
            e.processes.insert(p, f);
        }
        for w in worker_range {
            let f: WorkerFile = store::read_file(&layout.worker_file(epoch, w))?;
            anyhow::ensure!(
                f.epoch == epoch && f.worker == w,
                "worker file {w} misplaced"
            );
            if f.fingerprint != fingerprint {
                return Ok(Check::OtherPipeline(f.fingerprint));
            }
            e.workers.insert(w, f);
        }
        Ok(Check::Usable(e))
    }

    /// Reads `epoch` again (when the processes agreed on another than the newest).
    pub fn load(
        layout: &Layout,
        epoch: u64,
        fingerprint: &str,
        new: RunLayout,
        process: usize,
    ) -> anyhow::Result<OldEpoch> {
        match Self::read(layout, epoch, fingerprint, new, process)? {
            Check::Usable(e) => Ok(e),
            Check::OtherPipeline(_) => bail!("epoch {epoch} was written by another pipeline"),
        }
    }

    /// The operator states global worker `index` of the new layout restores:
    /// under the same layout its own; otherwise every old worker's rest and
    /// the groups it owns now.
    pub fn states_for(&self, index: usize) -> BTreeMap<String, RestoredParts> {
        let mut out: BTreeMap<String, RestoredParts> = BTreeMap::new();
        let same = self.same_layout();
        let (groups, peers) = (self.new.key_groups, self.new.peers());
        for (&w, file) in &self.workers {
            if same && w != index {
                continue;
            }
            for (name, parts) in &file.states {
                let r = out.entry(name.clone()).or_default();
                if !parts.rest.is_empty() {
                    r.rests.push(parts.rest.clone());
                }
                r.groups.extend(
                    parts
                        .groups
                        .iter()
                        .filter(|(g, _)| same || groups.owner(*g, peers) == index)
                        .map(|(_, bytes)| bytes.clone()),
                );
            }
        }
        out
    }

    /// The saved states of feed `name` that global worker `index` restores
    /// from: its own under the same layout, every old worker's (in order)
    /// otherwise.
    pub fn feeds_for(&self, name: &str, index: usize) -> Vec<Vec<u8>> {
        self.workers
            .iter()
            .filter(|(w, _)| !self.same_layout() || **w == index)
            .filter_map(|(_, f)| f.feeds.get(name).cloned())
            .collect()
    }

    /// The event time the run began at (the same in every worker file).
    pub fn start_event_ms(&self) -> anyhow::Result<u64> {
        self.workers
            .values()
            .next()
            .map(|f| f.start_event_ms)
            .context("the checkpoint has no worker file")
    }

    /// The old process files process `process` of the new layout takes over.
    pub fn adopted(&self, process: usize) -> Vec<&ProcessFile> {
        if self.same_layout() {
            return self.processes.get(&process).into_iter().collect();
        }
        self.new
            .adopted(&self.layout, process)
            .into_iter()
            .filter_map(|q| self.processes.get(&q))
            .collect()
    }
}

/// The layout epoch `epoch` was written with, from this process's file or,
/// for a process the old layout did not have, any process's.
fn written_by(layout: &Layout, epoch: u64, process: usize) -> anyhow::Result<RunLayout> {
    let own = layout.process_file(epoch, process);
    if own.exists() {
        let f: ProcessFile = store::read_file(&own)?;
        return Ok(f.layout);
    }
    let dir = layout.epoch_dir(epoch);
    let mut others: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with('p')))
        .map(|e| e.path())
        .collect();
    others.sort();
    for path in others {
        if let Ok(f) = store::read_file::<ProcessFile>(&path) {
            return Ok(f.layout);
        }
    }
    bail!("no process file of epoch {epoch} reads")
}

/// Checks a checkpoint folder for `--resume` by process `process` of a run
/// laid out as `new`: the pipeline must be the one that wrote it; damaged
/// or unfinished epochs are skipped with a line naming the file. None when
/// no checkpoint was completed yet (the run starts from the beginning).
pub fn find_resumable(
    config: &CheckpointConfig,
    fingerprint: &str,
    new: RunLayout,
    process: usize,
) -> anyhow::Result<Option<Resumable>> {
    let dir = config
        .dir
        .as_ref()
        .context("--resume needs --checkpoint-dir")?;
    let layout = Layout { dir: dir.clone() };
    let refuse = |theirs: &str| -> anyhow::Error {
        anyhow::anyhow!(
            "the checkpoint in {} was written by another pipeline: it differs in {}; \
             resume with the same pipeline and flags, or start afresh without --resume",
            dir.display(),
            super::differences(fingerprint, theirs)
        )
    };
    // The newest epoch any process recorded complete (this process's
    // manifest, or, for a process the old layout did not have, any).
    let mut manifests = Vec::new();
    let mut damaged = None;
    for path in layout.manifests() {
        match store::read_file::<Manifest>(&path) {
            Ok(m) => manifests.push(m),
            Err(e) => damaged = Some(e),
        }
    }
    if let Some(m) = manifests.iter().find(|m| m.fingerprint != fingerprint) {
        return Err(refuse(&m.fingerprint));
    }
    if let (Some(e), true) = (&damaged, manifests.is_empty()) {
        tracing::warn!("{e:#}; looking for intact epochs without it");
    }
    let has_manifest = !manifests.is_empty();
    let newest = manifests.iter().map(|m| m.epoch).max().unwrap_or(u64::MAX);
    let epochs: Vec<u64> = layout
        .epochs()
        .into_iter()
        .filter(|e| *e <= newest)
        .collect();
    let mut usable = Vec::new();
    let mut newest_read = None;
    for epoch in epochs {
        match OldEpoch::read(&layout, epoch, fingerprint, new, process) {
            Ok(Check::Usable(e)) => {
                usable.push(epoch);
                newest_read.get_or_insert(e);
            }
            Ok(Check::OtherPipeline(theirs)) => return Err(refuse(&theirs)),
            // Past the manifest (or without one) an epoch may just be unfinished.
            Err(e) if !has_manifest => {
                tracing::info!("checkpoint epoch {epoch} was not completed ({e:#}); skipped")
            }
            Err(e) => tracing::warn!(
                "checkpoint epoch {epoch} cannot be used ({e:#}); an older one will be tried"
            ),
        }
    }
    let Some(newest) = newest_read else {
        if !has_manifest {
            tracing::info!(
                "no complete checkpoint in {} yet: starting from the beginning",
                dir.display()
            );
            return Ok(None);
        }
        bail!(
            "no intact checkpoint in {} to resume from; start afresh without --resume",
            dir.display()
        );
    };
    if !newest.same_layout() {
        tracing::info!(
            "rescaling: the checkpoint of epoch {} was written by {}; this run is {}",
            newest.epoch,
            newest.layout.describe(),
            new.describe()
        );
    }
    Ok(Some(Resumable {
        usable,
        newest: Arc::new(newest),
    }))
}
