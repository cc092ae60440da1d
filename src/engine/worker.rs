//! One worker's run, in named steps: restore or start (checkpoints), build
//! the dataflow, open the feeds, then drive: pump the sources, step the
//! dataflow, wait for it when too much is in flight (backpressure), and take
//! a checkpoint at each quiet point.

use super::checkpoints::{self, CheckpointPlan};
use super::dataflow::{self, Inputs};
use super::feed::{
    feed_state_name, open_source, Feed, FeedContext, Feeds, SavedFeeds, SourceContext, StreamSource,
};
use super::job::Extensions;
use super::outputs::Outputs;
use super::DEFAULT_START_MS;
use crate::checkpoint::state::StateRegistry;
use crate::checkpoint::Checkpointer;
use crate::ingest::Ingest;
use crate::metrics::{Metrics, WorkerState};
use crate::pipeline::{EngineConfig, InteractionSource, Pipeline, TradeSource};
use crate::probes::{AdvanceLog, Due, LatencyProbe};
use crate::queries::Query;
use crate::record::{Interaction, Trade};
use crate::rescale::parts::RestoredParts;
use crate::sinks::row_sink::RowSinks;
use crate::sources::schedule::{Schedule, Timing};
use crate::time::Tick;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use timely::dataflow::ProbeHandle;

/// What the workers of a process share.
pub struct WorkerShared {
    pub pipeline: Arc<Pipeline>,
    /// The queries every worker builds (built-in and added in code).
    pub queries: Vec<Arc<dyn Query>>,
    pub outputs: Arc<Outputs>,
    pub metrics: Arc<Metrics>,
    pub stop: Arc<AtomicBool>,
    /// Malformed rows reported on the terminal so far.
    pub reported: Arc<AtomicU64>,
    /// Every receiver of result rows (the dashboard's board among them).
    pub sinks: RowSinks,
    pub extensions: Arc<Extensions>,
    pub checkpoints: Option<Arc<CheckpointPlan>>,
    /// The TCP listener's input logs (`--listen`).
    pub ingest: Option<Arc<Ingest>>,
    /// The grid every enabled query's windows end on ([`crate::queries::window_grid_ms`]).
    pub window_grid_ms: Option<u64>,
    /// The event time one timely timestamp spans ([`Pipeline::timestamp_ms`]).
    pub tick: Tick,
}

/// Runs one worker to the end of its inputs.
pub fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: &WorkerShared,
    start: RunStart,
) -> anyhow::Result<()> {
    let engine = &shared.pipeline.engine;
    if engine.measure_traffic {
        shared.metrics.measure_traffic.store(true, Relaxed);
        shared.metrics.traffic.register(worker);
    }
    let (mut checkpointer, restored, start) = restore_or_start(worker, shared, start)?;
    let advance_log = Rc::new(RefCell::new(AdvanceLog::default()));
    let latency = LatencyProbe::new(
        due(&shared.pipeline, start, &advance_log),
        Arc::clone(&shared.metrics.latencies),
    );
    let Restored {
        states: restored,
        feeds: feed_states,
    } = restored;
    let states = StateRegistry::new(checkpointer.is_some(), restored);
    let probe = ProbeHandle::new();
    let inputs = worker
        .dataflow::<u64, _, _>(|scope| dataflow::build(scope, shared, &states, &latency, &probe))?;
    let unclaimed = states.unclaimed();
    if !unclaimed.is_empty() {
        tracing::warn!(
            "checkpointed state no operator took: {}",
            unclaimed.join(", ")
        );
    }
    let mut feeds = open_feeds(worker, shared, inputs, start, checkpointer.as_ref())?;
    feeds.agree(worker)?;
    if let Some(saved) = feed_states {
        feeds.restore(saved, worker.index(), worker.peers())?;
        if let Some(ck) = checkpointer.as_mut() {
            ck.agree_on_ended(worker, feeds.finished())?;
        }
    }
    if let Some(ck) = &checkpointer {
        feeds.release(ck.limit);
    }
    let mut driver = Driver {
        worker,
        shared,
        probe: &probe,
        advance_log: &advance_log,
        states: &states,
        start_event_ms: start.event_ms,
    };
    driver.drive(&mut feeds, checkpointer.as_mut())
}

/// What a worker resumes from: its operators' states and its feeds'.
#[derive(Default)]
struct Restored {
    states: BTreeMap<String, RestoredParts>,
    /// Per stream, the saved feeds it restores from (see `Feeds::restore`).
    feeds: Option<SavedFeeds>,
}

/// With checkpoints: the control dataflow first, then, resuming, the agreed
/// epoch's states (with the result files cut back to it) and the first run's
/// start. Returns the checkpointer, what to restore and the start.
fn restore_or_start(
    worker: &mut timely::worker::Worker,
    shared: &WorkerShared,
    start: RunStart,
) -> anyhow::Result<(Option<Checkpointer>, Restored, RunStart)> {
    let Some(plan) = &shared.checkpoints else {
        return Ok((None, Restored::default(), start));
    };
    let mut ck = Checkpointer::new(
        worker,
        &plan.config,
        plan.fingerprint.clone(),
        plan.process,
        plan.layout,
        shared.tick.ms(),
    )?;
    if !plan.resume {
        ck.start_fresh();
        return Ok((Some(ck), Restored::default(), start));
    }
    let epoch = ck.agree_on_resume(worker, &plan.usable)?;
    let old = plan.epoch(epoch)?;
    if ck.is_process_leader() {
        let (lengths, counters) = plan.process_state(&old);
        if let Some(lengths) = lengths {
            shared.outputs.truncate(&lengths)?;
        }
        shared.metrics.restore_counters(&counters);
    }
    let index = worker.index();
    let restored = Restored {
        states: old.states_for(index),
        feeds: Some(SavedFeeds {
            same_layout: old.same_layout(),
            trades: old.feeds_for(&feed_state_name::<Trade>(), index),
            interactions: old.feeds_for(&feed_state_name::<Interaction>(), index),
        }),
    };
    let start = RunStart::resumed(old.start_event_ms()?, epoch);
    if index == 0 {
        tracing::info!(
            "resuming from the checkpoint of epoch {epoch} (event time ms); \
             the run started at event time {} ms",
            start.event_ms
        );
    }
    drop(old);
    // No worker writes a row before the files are cut back.
    plan.files_ready.wait();
    if ck.is_process_leader() {
        plan.release_checkpoint();
    }
    Ok((Some(ck), restored, start))
}

/// When a window's rows are due, for the latency probe: by the generators'
/// schedule in real time, else when this worker's inputs passed its end.
fn due(pipeline: &Pipeline, start: RunStart, advance_log: &Rc<RefCell<AdvanceLog>>) -> Due {
    let engine = &pipeline.engine;
    match engine.timing {
        Timing::RealTime
            if !matches!(
                pipeline.sources.trades,
                Some(TradeSource::Csv(_) | TradeSource::Kafka(_))
            ) =>
        {
            Due::Schedule {
                start_wall: start.wall,
                start_event_ms: start.due_event_ms,
                speed: engine.speed,
                max_delay_ms: engine.max_delay_ms,
            }
        }
        _ => Due::InputAdvance(Rc::clone(advance_log)),
    }
}

/// Opens this worker's share of each stream's source, as a feed into its input.
fn open_feeds(
    worker: &timely::worker::Worker,
    shared: &WorkerShared,
    inputs: Inputs,
    start: RunStart,
    checkpointer: Option<&Checkpointer>,
) -> anyhow::Result<Feeds> {
    let pipeline = &shared.pipeline;
    let engine = &pipeline.engine;
    let (index, peers) = (worker.index(), worker.peers());
    let schedule = |rate: f64| {
        let span_us = ((engine.batch_records() as f64 / rate) * 1e6) as u64;
        let release_step_ms =
            engine.release_step_ms(shared.window_grid_ms, span_us as f64 / 1000.0);
        Schedule::new(
            engine.timing,
            engine.speed,
            start.event_ms,
            start.wall,
            span_us,
        )
        .released_every(release_step_ms, engine.max_delay_ms)
    };
    let cx = SourceContext {
        engine,
        ingest: &shared.ingest,
        index,
        peers,
        schedule: &schedule,
    };
    // Resuming, the feeds restart at the checkpoint's epoch and then move to
    // the next, sending what they held back.
    let limit = checkpointer.map_or(u64::MAX, |c| c.resumed_from.unwrap_or(c.limit));
    let ext = &shared.extensions;
    let (trade_handle, trade_cap) = inputs.trades;
    let (ix_handle, ix_cap) = inputs.interactions;
    // An absent stream's input is dropped here: it is closed.
    let trades = match &pipeline.sources.trades {
        None => None,
        Some(s) => {
            let plan = s.plan(engine, ext.trade_source.as_ref(), index, peers);
            let source = open_source::<Trade>(plan, &cx)?;
            Some(Feed::new(
                source,
                trade_handle,
                trade_cap,
                engine,
                shared.tick,
                limit,
            ))
        }
    };
    let interactions = match &pipeline.sources.interactions {
        None => None,
        Some(s) => {
            let plan = s.plan(engine, ext.interaction_source.as_ref(), index, peers);
            let source = open_source::<Interaction>(plan, &cx)?;
            Some(Feed::new(
                source,
                ix_handle,
                ix_cap,
                engine,
                shared.tick,
                limit,
            ))
        }
    };
    Ok(Feeds {
        trades,
        interactions,
        in_flight: Default::default(),
    })
}

/// The driver loop of one worker.
struct Driver<'w, 'a> {
    worker: &'w mut timely::worker::Worker,
    shared: &'a WorkerShared,
    probe: &'a ProbeHandle<u64>,
    advance_log: &'a Rc<RefCell<AdvanceLog>>,
    states: &'a StateRegistry,
    start_event_ms: u64,
}

impl Driver<'_, '_> {
    /// Pumps the feeds and steps the dataflow until the inputs are closed and
    /// the dataflow is done.
    fn drive(
        &mut self,
        feeds: &mut Feeds,
        mut checkpointer: Option<&mut Checkpointer>,
    ) -> anyhow::Result<()> {
        let shared = self.shared;
        let index = self.worker.index();
        let engine = &shared.pipeline.engine;
        let ctx = FeedContext {
            metrics: &shared.metrics,
            outputs: &shared.outputs,
            reported: &shared.reported,
            local_index: index % engine.workers,
            report_progress: index == 0,
            align_ms: engine.inflight_ms(),
        };
        let gauges = shared.metrics.worker(index % engine.workers);
        loop {
            if shared.stop.load(Relaxed) {
                feeds.stop();
            }
            // A result file that cannot be written (a full disk) stops the
            // run: no later checkpoint commits it (see sinks::CsvSink).
            if let Some(failed) = shared.outputs.files.failure() {
                return Err(failed);
            }
            let pumped = feeds.pump(&ctx)?;
            let input_time = feeds.input_time();
            self.advance_log
                .borrow_mut()
                .advanced(input_time.unwrap_or(u64::MAX));
            // With checkpoints, a worker whose inputs are closed still takes part
            // in every checkpoint until the whole dataflow is done.
            if input_time.is_none() && (checkpointer.is_none() || self.probe.done()) {
                break;
            }
            self.worker.step();
            if let Some(input_time) = input_time {
                self.wait_for_dataflow(input_time, feeds, engine);
            }
            let frontier = self.probe.with_frontier(|f| f.first().copied());
            if let Some(t) = frontier {
                self.advance_log.borrow_mut().forget_before(t);
            }
            if let Some(g) = gauges {
                let at = input_time.or(frontier).unwrap_or(0);
                g.watermark_ms.store(at, Relaxed);
                g.frontier_ms.store(frontier.unwrap_or(at), Relaxed);
            }
            if let Some(ck) = checkpointer.as_deref_mut() {
                if checkpoints::is_quiet(ck, feeds, frontier, self.probe) {
                    checkpoints::take(
                        ck,
                        shared
                            .checkpoints
                            .as_deref()
                            .expect("checkpoints are planned"),
                        self.worker,
                        self.states,
                        self.start_event_ms,
                        feeds,
                        &shared.outputs,
                        &shared.metrics,
                        shared.ingest.as_deref(),
                    )?;
                    continue;
                }
            }
            // Once the inputs are closed and the dataflow is done, nothing would wake a park.
            let finished = input_time.is_none() && frontier.is_none();
            if !pumped.ready && !finished {
                self.worker.step_or_park(pumped.wait);
            }
        }
        // The inputs are closed; what is left arrives from other workers (or
        // processes), whose messages wake a parked worker: spinning here
        // took the core's time and the shared channels' cache lines from the
        // workers still busy.
        while !self.probe.done() {
            if let Some(failed) = self.shared.outputs.files.failure() {
                return Err(failed);
            }
            self.worker
                .step_or_park(Some(std::time::Duration::from_millis(1)));
        }
        self.set_state(WorkerState::Done);
        Ok(())
    }

    /// Backpressure: bounds the event time and the records in flight behind
    /// the inputs by stepping until the dataflow catches up (see
    /// backpressure.rs). Records at or after the inputs' own time wait for
    /// the inputs to move, so only older ones are waited for.
    fn wait_for_dataflow(&mut self, input_time: u64, feeds: &mut Feeds, engine: &EngineConfig) {
        let bound = input_time.saturating_sub(engine.inflight_ms());
        let mut waited = false;
        loop {
            let probe = self.probe;
            let frontier = probe.with_frontier(|f| f.first().copied());
            let too_much = probe.less_than(&bound)
                || (probe.less_than(&input_time)
                    && feeds.in_flight.outstanding(frontier) > engine.max_inflight_records);
            if !too_much || self.shared.outputs.files.failure().is_some() {
                break;
            }
            if !waited {
                self.set_state(WorkerState::Backpressured);
                waited = true;
            }
            // Parks when nothing is scheduled: what is waited for is often
            // another worker's progress, whose arrival wakes this one.
            self.worker
                .step_or_park(Some(std::time::Duration::from_millis(1)));
        }
        if waited {
            self.set_state(WorkerState::Running);
        }
    }

    fn set_state(&self, state: WorkerState) {
        let index = self.worker.index() % self.shared.pipeline.engine.workers;
        if let Some(g) = self.shared.metrics.worker(index) {
            g.set_state(state);
        }
    }
}

/// The common start of every worker's clocks.
#[derive(Clone, Copy)]
pub struct RunStart {
    pub wall: Instant,
    /// Where the generators start in event time; a resumed run keeps its first start.
    pub event_ms: u64,
    /// The event time due at `wall`, for the real-time latency clock.
    pub due_event_ms: u64,
}

impl RunStart {
    /// `origin_ms`: the wall-clock ms at which a cluster's real-time run starts,
    /// shared by its processes; none means now.
    pub fn now(p: &Pipeline, origin_ms: Option<u64>) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let wall_ms = origin_ms.unwrap_or(now_ms);
        // The wall instant of the origin, so that every process's schedule agrees.
        let wall = Instant::now()
            .checked_sub(Duration::from_millis(now_ms.saturating_sub(wall_ms)))
            .unwrap_or_else(Instant::now);
        let configured = match &p.sources.trades {
            Some(TradeSource::Market(m)) => m.arrivals.start_ms,
            _ => None,
        }
        .or(match &p.sources.interactions {
            Some(InteractionSource::Generator(g)) => g.arrivals.start_ms,
            _ => None,
        });
        let event_ms = p
            .engine
            .start_ms
            .or(configured)
            .unwrap_or(match p.engine.timing {
                Timing::RealTime => wall_ms,
                Timing::AsFast => DEFAULT_START_MS,
            });
        RunStart {
            wall,
            event_ms,
            due_event_ms: event_ms,
        }
    }

    /// A run resumed at checkpoint `epoch`: the generators keep the first
    /// run's start, and the epoch is due now.
    pub fn resumed(first_event_ms: u64, epoch: u64) -> Self {
        RunStart {
            wall: Instant::now(),
            event_ms: first_event_ms,
            due_event_ms: epoch,
        }
    }
}
