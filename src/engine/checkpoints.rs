//! The engine's side of checkpoints: what a process prepares before its
//! workers start (which epoch to resume from; rescaled, the result files it
//! takes over), and what a worker does at a quiet point of its driver loop
//! (save its operators, feeds and, for the process leader, the committed
//! length of the result files).

use super::feed::Feeds;
use super::outputs::Outputs;
use crate::checkpoint::resume::{find_resumable, OldEpoch};
use crate::checkpoint::state::StateRegistry;
use crate::checkpoint::{CheckpointConfig, Checkpointer, ProcessState, WorkerState};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::rescale::layout::{adopt_results, CommittedFolder, RunLayout};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use timely::dataflow::ProbeHandle;

/// What the workers of a process need to take checkpoints and resume.
pub struct CheckpointPlan {
    pub config: CheckpointConfig,
    pub fingerprint: String,
    pub process: usize,
    /// This run's layout, recorded in its checkpoints.
    pub layout: RunLayout,
    /// The process's result folder (absolute), recorded for a later rescale.
    pub out_dir: Option<PathBuf>,
    pub resume: bool,
    /// Resuming: the epochs whose needed files are intact, newest first.
    pub usable: Vec<u64>,
    /// Resuming: the newest of them, read; let go once the workers restored
    /// from it (a large state is not kept for the whole run).
    newest: std::sync::Mutex<Option<Arc<OldEpoch>>>,
    /// Whether the result files exist to be reopened (see [`Self::reopens_files`]).
    reopens_files: bool,
    /// Resuming with another layout: the lengths of the result files once
    /// the old processes' committed rows were taken over; none when this
    /// process takes over no old process (its files start afresh).
    adopted_lengths: Option<BTreeMap<String, u64>>,
    /// Resuming: the process's workers wait here until the result files are cut back.
    pub files_ready: std::sync::Barrier,
    /// Resuming from a checkpoint of another layout: which.
    pub rescaled: Option<Rescaled>,
}

/// A run resumed from a checkpoint of another layout.
#[derive(Clone, Debug)]
pub struct Rescaled {
    /// The old processes whose result rows this process took over (its own
    /// old index first, when it had one).
    pub adopted: Vec<usize>,
}

impl CheckpointPlan {
    /// None when checkpoints are off; resuming, checks the folder first, so
    /// that a checkpoint of another pipeline is refused before any work,
    /// and, rescaled, takes over the old processes' committed rows.
    pub fn prepare(
        pipeline: &Pipeline,
        processes: usize,
        process: usize,
    ) -> anyhow::Result<Option<CheckpointPlan>> {
        let config = &pipeline.engine.checkpoint;
        let Some(dir) = &config.dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create checkpoint folder {}", dir.display()))?;
        let workers = pipeline.engine.workers;
        let layout = RunLayout {
            processes,
            workers,
            key_groups: pipeline.engine.key_groups()?,
        };
        let fingerprint = pipeline.checkpoint_fingerprint();
        let out_dir = match &pipeline.output.dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create output folder {}", d.display()))?;
                Some(d.canonicalize()?)
            }
            None => None,
        };
        let found = if config.resume {
            find_resumable(config, &fingerprint, layout, process)?
        } else {
            None
        };
        let rescaled = found
            .as_ref()
            .filter(|f| !f.newest.same_layout())
            .map(|f| Rescaled {
                adopted: layout.adopted(&f.newest.layout, process),
            });
        let mut adopted_lengths = None;
        if let (Some(f), Some(out)) = (&found, &out_dir) {
            if !f.newest.same_layout() {
                let folders: Vec<CommittedFolder> = f
                    .newest
                    .adopted(process)
                    .into_iter()
                    .filter_map(|p| {
                        Some(CommittedFolder {
                            dir: p.out_dir.clone()?,
                            lengths: p.sinks.clone(),
                        })
                    })
                    .collect();
                if !folders.is_empty() {
                    adopted_lengths = Some(adopt_results(out, &folders)?);
                    let from: Vec<String> = folders
                        .iter()
                        .map(|f| f.dir.display().to_string())
                        .collect();
                    tracing::info!(
                        "took over the committed rows of {} into {}",
                        from.join(", "),
                        out.display()
                    );
                }
            }
        }
        Ok(Some(CheckpointPlan {
            config: config.clone(),
            fingerprint,
            process,
            layout,
            out_dir,
            resume: found.is_some(),
            usable: found.as_ref().map(|f| f.usable.clone()).unwrap_or_default(),
            reopens_files: found
                .as_ref()
                .is_some_and(|f| f.newest.same_layout() || adopted_lengths.is_some()),
            newest: std::sync::Mutex::new(found.map(|f| f.newest)),
            adopted_lengths,
            files_ready: std::sync::Barrier::new(workers),
            rescaled,
        }))
    }

    /// Whether the result files exist to be reopened (resuming, unless this
    /// process of a rescaled run takes over no old process).
    pub fn reopens_files(&self) -> bool {
        self.reopens_files
    }

    /// Lets go of the checkpoint read at start (every worker restored from it).
    pub fn release_checkpoint(&self) {
        *self.newest.lock().expect("checkpoint lock") = None;
    }

    /// The epoch the workers agreed on, read.
    pub fn epoch(&self, epoch: u64) -> anyhow::Result<Arc<OldEpoch>> {
        let newest = self
            .newest
            .lock()
            .expect("checkpoint lock")
            .clone()
            .context("resuming without a checkpoint")?;
        if newest.epoch == epoch {
            return Ok(newest);
        }
        anyhow::ensure!(
            newest.same_layout(),
            "the processes found different newest checkpoints ({} here, {epoch} on another); \
             a rescale needs every process to see the same checkpoint folder",
            newest.epoch
        );
        let layout = crate::checkpoint::store::Layout {
            dir: self
                .config
                .dir
                .clone()
                .context("checkpoints need a folder")?,
        };
        Ok(Arc::new(OldEpoch::load(
            &layout,
            epoch,
            &self.fingerprint,
            self.layout,
            self.process,
        )?))
    }

    /// What the process resumes with: the committed lengths of its result
    /// files (none: they start afresh) and its counters (the sum of the old
    /// processes' it takes over).
    pub fn process_state(
        &self,
        old: &OldEpoch,
    ) -> (Option<BTreeMap<String, u64>>, BTreeMap<String, u64>) {
        let adopted = old.adopted(self.process);
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        for p in &adopted {
            for (name, n) in &p.counters {
                *counters.entry(name.clone()).or_default() += n;
            }
        }
        let lengths = if old.same_layout() {
            adopted.first().map(|p| p.sinks.clone())
        } else {
            self.adopted_lengths.clone()
        };
        (lengths, counters)
    }
}

/// Takes this worker's checkpoint at the pending epoch (the dataflow is quiet
/// there) and moves the feeds on to the next epoch.
#[allow(clippy::too_many_arguments)]
pub fn take(
    ck: &mut Checkpointer,
    plan: &CheckpointPlan,
    worker: &mut timely::worker::Worker,
    states: &StateRegistry,
    start_event_ms: u64,
    feeds: &mut Feeds,
    outputs: &Outputs,
    metrics: &Metrics,
    ingest: Option<&Ingest>,
) -> anyhow::Result<()> {
    let began = Instant::now();
    let epoch = ck.pending_epoch();
    let saved = WorkerState {
        states: states.save_all(plan.layout.key_groups)?,
        feeds: feeds.save()?,
        start_event_ms,
    };
    let process = if ck.is_process_leader() {
        Some(ProcessState {
            out_dir: plan.out_dir.clone(),
            sinks: outputs.committed()?,
            counters: metrics.counters(),
        })
    } else {
        None
    };
    let next = ck.take(
        worker,
        saved,
        process,
        feeds.next_epoch_from(),
        feeds.finished(),
    )?;
    metrics.record_checkpoint(began.elapsed(), ck.last_bytes);
    // The leader passes `take` once the checkpoint is complete: the rolled
    // parts it closed are finished, the input log behind the oldest
    // checkpoint kept can go.
    if ck.is_process_leader() {
        outputs.checkpoint_complete()?;
    }
    if let (true, Some(ingest)) = (ck.is_process_leader(), ingest) {
        if let Some(oldest) = ck.oldest_kept(epoch) {
            ingest.checkpoint_taken(epoch, oldest)?;
        }
    }
    feeds.release(next);
    Ok(())
}

/// Whether the worker is at its checkpoint's quiet point: every feed waits
/// for the pending epoch and the dataflow has processed everything before it.
pub fn is_quiet(
    ck: &Checkpointer,
    feeds: &Feeds,
    frontier: Option<u64>,
    probe: &ProbeHandle<u64>,
) -> bool {
    feeds.at_limit() && frontier.is_some() && ck.reached(probe)
}
