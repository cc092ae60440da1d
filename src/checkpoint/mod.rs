//! Checkpoints and exactly-once results after a crash, built above timely
//! from its exact progress tracking.
//!
//! Epochs are points of event time on a grid of `--checkpoint-interval-ms`.
//! While epoch `E` is pending, every input holds back the records at or after
//! `E` and its capability stops at `E`. When the probe at the end of the
//! dataflow reaches `E`, every record before `E` has been processed by every
//! operator of every worker, and none at or after it has been sent: the
//! dataflow is quiet at a consistent cut. Each worker then saves its operators'
//! states (`state.rs`), its sources' positions and the records it holds back;
//! each process saves the committed length of its result files. A small
//! control dataflow makes the workers wait until all have written their files
//! (and agree on the next epoch) before any sends past `E`; then each process
//! records `E` in its manifest and prunes old epochs.
//!
//! Resuming (`--resume`), the workers agree on the newest epoch whose files
//! every worker of every process has intact, restore from it, truncate the
//! result files to their committed lengths and go on: rows written after the
//! epoch are written again exactly once, rows before it are kept. The layout
//! may differ from the one that wrote the checkpoint: states are saved in
//! key groups and sources by position in their input (`crate::rescale`,
//! `resume.rs`).

pub mod feed_state;
pub mod resume;
pub mod show;
pub mod state;
pub mod store;

use crate::rescale::layout::RunLayout;
use crate::rescale::parts::SavedParts;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use store::{Layout, Manifest, ProcessFile, WorkerFile};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::{Inspect, Probe};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Input;
use timely::dataflow::{InputHandle, ProbeHandle};

/// Where and how often checkpoints are taken (`[engine]` keys and flags).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// The checkpoint folder; none: no checkpoints.
    pub dir: Option<PathBuf>,
    /// Event time between checkpoints, ms (rounded up to a whole tick).
    pub interval_ms: u64,
    /// Resume from the newest complete checkpoint in `dir`.
    pub resume: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: None,
            interval_ms: 1_000,
            resume: false,
        }
    }
}

/// The parts in which two fingerprints differ, for the refusal message.
pub fn differences(ours: &str, theirs: &str) -> String {
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<serde_json::Value>(ours),
        serde_json::from_str::<serde_json::Value>(theirs),
    ) else {
        return "unreadable".into();
    };
    let keys = [
        "workers",
        "processes",
        "key_groups",
        "tick_ms",
        "max_delay_ms",
        "sources",
        "queries",
    ];
    let differing: Vec<String> = keys
        .iter()
        .filter(|k| a.get(**k) != b.get(**k))
        .map(|k| match (a.get(*k), b.get(*k)) {
            (Some(x), Some(y)) if x.is_number() => format!("{k} ({y} there, {x} here)"),
            _ => k.to_string(),
        })
        .collect();
    differing.join(", ")
}

/// The last epoch process `process` recorded complete in `dir`, if any.
pub fn last_complete_epoch(dir: &std::path::Path, process: usize) -> Option<u64> {
    let layout = Layout { dir: dir.into() };
    store::read_file::<Manifest>(&layout.manifest(process))
        .ok()
        .map(|m| m.epoch)
}

/// The first epoch after `after` not below `at_least`: the next grid point;
/// `u64::MAX` (no more epochs) when there is none.
pub fn next_epoch(after: u64, at_least: u64, interval_ms: u64) -> u64 {
    let from = at_least.max(after.saturating_add(1));
    from.div_ceil(interval_ms).saturating_mul(interval_ms)
}

/// Whether every worker's proposal says some stream's feeds are finished.
fn a_stream_ends(proposals: &[(u64, [bool; 2])]) -> bool {
    (0..2).any(|s| !proposals.is_empty() && proposals.iter().all(|(_, f)| f[s]))
}

/// A message of the control dataflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Control {
    /// The epochs a worker could resume from.
    Usable(Vec<u64>),
    /// A worker's proposal for the next epoch, and which of its feeds (by
    /// stream) have nothing more to send.
    Next(u64, [bool; 2]),
}

/// A fault-injection point of the kill tests: `EDDY_CRASH_AT=STAGE@N[/pP]`
/// kills this process (SIGKILL) at `STAGE` of its `N`th checkpoint (or
/// database sink transaction), on
/// process `P` only when given, on a first attempt only (`EDDY_ATTEMPT` unset or 1).
#[derive(Clone, Debug, PartialEq)]
pub struct CrashPoint {
    pub stage: Stage,
    pub nth: u64,
}

/// Where in a checkpoint a crash is injected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stage {
    /// Halfway through writing a worker's file.
    MidWrite,
    /// Every file written, the manifest not yet.
    BeforeManifest,
    /// The manifest written, nothing released yet.
    AfterManifest,
    /// A database sink's `N`th transaction written, not committed.
    SinkBeforeCommit,
    /// A database sink's `N`th transaction committed, nothing else done.
    SinkAfterCommit,
}

impl CrashPoint {
    /// The crash point asked for this process, if any.
    pub fn from_env(process: usize) -> Option<CrashPoint> {
        let spec = std::env::var("EDDY_CRASH_AT").ok()?;
        if std::env::var("EDDY_ATTEMPT").is_ok_and(|a| a != "1") {
            return None;
        }
        let (point, only) = match spec.split_once("/p") {
            Some((point, p)) => (point, p.parse::<usize>().ok()),
            None => (spec.as_str(), None),
        };
        if only.is_some_and(|p| p != process) {
            return None;
        }
        let (stage, nth) = point.split_once('@')?;
        let stage = match stage {
            "mid-write" => Stage::MidWrite,
            "before-manifest" => Stage::BeforeManifest,
            "after-manifest" => Stage::AfterManifest,
            "sink-before-commit" => Stage::SinkBeforeCommit,
            "sink-after-commit" => Stage::SinkAfterCommit,
            _ => return None,
        };
        Some(CrashPoint {
            stage,
            nth: nth.parse().ok()?,
        })
    }
}

pub fn crash_here() -> ! {
    tracing::warn!("fault injection: killing this process (SIGKILL)");
    // SAFETY: kill(2) on our own pid; no memory is touched.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL is not caught")
}

/// One worker's side of checkpointing: the epoch pending, the control
/// dataflow that lines the workers up, and the files.
pub struct Checkpointer {
    pub layout: Layout,
    /// The layout of this run, recorded in every file.
    run_layout: RunLayout,
    interval_ms: u64,
    fingerprint: String,
    process: usize,
    /// Global index of this worker.
    worker: usize,
    /// Whether this worker writes its process's file and manifest.
    process_leader: bool,
    /// Global indices of this process's workers (for pruning).
    process_workers: Vec<usize>,
    crash: Option<CrashPoint>,
    /// Checkpoints taken by this process in this run.
    taken: u64,
    /// The epoch pending: inputs hold back records at or after it.
    pub limit: u64,
    /// The epoch the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// Bytes this worker wrote for the last checkpoint (with its process's file).
    pub last_bytes: u64,
    input: InputHandle<u64, CapacityContainerBuilder<Vec<Control>>>,
    probe: ProbeHandle<u64>,
    received: Rc<RefCell<Vec<Control>>>,
}

/// What a worker saves at a checkpoint.
pub struct WorkerState {
    pub states: std::collections::BTreeMap<String, SavedParts>,
    pub feeds: std::collections::BTreeMap<String, Vec<u8>>,
    pub start_event_ms: u64,
}

/// What the process leader adds to a worker's checkpoint.
pub struct ProcessState {
    pub out_dir: Option<PathBuf>,
    pub sinks: std::collections::BTreeMap<String, u64>,
    pub counters: std::collections::BTreeMap<String, u64>,
}

impl Checkpointer {
    /// Builds the control dataflow on `worker` (every worker must call this
    /// at the same point of its dataflow construction).
    pub fn new(
        worker: &mut timely::worker::Worker,
        config: &CheckpointConfig,
        fingerprint: String,
        process: usize,
        run_layout: RunLayout,
        tick_ms: u64,
    ) -> anyhow::Result<Self> {
        let process_workers: Vec<usize> =
            (process * run_layout.workers..(process + 1) * run_layout.workers).collect();
        let dir = config.dir.clone().context("checkpoints need a folder")?;
        let received = Rc::new(RefCell::new(Vec::new()));
        let probe = ProbeHandle::new();
        let sink = Rc::clone(&received);
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<Control>>();
            stream
                .broadcast()
                .inspect(move |c: &Control| sink.borrow_mut().push(c.clone()))
                .probe_with(&probe);
            input
        });
        let tick = tick_ms.max(1);
        Ok(Checkpointer {
            layout: Layout { dir },
            run_layout,
            interval_ms: config.interval_ms.max(1).div_ceil(tick) * tick,
            fingerprint,
            process,
            worker: worker.index(),
            process_leader: process_workers.first() == Some(&worker.index()),
            process_workers,
            crash: CrashPoint::from_env(process),
            taken: 0,
            limit: 0,
            resumed_from: None,
            last_bytes: 0,
            input,
            probe,
            received,
        })
    }

    /// The epoch the next [`Checkpointer::take`] saves.
    pub fn pending_epoch(&self) -> u64 {
        self.limit
    }

    /// The oldest complete epoch kept on disk once `newest` is complete
    /// (the store keeps the `KEPT` newest).
    pub fn oldest_kept(&self, newest: u64) -> Option<u64> {
        self.layout
            .epochs()
            .into_iter()
            .filter(|e| *e <= newest)
            .take(store::KEPT)
            .last()
    }

    /// Whether this worker speaks for its process (writes sinks and manifest).
    pub fn is_process_leader(&self) -> bool {
        self.process_leader
    }

    /// The first epoch of a run that starts afresh.
    pub fn start_fresh(&mut self) {
        self.limit = next_epoch(0, 0, self.interval_ms);
    }

    /// Agrees with every worker on the newest epoch all can resume from, and
    /// pends the next one. Returns the agreed epoch.
    pub fn agree_on_resume(
        &mut self,
        worker: &mut timely::worker::Worker,
        usable: &[u64],
    ) -> anyhow::Result<u64> {
        self.input.send(Control::Usable(usable.to_vec()));
        self.input.advance_to(1);
        while self.probe.less_than(&1) {
            worker.step();
        }
        let lists: Vec<Vec<u64>> = self
            .received
            .borrow_mut()
            .drain(..)
            .filter_map(|c| match c {
                Control::Usable(l) => Some(l),
                Control::Next(..) => None,
            })
            .collect();
        let epoch = usable
            .iter()
            .copied()
            .find(|e| lists.iter().all(|l| l.contains(e)))
            .context(
                "no checkpoint epoch is intact on every process; start afresh without --resume",
            )?;
        self.limit = next_epoch(epoch, 0, self.interval_ms);
        self.resumed_from = Some(epoch);
        Ok(epoch)
    }

    /// Resumed, with the feeds restored: if a stream's feeds are finished on
    /// every worker, the checkpoint resumed from was the last one (see
    /// [`Self::take`]), so no further epoch is taken and the stream ends
    /// where it stood, as it did in the run that wrote the checkpoint.
    pub fn agree_on_ended(
        &mut self,
        worker: &mut timely::worker::Worker,
        finished: [bool; 2],
    ) -> anyhow::Result<()> {
        self.input.send(Control::Next(self.limit, finished));
        self.input.advance_to(2);
        while self.probe.less_than(&2) {
            worker.step();
        }
        if a_stream_ends(&self.drain_proposals()) {
            self.limit = u64::MAX;
        }
        Ok(())
    }

    /// The proposals for the next epoch every worker sent since the last drain.
    fn drain_proposals(&self) -> Vec<(u64, [bool; 2])> {
        self.received
            .borrow_mut()
            .drain(..)
            .filter_map(|c| match c {
                Control::Next(n, f) => Some((n, f)),
                Control::Usable(_) => None,
            })
            .collect()
    }

    /// Whether the probe shows the dataflow quiet at the pending epoch (there
    /// is none once every source is done).
    pub fn reached(&self, probe: &ProbeHandle<u64>) -> bool {
        self.limit != u64::MAX && !probe.less_than(&self.limit)
    }

    /// Takes the pending epoch's checkpoint: writes this worker's `states`
    /// (and, from the process leader, `process`), waits for every worker, then
    /// records the epoch and agrees on the next one, which it returns.
    /// `watermark` is this worker's least input watermark, for skipping idle
    /// epochs; `finished` says, per stream, whether its feed has nothing
    /// more to send. Once a stream's feeds are finished on every worker, no
    /// further epoch is taken: the stream's input closes after this one,
    /// and what its end sets off (windows closed by the end, rows at later
    /// times, differential state) happens after the last checkpoint, never
    /// before one that would not hold it.
    pub fn take(
        &mut self,
        worker: &mut timely::worker::Worker,
        saved: WorkerState,
        process: Option<ProcessState>,
        watermark: u64,
        finished: [bool; 2],
    ) -> anyhow::Result<u64> {
        let epoch = self.limit;
        self.taken += 1;
        let crash_at = |stage: Stage| {
            self.crash
                .as_ref()
                .is_some_and(|c| c.stage == stage && c.nth == self.taken)
        };
        let file = WorkerFile {
            epoch,
            worker: self.worker,
            fingerprint: self.fingerprint.clone(),
            layout: self.run_layout,
            states: saved.states,
            feeds: saved.feeds,
            start_event_ms: saved.start_event_ms,
        };
        let mid_write = crash_at(Stage::MidWrite);
        self.last_bytes =
            store::write_file(&self.layout.worker_file(epoch, self.worker), &file, || {
                if mid_write {
                    crash_here()
                }
            })?;
        if let Some(p) = process {
            let file = ProcessFile {
                epoch,
                process: self.process,
                fingerprint: self.fingerprint.clone(),
                layout: self.run_layout,
                out_dir: p.out_dir,
                sinks: p.sinks,
                counters: p.counters,
            };
            self.last_bytes +=
                store::write_file(&self.layout.process_file(epoch, self.process), &file, || {})?;
        }
        // Nobody sends past the epoch before everybody has written its files.
        self.input.send(Control::Next(
            next_epoch(epoch, watermark, self.interval_ms),
            finished,
        ));
        self.input.advance_to(epoch + 1);
        while self.probe.less_than(&(epoch + 1)) {
            worker.step();
        }
        if crash_at(Stage::BeforeManifest) {
            crash_here();
        }
        if self.process_leader {
            let manifest = Manifest {
                epoch,
                fingerprint: self.fingerprint.clone(),
            };
            store::write_file(&self.layout.manifest(self.process), &manifest, || {})?;
            self.layout
                .prune(epoch, self.process, &self.process_workers, &self.run_layout);
        }
        // Only the process leader has written the manifest by now.
        if self.process_leader && crash_at(Stage::AfterManifest) {
            crash_here();
        }
        // The least proposal: no worker skips an epoch another still needs.
        let proposals = self.drain_proposals();
        let next = if a_stream_ends(&proposals) {
            u64::MAX
        } else {
            proposals
                .iter()
                .map(|(n, _)| *n)
                .min()
                .unwrap_or(epoch + self.interval_ms)
        };
        tracing::debug!(
            "worker {}: checkpoint {epoch} taken, next {next}",
            self.worker
        );
        self.limit = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_lie_on_the_grid_and_skip_idle_time() {
        assert_eq!(next_epoch(0, 0, 1_000), 1_000);
        assert_eq!(next_epoch(1_000, 0, 1_000), 2_000);
        assert_eq!(
            next_epoch(1_000, 1_700_000_000_500, 1_000),
            1_700_000_001_000
        );
        assert_eq!(next_epoch(2_000, 2_000, 1_000), 3_000);
        assert_eq!(next_epoch(2_000, u64::MAX, 1_000), u64::MAX);
    }
}
