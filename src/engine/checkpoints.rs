//! The engine's side of checkpoints: what a process prepares before its
//! workers start (which epoch to resume from), and what a worker does at a
//! quiet point of its driver loop (save its operators, feeds and, for the
//! process leader, the committed length of the result files).

use super::feed::Feeds;
use super::outputs::Outputs;
use crate::checkpoint::state::StateRegistry;
use crate::checkpoint::{self, CheckpointConfig, Checkpointer, ProcessState};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use anyhow::Context;
use std::time::Instant;
use timely::dataflow::ProbeHandle;

/// The name under which a checkpoint keeps the run's start event time.
pub const RUN_START_STATE: &str = "run/start_event_ms";

/// What the workers of a process need to take checkpoints and resume.
pub struct CheckpointPlan {
    pub config: CheckpointConfig,
    pub fingerprint: String,
    pub process: usize,
    /// Global indices of this process's workers.
    pub process_workers: Vec<usize>,
    pub resume: bool,
    /// Resuming: the epochs whose files of this process are intact, newest first.
    pub usable: Vec<u64>,
    /// Resuming: the process's workers wait here until the result files are cut back.
    pub files_ready: std::sync::Barrier,
}

impl CheckpointPlan {
    /// None when checkpoints are off; resuming, checks the folder first, so
    /// that a checkpoint of another pipeline is refused before any work.
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
        let fingerprint = pipeline.checkpoint_fingerprint(processes);
        let process_workers: Vec<usize> = (process * workers..(process + 1) * workers).collect();
        let found = if config.resume {
            checkpoint::find_resumable(config, &fingerprint, process, &process_workers)?
        } else {
            None
        };
        Ok(Some(CheckpointPlan {
            config: config.clone(),
            fingerprint,
            process,
            process_workers,
            resume: found.is_some(),
            usable: found.map(|f| f.usable).unwrap_or_default(),
            files_ready: std::sync::Barrier::new(workers),
        }))
    }
}

/// Takes this worker's checkpoint at the pending epoch (the dataflow is quiet
/// there) and moves the feeds on to the next epoch.
#[allow(clippy::too_many_arguments)]
pub fn take(
    ck: &mut Checkpointer,
    worker: &mut timely::worker::Worker,
    states: &StateRegistry,
    start_event_ms: u64,
    feeds: &mut Feeds,
    outputs: &Outputs,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut saved = states.save_all()?;
    saved.insert(RUN_START_STATE.into(), bincode::serialize(&start_event_ms)?);
    feeds.save_into(&mut saved)?;
    let process = if ck.is_process_leader() {
        Some(ProcessState {
            sinks: outputs.committed()?,
            counters: metrics.counters(),
        })
    } else {
        None
    };
    let next = ck.take(worker, saved, process, feeds.next_epoch_from())?;
    metrics.record_checkpoint(began.elapsed(), ck.last_bytes);
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
