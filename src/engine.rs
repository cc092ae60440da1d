//! Runs a pipeline: starts the timely workers, builds the dataflow on each,
//! feeds the sources into it in event time, and collects the measurements.
//!
//! Each worker owns a share of every source (see `sources/`). A batch from a
//! source is split into on-time records, sent into the dataflow at their own
//! coarsened event time through an unordered input, and late or malformed
//! records, written to their files. The input capability then moves up to the
//! coarsened watermark. The driver bounds the event time in flight with a
//! probe at the end of the dataflow, so memory stays bounded when the sources
//! outrun the operators.

use crate::backpressure::InFlight;
use crate::checkpoint::state::StateRegistry;
use crate::checkpoint::{self, CheckpointConfig, Checkpointer, ProcessState};
use crate::dashboard::board::Board;
use crate::dashboard::{self, Dashboard, RunInfo};
use crate::extend::{Extensions, QueryInputs, TradeQuery};
use crate::ingest::Ingest;
use crate::metrics::{
    spawn_reporter, AdvanceLog, Due, LatencyProbe, Metrics, StreamCounters, Summary, WorkerState,
};
use crate::operators::activity::{activity, Activity};
use crate::operators::alerts::{alert_rows, fire_alerts, Alert};
use crate::operators::anomalies::Anomaly;
use crate::operators::bar_forecast::BarForecast;
use crate::operators::bars::{Bar, Bars};
use crate::operators::bot_users::{user_kind_counts, BotUsers};
use crate::operators::correlation::{correlate, BarReturns, Correlation};
use crate::operators::ewma::{Ewma, EwmaRow};
use crate::operators::forecasts::Forecast;
use crate::operators::input_end::input_end;
use crate::operators::item_bursts::ItemBursts;
use crate::operators::item_counts::{ItemCount, KindCountsBy};
use crate::operators::item_forecast::ItemForecast;
use crate::operators::item_totals::{item_totals, ItemTotal};
use crate::operators::ordered::ordered;
use crate::operators::pane_window::window;
use crate::operators::pane_window::WindowSpec;
use crate::operators::price_anomalies::PriceAnomalies;
use crate::operators::stats::{PriceStats, Stats};
use crate::operators::volatility::{RealisedVolatility, Volatility};
use crate::pipeline::{InteractionSource, Pipeline, TradeSource};
use crate::record::{route_hash, Event, Interaction, Trade};
use crate::sinks::row_sink::{RowSink, RowSinks, SinkRow};
use crate::sinks::{self, write_event, CsvSink, Flush, LateRow, MalformedRow};
use crate::sources::anomalies::{TruthRow, TRUTH_HEADER};
use crate::sources::csv_replay::CsvReplay;
use crate::sources::interactions::InteractionGenerator;
use crate::sources::market::MarketGenerator;
use crate::sources::schedule::{Schedule, Timing};
use crate::sources::tcp_log::TcpLog;
use crate::sources::{Batch, Poll, Source};
use crate::time::{Tick, Watermark};
use anyhow::{bail, Context};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::UnorderedHandle;
use timely::dataflow::operators::core::{Concatenate, Exchange, Inspect, Probe, UnorderedInput};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::ActivateCapability;
use timely::dataflow::{ProbeHandle, Stream};

/// Event time of a simulated run's start when the pipeline names none: 2023-11-14.
pub const DEFAULT_START_MS: u64 = 1_700_000_000_000;

/// How many malformed rows are reported on the terminal (all go to malformed.csv).
const MALFORMED_REPORTED: u64 = 5;

/// A pipeline ready to run, with what the command line added.
pub struct Job {
    pub pipeline: Pipeline,
    /// Set to stop the sources early (Ctrl-C); the run then drains and reports.
    pub stop: Arc<AtomicBool>,
    /// This process's place in a cluster; none for a single process.
    pub cluster: Option<ClusterPlace>,
    /// What a program embedding eddy added (see `extend.rs`).
    pub extensions: Extensions,
}

impl Job {
    /// A single-process job that runs until its sources end.
    pub fn new(pipeline: Pipeline) -> Self {
        Job {
            pipeline,
            stop: Arc::new(AtomicBool::new(false)),
            cluster: None,
            extensions: Extensions::default(),
        }
    }

    /// Feeds the trade stream from `make(index, peers)`, one source per worker,
    /// in place of the pipeline's `[sources.trades]`.
    pub fn with_trade_source(
        mut self,
        make: impl Fn(usize, usize) -> anyhow::Result<Box<dyn Source<Trade>>> + Send + Sync + 'static,
    ) -> Self {
        self.pipeline.sources.trades = Some(TradeSource::Custom {});
        self.extensions.trade_source = Some(Arc::new(make));
        self
    }

    /// Hands every result row to `sink` too, as it is computed.
    pub fn with_sink(mut self, sink: Arc<dyn RowSink>) -> Self {
        self.extensions.sinks.push(sink);
        self
    }

    /// Adds a per-symbol operator over the trade stream to every worker's dataflow.
    pub fn with_trade_query(mut self, query: TradeQuery) -> Self {
        self.extensions.trade_queries.push(Arc::new(query));
        self
    }
}

/// One process of a timely cluster: the same command runs on every host,
/// each with its own index into the list of addresses.
#[derive(Clone, Debug)]
pub struct ClusterPlace {
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
    /// Wall-clock ms at which a real-time run starts, shared by all processes.
    pub origin_ms: Option<u64>,
}

impl ClusterPlace {
    /// Reads a hostfile: one `host:port` a line (blank lines and `#` comments skipped).
    pub fn from_hostfile(
        process: usize,
        processes: usize,
        path: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read hostfile {}", path.display()))?;
        let addresses: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        if addresses.len() < processes {
            anyhow::bail!(
                "hostfile {} names {} processes, --processes asks for {processes}",
                path.display(),
                addresses.len()
            );
        }
        if process >= processes {
            anyhow::bail!("--process {process} must be below --processes {processes}");
        }
        Ok(ClusterPlace {
            process,
            addresses: addresses[..processes].to_vec(),
            origin_ms: None,
        })
    }
}

/// Files shared by the workers of this process; `None` where not written.
#[derive(Default)]
struct Outputs {
    dir: Option<PathBuf>,
    all: Vec<Arc<dyn Flush>>,
    bars: Option<Arc<CsvSink<Bar>>>,
    stats: Option<Arc<CsvSink<PriceStats>>>,
    vol: Option<Arc<CsvSink<Volatility>>>,
    corr: Option<Arc<CsvSink<Correlation>>>,
    ewma: Option<Arc<CsvSink<EwmaRow>>>,
    item_counts: Option<Arc<CsvSink<ItemCount>>>,
    activity: Option<Arc<CsvSink<Activity>>>,
    alerts: Option<Arc<CsvSink<Alert>>>,
    item_totals: Option<Arc<CsvSink<ItemTotal>>>,
    anomalies: Option<Arc<CsvSink<Anomaly>>>,
    forecasts: Option<Arc<CsvSink<Forecast>>>,
    late: Option<Arc<CsvSink<LateRow>>>,
    malformed: Option<Arc<CsvSink<MalformedRow>>>,
    /// The labels of the anomalies the generators inject.
    truth: Option<Arc<CsvSink<TruthRow>>>,
    /// Files are reopened to resume from a checkpoint, not created.
    resume: bool,
}

impl Outputs {
    /// Creates the result files, or reopens them to resume (`resume`).
    fn create(
        pipeline: &Pipeline,
        extensions: &Extensions,
        resume: bool,
    ) -> anyhow::Result<Outputs> {
        let Some(dir) = pipeline.output.dir.clone() else {
            return Ok(Outputs::default());
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        let q = &pipeline.queries;
        let trades = pipeline.sources.trades.is_some();
        let interactions = pipeline.sources.interactions.is_some();
        let mut o = Outputs {
            dir: Some(dir),
            resume,
            ..Outputs::default()
        };
        o.bars = o.open(
            trades && q.bars_1s.enabled,
            "bars_1s.csv",
            sinks::BARS_HEADER,
        )?;
        o.stats = o.open(
            trades && q.stats_10s.enabled,
            "stats_10s.csv",
            sinks::STATS_HEADER,
        )?;
        o.vol = o.open(
            trades && q.vol_60s.enabled,
            "vol_60s.csv",
            sinks::VOL_HEADER,
        )?;
        o.corr = o.open(
            trades && q.corr_60s.enabled,
            "corr_60s.csv",
            sinks::CORR_HEADER,
        )?;
        o.ewma = o.open(trades && q.ewma.enabled, "ewma.csv", sinks::EWMA_HEADER)?;
        let counts = interactions && q.item_counts_60s.enabled;
        o.item_counts = o.open(counts, "item_counts_60s.csv", sinks::ITEM_COUNTS_HEADER)?;
        let activity = interactions && q.activity_60s.enabled;
        o.activity = o.open(activity, "activity_60s.csv", sinks::ACTIVITY_HEADER)?;
        o.alerts = o.open(
            interactions && q.alerts.enabled,
            "alerts.csv",
            sinks::ALERTS_HEADER,
        )?;
        let totals = interactions && q.item_totals.enabled;
        o.item_totals = o.open(totals, "item_totals.csv", sinks::ITEM_TOTALS_HEADER)?;
        o.anomalies = o.open(
            q.anomalies.enabled,
            "anomalies.csv",
            sinks::ANOMALIES_HEADER,
        )?;
        o.forecasts = o.open(
            q.forecasts.enabled,
            "forecasts.csv",
            sinks::FORECASTS_HEADER,
        )?;
        let labelled = matches!(&pipeline.sources.trades, Some(TradeSource::Market(m)) if m.anomalies.is_some())
            || matches!(&pipeline.sources.interactions, Some(InteractionSource::Generator(g)) if g.anomalies.is_some());
        o.truth = o.open(labelled, "truth.csv", TRUTH_HEADER)?;
        if let (Some(dir), true) = (&o.dir, trades) {
            for q in &extensions.trade_queries {
                o.all.push(q.open(dir, resume)?);
            }
        }
        o.late = o.open(true, "late.csv", sinks::LATE_HEADER)?;
        o.malformed = o.open(true, "malformed.csv", sinks::MALFORMED_HEADER)?;
        Ok(o)
    }

    fn open<T: serde::Serialize + 'static>(
        &mut self,
        wanted: bool,
        name: &str,
        header: &[&str],
    ) -> anyhow::Result<Option<Arc<CsvSink<T>>>> {
        match (&self.dir, wanted) {
            (Some(dir), true) => {
                let sink = CsvSink::create(dir, name, header, self.resume)?;
                self.all.push(Arc::clone(&sink) as Arc<dyn Flush>);
                Ok(Some(sink))
            }
            _ => Ok(None),
        }
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.all.iter().try_for_each(|s| s.flush())
    }

    /// The length of every file, flushed: what a checkpoint commits.
    fn committed(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.all
            .iter()
            .map(|s| Ok((s.name().to_string(), s.committed_len()?)))
            .collect()
    }

    /// Cuts every file back to the length a checkpoint committed.
    fn truncate(&self, committed: &BTreeMap<String, u64>) -> anyhow::Result<()> {
        for sink in &self.all {
            let len = committed.get(sink.name()).with_context(|| {
                format!(
                    "the checkpoint has no committed length for {}: was it written by this pipeline?",
                    sink.name()
                )
            })?;
            sink.truncate_to(*len)?;
        }
        Ok(())
    }
}

/// Runs the job to its end and returns (and writes) its measurements.
pub fn run(job: Job) -> anyhow::Result<Summary> {
    let pipeline = Arc::new(job.pipeline);
    pipeline.validate().map_err(anyhow::Error::msg)?;
    // Open the files first, so that a bad path fails before any work.
    for (name, path) in csv_paths(&pipeline) {
        std::fs::metadata(&path)
            .with_context(|| format!("cannot open {name} file {}", path.display()))?;
    }
    let workers = pipeline.engine.workers;
    let processes = job.cluster.as_ref().map_or(1, |c| c.addresses.len());
    let process = job.cluster.as_ref().map_or(0, |c| c.process);
    let checkpoints = CheckpointPlan::prepare(&pipeline, processes, process)?.map(Arc::new);
    let resume = checkpoints.as_ref().is_some_and(|c| c.resume);
    let outputs = Arc::new(Outputs::create(&pipeline, &job.extensions, resume)?);
    let metrics = Metrics::new(workers);
    let reporter = pipeline
        .engine
        .status
        .then(|| spawn_reporter(Arc::clone(&metrics), Duration::from_secs(1)));
    if let Some(d) = pipeline.engine.duration_s {
        let stop = Arc::clone(&job.stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(d));
            stop.store(true, Relaxed);
        });
    }
    let start = RunStart::now(&pipeline, job.cluster.as_ref().and_then(|c| c.origin_ms));
    let ingest = match &pipeline.sources.listen {
        Some(_) if processes > 1 => {
            bail!("--listen takes records in a single process; run it without a cluster")
        }
        Some(listen) => {
            let dir = crate::ingest::log_dir(
                listen,
                pipeline.engine.checkpoint.dir.as_deref(),
                outputs.dir.as_deref(),
            )?;
            Some(Ingest::start(
                listen,
                &dir,
                resume,
                workers,
                Arc::clone(&job.stop),
            )?)
        }
        None => None,
    };
    let malformed_reported = Arc::new(AtomicU64::new(0));

    let board = pipeline
        .engine
        .dashboard
        .as_ref()
        .map(|_| Arc::new(Board::new(&pipeline.queries)));
    // Stops serving when the run returns.
    let dashboard = match (&pipeline.engine.dashboard, &board) {
        (Some(address), Some(board)) => Some(serve_dashboard(
            address, &pipeline, processes, &metrics, board,
        )?),
        _ => None,
    };
    let config = match &job.cluster {
        Some(c) if c.addresses.len() > 1 => timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers,
                process: c.process,
                addresses: c.addresses.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        },
        _ if workers == 1 => timely::Config::thread(),
        _ => timely::Config::process(workers),
    };
    // The board is the dashboard's row sink; an embedding program may add its own.
    let sinks: RowSinks = Arc::new(
        board
            .iter()
            .map(|b| Arc::clone(b) as Arc<dyn RowSink>)
            .chain(job.extensions.sinks.iter().cloned())
            .collect(),
    );
    let extensions = Arc::new(job.extensions);
    let shared = WorkerShared {
        pipeline: Arc::clone(&pipeline),
        outputs: Arc::clone(&outputs),
        metrics: Arc::clone(&metrics),
        stop: job.stop,
        reported: malformed_reported,
        board,
        sinks,
        extensions,
        checkpoints,
        ingest: ingest.clone(),
    };
    let guards = timely::execute(config, move |worker| run_worker(worker, &shared, start))
        .map_err(anyhow::Error::msg)?;
    let mut first_error = None;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(panic) => {
                first_error.get_or_insert(anyhow::anyhow!("a worker failed: {panic}"));
            }
        }
    }
    metrics.finished.store(true, Relaxed);
    if let Some(r) = reporter {
        let _ = r.join();
    }
    outputs.flush()?;
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut summary = metrics.summary(workers, processes);
    summary.ingest = ingest.as_ref().map(|i| i.summary());
    if let Some(dir) = &outputs.dir {
        let path = dir.join("metrics.json");
        std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(d) = &dashboard {
        let linger = pipeline.engine.dashboard_linger_s;
        if linger > 0.0 {
            tracing::info!(
                "the run has ended; the dashboard stays up on http://{}/ for {linger} s",
                d.address
            );
            std::thread::sleep(Duration::from_secs_f64(linger));
        }
    }
    Ok(summary)
}

/// The name under which a checkpoint keeps the run's start event time.
const RUN_START_STATE: &str = "run/start_event_ms";

/// What the workers of a process need to take checkpoints and resume.
struct CheckpointPlan {
    config: CheckpointConfig,
    fingerprint: String,
    process: usize,
    /// Global indices of this process's workers.
    process_workers: Vec<usize>,
    resume: bool,
    /// Resuming: the epochs whose files of this process are intact, newest first.
    usable: Vec<u64>,
    /// Resuming: the process's workers wait here until the result files are cut back.
    files_ready: std::sync::Barrier,
}

impl CheckpointPlan {
    /// None when checkpoints are off; resuming, checks the folder first, so
    /// that a checkpoint of another pipeline is refused before any work.
    fn prepare(
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
        let fingerprint = checkpoint::fingerprint(pipeline, processes);
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

/// Serves the dashboard on `address`, or on a free port of the same host when
/// that one is taken (with a warning), and prints where.
fn serve_dashboard(
    address: &str,
    pipeline: &Pipeline,
    processes: usize,
    metrics: &Arc<Metrics>,
    board: &Arc<Board>,
) -> anyhow::Result<Dashboard> {
    let e = &pipeline.engine;
    let info = RunInfo {
        name: pipeline.name.clone(),
        workers: e.workers,
        processes,
        timing: format!("{:?}", e.timing),
        speed: e.speed,
        max_delay_ms: e.max_delay_ms,
        sample_every_ms: dashboard::SAMPLE_EVERY.as_millis() as u64,
    };
    let serve =
        |at: &str| dashboard::start(at, Arc::clone(metrics), Arc::clone(board), info.clone());
    let served = serve(address).or_else(|e| {
        let host = address.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
        let any = format!("{host}:0");
        let served = serve(&any).map_err(|_| e)?;
        tracing::warn!(
            "{address} is taken: serving the dashboard on {} instead",
            served.address
        );
        Ok::<_, anyhow::Error>(served)
    })?;
    tracing::info!(
        "dashboard: http://{}/  (Prometheus: http://{}/metrics)",
        served.address,
        served.address
    );
    Ok(served)
}

fn csv_paths(p: &Pipeline) -> Vec<(&'static str, PathBuf)> {
    let mut paths = Vec::new();
    if let Some(TradeSource::Csv(c)) = &p.sources.trades {
        paths.push(("trades", c.path.clone()));
    }
    if let Some(InteractionSource::Csv(c)) = &p.sources.interactions {
        paths.push(("interactions", c.path.clone()));
    }
    paths
}

/// The input log of a stream received over TCP.
fn listened(
    ingest: &Option<Arc<Ingest>>,
    stream: &str,
) -> anyhow::Result<Arc<crate::ingest::StreamLog>> {
    ingest.as_ref().map(|i| i.log(stream)).with_context(|| {
        format!("the {stream} source is kind = \"tcp\" but [sources.listen] is missing")
    })
}

/// The common start of every worker's clocks.
#[derive(Clone, Copy)]
struct RunStart {
    wall: Instant,
    /// Where the generators start in event time; a resumed run keeps its first start.
    event_ms: u64,
    /// The event time due at `wall`, for the real-time latency clock.
    due_event_ms: u64,
}

impl RunStart {
    /// `origin_ms`: the wall-clock ms at which a cluster's real-time run starts,
    /// shared by its processes; none means now.
    fn now(p: &Pipeline, origin_ms: Option<u64>) -> Self {
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
    fn resumed(first_event_ms: u64, epoch: u64) -> Self {
        RunStart {
            wall: Instant::now(),
            event_ms: first_event_ms,
            due_event_ms: epoch,
        }
    }
}

/// One input of one worker: its source, watermark and capability.
struct Feed<E: Event> {
    source: Box<dyn Source<E>>,
    handle: UnorderedHandle<u64, CapacityContainerBuilder<Vec<E>>>,
    cap: Option<ActivateCapability<u64>>,
    watermark: Watermark,
    batch: Batch<E>,
    tick: Tick,
    /// The pending checkpoint epoch (`u64::MAX` without checkpoints): records
    /// at or after it are held back and the capability stops at it.
    limit: u64,
    /// On-time records at or after `limit`, sent once the epoch is passed.
    held: Vec<E>,
    /// The source is exhausted (or stopped); the feed closes once nothing is held.
    source_done: bool,
}

/// What a checkpoint saves of a feed.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
struct FeedState<E: Event> {
    source: Vec<u8>,
    watermark: Watermark,
    held: Vec<E>,
    source_done: bool,
}

/// What a worker shares with its feeds.
struct FeedContext<'a> {
    metrics: &'a Metrics,
    outputs: &'a Outputs,
    reported: &'a AtomicU64,
    local_index: usize,
    report_progress: bool,
}

impl<E: Event> Feed<E> {
    fn new(
        source: Box<dyn Source<E>>,
        handle: UnorderedHandle<u64, CapacityContainerBuilder<Vec<E>>>,
        cap: ActivateCapability<u64>,
        engine: &crate::pipeline::EngineConfig,
        limit: u64,
    ) -> Self {
        Feed {
            source,
            handle,
            cap: Some(cap),
            watermark: Watermark::new(engine.max_delay_ms),
            batch: Batch::default(),
            tick: Tick::new(engine.tick_ms),
            limit,
            held: Vec::new(),
            source_done: false,
        }
    }

    /// The time this input can still send at; none once closed.
    fn time(&self) -> Option<u64> {
        self.cap.as_ref().map(|c| *c.time())
    }

    /// Whether the feed waits for the pending epoch (or is closed): it reads no more.
    fn at_limit(&self) -> bool {
        self.cap.as_ref().is_none_or(|c| *c.time() >= self.limit)
    }

    /// Stops reading the source (Ctrl-C, --duration); what is held is still sent.
    fn stop(&mut self) {
        self.source_done = true;
        self.settle_capability();
    }

    /// The event time this feed needs the next epoch to pass: its watermark,
    /// or never once its source is done.
    fn next_epoch_from(&self) -> u64 {
        if self.source_done || self.cap.is_none() {
            u64::MAX
        } else {
            self.watermark.current()
        }
    }

    fn save(&self) -> anyhow::Result<Vec<u8>> {
        Ok(bincode::serialize(&FeedState {
            source: self.source.save()?,
            watermark: self.watermark.clone(),
            held: self.held.clone(),
            source_done: self.source_done,
        })?)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let state: FeedState<E> = bincode::deserialize(saved)?;
        self.source
            .restore(&state.source)
            .with_context(|| format!("cannot resume the {} source", E::STREAM))?;
        self.watermark = state.watermark;
        self.held = state.held;
        self.source_done = state.source_done;
        self.settle_capability();
        Ok(())
    }

    /// Takes one batch from the source into the dataflow and notes what it
    /// sent in `in_flight`. Returns what the source said.
    fn pump(&mut self, ctx: &FeedContext, in_flight: &mut InFlight) -> anyhow::Result<Poll> {
        if self.source_done || self.at_limit() {
            return Ok(Poll::Done);
        }
        self.batch.clear();
        let poll = self
            .source
            .next_batch(&mut self.batch, &mut self.watermark)?;
        let counters: &StreamCounters = ctx.metrics.stream(E::STREAM);
        let b = &mut self.batch;
        counters.generated.fetch_add(b.generated, Relaxed);
        counters.ingested.fetch_add(b.on_time.len() as u64, Relaxed);
        ctx.metrics
            .add_worker_ingested(ctx.local_index, b.on_time.len() as u64);
        if !b.late.is_empty() {
            counters.late.fetch_add(b.late.len() as u64, Relaxed);
            if let Some(sink) = &ctx.outputs.late {
                let rows: Vec<LateRow> = b.late.iter().map(LateRow::of).collect();
                sink.write_all(&rows)?;
            }
        }
        if !b.malformed.is_empty() {
            counters
                .malformed
                .fetch_add(b.malformed.len() as u64, Relaxed);
            for m in &b.malformed {
                if ctx.reported.fetch_add(1, Relaxed) < MALFORMED_REPORTED {
                    tracing::warn!(
                        "{}: malformed row at line {}: {}",
                        E::STREAM,
                        m.line,
                        m.error
                    );
                }
            }
            if let Some(sink) = &ctx.outputs.malformed {
                let rows: Vec<MalformedRow> = b
                    .malformed
                    .iter()
                    .map(|m| MalformedRow::of(E::STREAM, m))
                    .collect();
                sink.write_all(&rows)?;
            }
        }
        if let Some(lag) = b.lag_ms {
            ctx.metrics.record_lag(lag);
        }
        if let (Some(sink), false) = (&ctx.outputs.truth, b.truth.is_empty()) {
            sink.write_all(&b.truth)?;
        }
        if ctx.report_progress {
            if let Some((done, total)) = self.source.progress() {
                counters.progress_done.store(done, Relaxed);
                counters.progress_total.store(total, Relaxed);
            }
        }
        let mut records = std::mem::take(&mut self.batch.on_time);
        if self.limit != u64::MAX {
            let (tick, limit) = (self.tick, self.limit);
            let (now, later): (Vec<E>, Vec<E>) = records
                .drain(..)
                .partition(|r| tick.coarsen(r.ts_ms()) < limit);
            self.held.extend(later);
            records = now;
        }
        self.send(&mut records, in_flight);
        self.batch.on_time = records;
        if poll == Poll::Done {
            self.source_done = true;
        }
        self.settle_capability();
        Ok(poll)
    }

    /// Moves to the next epoch: sends the held records before it.
    fn release(&mut self, limit: u64, in_flight: &mut InFlight) {
        self.limit = limit;
        if self.cap.is_none() {
            return;
        }
        let tick = self.tick;
        let (mut now, later): (Vec<E>, Vec<E>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|r| tick.coarsen(r.ts_ms()) < limit);
        self.held = later;
        self.send(&mut now, in_flight);
        self.settle_capability();
    }

    /// Sends records at their coarsened event times (all at or after the capability).
    fn send(&mut self, records: &mut Vec<E>, in_flight: &mut InFlight) {
        if records.is_empty() {
            return;
        }
        let cap = self.cap.as_mut().expect("open feed");
        let tick = self.tick;
        records.sort_by_key(|r| tick.coarsen(r.ts_ms()));
        let mut activated = self.handle.activate();
        let mut rest = &mut records[..];
        while let Some(first) = rest.first() {
            let time = tick.coarsen(first.ts_ms());
            let run = rest
                .iter()
                .take_while(|r| tick.coarsen(r.ts_ms()) == time)
                .count();
            let (now, later) = rest.split_at_mut(run);
            let at = cap.delayed(&time);
            activated.session(&at).give_iterator(now.iter().cloned());
            rest = later;
        }
        // Sorted by time: the last record has the latest.
        let latest = tick.coarsen(records[records.len() - 1].ts_ms());
        in_flight.sent(records.len() as u64, latest);
        records.clear();
    }

    /// Moves the capability up to the coarsened watermark, but not past the
    /// pending epoch; closes the feed once its source is done and nothing is held.
    fn settle_capability(&mut self) {
        if self.source_done && self.held.is_empty() {
            self.cap = None;
        }
        let Some(cap) = self.cap.as_mut() else {
            return;
        };
        let target = if self.source_done {
            self.limit
        } else {
            self.tick.coarsen(self.watermark.current()).min(self.limit)
        };
        if target > *cap.time() {
            cap.downgrade(&target);
        }
    }
}

/// What the workers of a process share.
struct WorkerShared {
    pipeline: Arc<Pipeline>,
    outputs: Arc<Outputs>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    reported: Arc<AtomicU64>,
    /// The dashboard's results, when it is on.
    board: Option<Arc<Board>>,
    /// Every receiver of result rows (the board among them).
    sinks: RowSinks,
    extensions: Arc<Extensions>,
    checkpoints: Option<Arc<CheckpointPlan>>,
    /// The TCP listener's input logs (`--listen`).
    ingest: Option<Arc<Ingest>>,
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: &WorkerShared,
    mut start: RunStart,
) -> anyhow::Result<()> {
    let WorkerShared {
        pipeline,
        outputs,
        metrics,
        stop,
        reported,
        board,
        sinks,
        extensions,
        checkpoints,
        ingest,
    } = shared;
    let index = worker.index();
    let peers = worker.peers();
    let engine = &pipeline.engine;
    let probe = ProbeHandle::new();
    if engine.measure_traffic {
        metrics.measure_traffic.store(true, Relaxed);
        metrics.traffic.register(worker);
    }
    let advance_log = Rc::new(RefCell::new(AdvanceLog::default()));
    // Checkpoints: the control dataflow first, then (resuming) the state to start from.
    let mut checkpointer = None;
    let mut restored = BTreeMap::new();
    if let Some(plan) = checkpoints {
        let mut ck = Checkpointer::new(
            worker,
            &plan.config,
            plan.fingerprint.clone(),
            plan.process,
            plan.process_workers.clone(),
            engine.tick_ms,
        )?;
        if plan.resume {
            let (worker_file, process_file) = ck.agree_on_resume(worker, &plan.usable)?;
            if ck.is_process_leader() {
                outputs.truncate(&process_file.sinks)?;
                metrics.restore_counters(&process_file.counters);
            }
            restored = worker_file.states;
            let first_start = restored
                .remove(RUN_START_STATE)
                .context("the checkpoint lacks the run's start time")?;
            let epoch = ck.resumed_from.expect("agreed on an epoch");
            start = RunStart::resumed(bincode::deserialize(&first_start)?, epoch);
            if index == 0 {
                tracing::info!(
                    "resuming from the checkpoint of epoch {epoch} (event time ms); \
                     the run started at event time {} ms",
                    start.event_ms
                );
            }
            // No worker writes a row before the files are cut back.
            plan.files_ready.wait();
        } else {
            ck.start_fresh();
        }
        checkpointer = Some(ck);
    }
    let due = match engine.timing {
        Timing::RealTime if !matches!(pipeline.sources.trades, Some(TradeSource::Csv(_))) => {
            Due::Schedule {
                start_wall: start.wall,
                start_event_ms: start.due_event_ms,
                speed: engine.speed,
                max_delay_ms: engine.max_delay_ms,
            }
        }
        _ => Due::InputAdvance(Rc::clone(&advance_log)),
    };
    let latency = LatencyProbe::new(due, Arc::clone(metrics));
    let trade_state = restored.remove("feed/trades");
    let ix_state = restored.remove("feed/interactions");
    let states = StateRegistry::new(checkpointer.is_some(), restored);
    let ((trade_handle, trade_cap), (ix_handle, ix_cap)) =
        worker.dataflow::<u64, _, _>(|scope| {
            let outputs = DataflowOutputs {
                files: outputs,
                board,
                sinks,
                probe: &probe,
            };
            build_dataflow(
                scope, pipeline, extensions, &states, &latency, metrics, &outputs,
            )
        })?;
    let unclaimed = states.unclaimed();
    if !unclaimed.is_empty() {
        tracing::warn!(
            "checkpointed state no operator took: {}",
            unclaimed.join(", ")
        );
    }

    let schedule = || {
        let span_us = |rate: f64| ((engine.batch_size as f64 / rate) * 1e6) as u64;
        move |rate: f64| {
            Schedule::new(
                engine.timing,
                engine.speed,
                start.event_ms,
                start.wall,
                span_us(rate),
            )
        }
    };
    let trade_source: Option<Box<dyn Source<Trade>>> = match &pipeline.sources.trades {
        None => None,
        Some(TradeSource::Market(m)) => Some(Box::new(MarketGenerator::new(
            m,
            schedule()(m.arrivals.rate),
            engine.batch_size,
            index,
            peers,
        ))),
        Some(TradeSource::Csv(c)) => Some(Box::new(CsvReplay::<Trade>::open(
            &c.path,
            engine.batch_size,
            index,
            peers,
        )?)),
        Some(TradeSource::Tcp {}) => Some(Box::new(TcpLog::<Trade>::open(
            listened(ingest, "trades")?,
            engine.batch_size,
            index % engine.workers,
            index,
            peers,
        )?)),
        Some(TradeSource::Custom {}) => {
            let make = extensions
                .trade_source
                .as_ref()
                .context("a custom trade source is made in code (Job::with_trade_source)")?;
            Some(make(index, peers)?)
        }
    };
    let ix_source: Option<Box<dyn Source<Interaction>>> = match &pipeline.sources.interactions {
        None => None,
        Some(InteractionSource::Generator(g)) => Some(Box::new(InteractionGenerator::new(
            g,
            schedule()(g.arrivals.rate),
            engine.batch_size,
            index,
            peers,
        ))),
        Some(InteractionSource::Csv(c)) => Some(Box::new(CsvReplay::<Interaction>::open(
            &c.path,
            engine.batch_size,
            index,
            peers,
        )?)),
        Some(InteractionSource::Tcp {}) => Some(Box::new(TcpLog::<Interaction>::open(
            listened(ingest, "interactions")?,
            engine.batch_size,
            index % engine.workers,
            index,
            peers,
        )?)),
    };
    // Resuming, the feeds restart at the checkpoint's epoch and then move to
    // the next, sending what they held back.
    let limit = checkpointer
        .as_ref()
        .map_or(u64::MAX, |c| c.resumed_from.unwrap_or(c.limit));
    let mut trades =
        trade_source.map(|source| Feed::new(source, trade_handle, trade_cap, engine, limit));
    let mut interactions =
        ix_source.map(|source| Feed::new(source, ix_handle, ix_cap, engine, limit));
    // An absent input's capability was dropped with its handle above: it is closed.
    if let (Some(f), Some(saved)) = (trades.as_mut(), &trade_state) {
        f.restore(saved)?;
    }
    if let (Some(f), Some(saved)) = (interactions.as_mut(), &ix_state) {
        f.restore(saved)?;
    }
    let mut in_flight = InFlight::default();
    if let Some(ck) = &checkpointer {
        trades
            .iter_mut()
            .for_each(|f| f.release(ck.limit, &mut in_flight));
        interactions
            .iter_mut()
            .for_each(|f| f.release(ck.limit, &mut in_flight));
    }

    let ctx = FeedContext {
        metrics,
        outputs,
        reported,
        local_index: index % engine.workers,
        report_progress: index == 0,
    };
    let gauges = metrics.worker(index % engine.workers);
    let set_state = |state| gauges.iter().for_each(|g| g.set_state(state));
    loop {
        if stop.load(Relaxed) {
            trades.iter_mut().for_each(|f| f.stop());
            interactions.iter_mut().for_each(|f| f.stop());
        }
        let mut wait: Option<Duration> = None;
        let mut ready = false;
        let mut note = |poll: Poll| match poll {
            Poll::Ready => ready = true,
            Poll::Wait(d) => wait = Some(wait.map_or(d, |w| w.min(d))),
            Poll::Done => {}
        };
        if let Some(f) = trades.as_mut() {
            note(f.pump(&ctx, &mut in_flight)?);
        }
        if let Some(f) = interactions.as_mut() {
            note(f.pump(&ctx, &mut in_flight)?);
        }
        let input_time = [
            trades.as_ref().and_then(|f| f.time()),
            interactions.as_ref().and_then(|f| f.time()),
        ]
        .into_iter()
        .flatten()
        .min();
        advance_log
            .borrow_mut()
            .advanced(input_time.unwrap_or(u64::MAX));
        // With checkpoints, a worker whose inputs are closed still takes part
        // in every checkpoint until the whole dataflow is done.
        if input_time.is_none() && (checkpointer.is_none() || probe.done()) {
            break;
        }
        worker.step();
        if let Some(input_time) = input_time {
            // Bound the event time and the records in flight: wait for the
            // dataflow to catch up (see backpressure.rs).
            let bound = input_time.saturating_sub(engine.max_inflight_ms);
            // Records at or after the inputs' own time wait for the inputs to move,
            // so only older ones are waited for.
            let mut waited = false;
            while probe.less_than(&bound)
                || (probe.less_than(&input_time)
                    && in_flight.outstanding(probe.with_frontier(|f| f.first().copied()))
                        > engine.max_inflight_records)
            {
                if !waited {
                    set_state(WorkerState::Backpressured);
                    waited = true;
                }
                worker.step();
            }
            if waited {
                set_state(WorkerState::Running);
            }
        }
        let frontier = probe.with_frontier(|f| f.first().copied());
        if let Some(t) = frontier {
            advance_log.borrow_mut().forget_before(t);
        }
        if let Some(g) = gauges {
            let at = input_time.or(frontier).unwrap_or(0);
            g.watermark_ms.store(at, Relaxed);
            g.frontier_ms.store(frontier.unwrap_or(at), Relaxed);
        }
        if let Some(ck) = checkpointer.as_mut() {
            let quiet = trades.as_ref().is_none_or(|f| f.at_limit())
                && interactions.as_ref().is_none_or(|f| f.at_limit())
                && frontier.is_some()
                && ck.reached(&probe);
            if quiet {
                let began = Instant::now();
                let mut saved = states.save_all()?;
                saved.insert(RUN_START_STATE.into(), bincode::serialize(&start.event_ms)?);
                if let Some(f) = &trades {
                    saved.insert("feed/trades".into(), f.save()?);
                }
                if let Some(f) = &interactions {
                    saved.insert("feed/interactions".into(), f.save()?);
                }
                let process = if ck.is_process_leader() {
                    Some(ProcessState {
                        sinks: outputs.committed()?,
                        counters: metrics.counters(),
                    })
                } else {
                    None
                };
                let needed = [
                    trades.as_ref().map(|f| f.next_epoch_from()),
                    interactions.as_ref().map(|f| f.next_epoch_from()),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX);
                let next = ck.take(worker, saved, process, needed)?;
                metrics.record_checkpoint(began.elapsed(), ck.last_bytes);
                trades
                    .iter_mut()
                    .for_each(|f| f.release(next, &mut in_flight));
                interactions
                    .iter_mut()
                    .for_each(|f| f.release(next, &mut in_flight));
                continue;
            }
        }
        // Once the inputs are closed and the dataflow is done, nothing would wake a park.
        let finished = input_time.is_none() && frontier.is_none();
        if !ready && !finished {
            worker.step_or_park(wait);
        }
    }
    while !probe.done() {
        worker.step();
    }
    set_state(WorkerState::Done);
    Ok(())
}

type InputPair<E> = (
    UnorderedHandle<u64, CapacityContainerBuilder<Vec<E>>>,
    ActivateCapability<u64>,
);

/// Builds the queries of `pipeline` on the trade and interaction inputs it makes.
fn build_dataflow<'scope>(
    scope: timely::dataflow::Scope<'scope, u64>,
    pipeline: &Pipeline,
    extensions: &Extensions,
    states: &StateRegistry,
    latency: &LatencyProbe,
    metrics: &Arc<Metrics>,
    out: &DataflowOutputs,
) -> anyhow::Result<(InputPair<Trade>, InputPair<Interaction>)> {
    let (outputs, board, probe) = (out.files, out.board, out.probe);
    let index = scope.index();
    let peers = scope.peers();
    let queries = &pipeline.queries;
    let tick = Tick::new(pipeline.engine.tick_ms);
    let (trade_input, trades) = scope.new_unordered_input::<CapacityContainerBuilder<Vec<Trade>>>();
    let (ix_input, interactions) =
        scope.new_unordered_input::<CapacityContainerBuilder<Vec<Interaction>>>();
    let trades_end = input_end(trades.clone(), states)?;
    let interactions_end = input_end(interactions.clone(), states)?;
    let trades = trades.exchange(|t: &Trade| route_hash(t.symbol.0));
    for query in &extensions.trade_queries {
        query.build(QueryInputs {
            trades: &trades,
            end: &trades_end,
            states,
            counters: metrics.query(&format!("trades/{}", query.name())),
            probe,
        })?;
    }
    let q = queries;
    let counters = |name: &str| metrics.query(name);
    // The models' rows, from both streams, go to one file each.
    let mut anomalies = Vec::new();
    let mut forecasts = Vec::new();
    if q.anomalies.enabled {
        anomalies.push(ordered(
            trades.clone(),
            &trades_end,
            "price_anomalies",
            PriceAnomalies::new(&q.anomalies.price),
            counters("trades/price_anomalies"),
            states,
        )?);
    }
    if q.bars_1s.enabled || q.corr_60s.enabled || q.forecasts.enabled {
        let bars = window(
            trades.clone(),
            "bars_1s",
            q.bars_1s.spec(),
            Bars,
            counters("trades/bars_1s"),
            latency.clone(),
            states,
        )?;
        if q.bars_1s.enabled {
            write_and_probe(bars.clone(), outputs.bars.clone(), out);
        }
        if q.forecasts.enabled {
            forecasts.push(ordered(
                bars.clone(),
                &trades_end,
                "bar_forecast",
                BarForecast::new(&q.forecasts),
                counters("bars/forecast"),
                states,
            )?);
        }
        if q.corr_60s.enabled {
            let set = q.corr_60s.symbol_set();
            let returns = ordered(
                bars,
                &trades_end,
                "returns",
                BarReturns::new(set),
                counters("bars/returns"),
                states,
            )?;
            let corr = correlate(
                returns.broadcast(),
                &q.corr_60s,
                index,
                peers,
                counters("bars/corr_60s"),
                latency.clone(),
                states,
            )?;
            write_and_probe(corr, outputs.corr.clone(), out);
        }
    }
    if q.stats_10s.enabled {
        let stats = window(
            trades.clone(),
            "stats_10s",
            q.stats_10s.spec(),
            Stats,
            counters("trades/stats_10s"),
            latency.clone(),
            states,
        )?;
        write_and_probe(stats, outputs.stats.clone(), out);
    }
    if q.vol_60s.enabled {
        let logic = RealisedVolatility::new(&q.vol_60s);
        let vol = ordered(
            trades.clone(),
            &trades_end,
            "vol_60s",
            logic,
            counters("trades/vol_60s"),
            states,
        )?;
        write_and_probe(vol, outputs.vol.clone(), out);
    }
    if q.ewma.enabled {
        let ewma = ordered(
            trades.clone(),
            &trades_end,
            "ewma",
            Ewma::new(&q.ewma),
            counters("trades/ewma"),
            states,
        )?;
        // One row per trade: the per-record latency of the engine.
        let rows_latency = latency.clone();
        let ewma = ewma.inspect_core(move |event| {
            if let Ok((_, rows)) = event {
                rows_latency.records_emitted(rows.iter().map(|r| r.ts_ms));
            }
        });
        write_and_probe(ewma, outputs.ewma.clone(), out);
    }
    let by_item = interactions
        .clone()
        .exchange(|r: &Interaction| route_hash(r.item));
    if q.item_counts_60s.enabled || q.alerts.enabled {
        let spec = q.item_counts_60s.spec();
        let counts = window(
            by_item.clone(),
            "item_counts_60s",
            spec,
            KindCountsBy::items(),
            counters("interactions/item_counts_60s"),
            latency.clone(),
            states,
        )?;
        if q.item_counts_60s.enabled {
            write_and_probe(counts.clone(), outputs.item_counts.clone(), out);
        }
        if q.alerts.enabled {
            let threshold = q.alerts.threshold;
            write_and_probe(alert_rows(counts, threshold), outputs.alerts.clone(), out);
            if q.alerts.log || board.is_some() {
                fire_alerts(
                    by_item.clone(),
                    spec.length_ms,
                    threshold,
                    q.alerts.log,
                    board.clone(),
                    counters("interactions/alerts"),
                    states,
                )?
                .probe_with(probe);
            }
        }
    }
    if q.anomalies.enabled || q.forecasts.enabled {
        let items = &q.anomalies.items.burst;
        let panes = window(
            by_item.clone(),
            "item_panes",
            WindowSpec::tumbling(items.pane_ms),
            KindCountsBy::items(),
            counters("interactions/item_panes"),
            latency.clone(),
            states,
        )?;
        if q.anomalies.enabled {
            anomalies.push(ordered(
                panes.clone(),
                &interactions_end,
                "item_bursts",
                ItemBursts::new(&q.anomalies.items),
                counters("item_panes/bursts"),
                states,
            )?);
        }
        if q.forecasts.enabled {
            forecasts.push(ordered(
                panes,
                &interactions_end,
                "item_forecast",
                ItemForecast::new(&q.forecasts),
                counters("item_panes/forecast"),
                states,
            )?);
        }
    }
    if q.anomalies.enabled {
        let bots = &q.anomalies.bots;
        let by_user = interactions
            .clone()
            .exchange(|r: &Interaction| route_hash(r.user));
        let panes = window(
            by_user,
            "user_panes",
            WindowSpec::tumbling(bots.burst.pane_ms),
            user_kind_counts(),
            counters("interactions/user_panes"),
            latency.clone(),
            states,
        )?;
        anomalies.push(ordered(
            panes,
            &interactions_end,
            "bot_users",
            BotUsers::new(bots),
            counters("user_panes/bots"),
            states,
        )?);
    }
    if !anomalies.is_empty() {
        let rows = scope.concatenate(anomalies);
        let (log, quality) = (q.anomalies.log, Arc::clone(metrics));
        let rows = rows.inspect_core(move |event| {
            if let Ok((_, rows)) = event {
                quality.quality.anomalies(rows);
                if log {
                    for a in rows.iter() {
                        tracing::warn!(
                            "anomaly: {} on {} {} at {} ms (score {:.1})",
                            a.kind.name(),
                            a.stream,
                            a.key,
                            a.ts_ms,
                            a.score
                        );
                    }
                }
            }
        });
        write_and_probe(rows, outputs.anomalies.clone(), out);
    }
    if !forecasts.is_empty() {
        let quality = Arc::clone(metrics);
        let rows = scope.concatenate(forecasts).inspect_core(move |event| {
            if let Ok((_, rows)) = event {
                quality.quality.forecasts(rows);
            }
        });
        write_and_probe(rows, outputs.forecasts.clone(), out);
    }
    if q.activity_60s.enabled {
        let rows = activity(
            interactions.clone(),
            &q.activity_60s,
            tick,
            counters("interactions/activity_60s"),
            latency.clone(),
            states,
        )?;
        write_and_probe(rows, outputs.activity.clone(), out);
    }
    if q.item_totals.enabled {
        item_totals(
            interactions.clone(),
            tick,
            outputs.item_totals.clone(),
            counters("interactions/item_totals"),
            states,
        )?
        .probe_with(probe);
    }
    trades.probe_with(probe);
    interactions.probe_with(probe);
    Ok((trade_input, ix_input))
}

/// Where a worker's result rows go.
struct DataflowOutputs<'a> {
    files: &'a Outputs,
    /// The dashboard's board (also among `sinks`), for the live alerts.
    board: &'a Option<Arc<Board>>,
    sinks: &'a RowSinks,
    probe: &'a ProbeHandle<u64>,
}

/// Writes a result stream's rows to its file (if any), hands them to the row
/// sinks (the dashboard among them) and probes them.
fn write_and_probe<T: serde::Serialize + SinkRow + Clone + 'static>(
    rows: Stream<'_, u64, Vec<T>>,
    file: Option<Arc<CsvSink<T>>>,
    out: &DataflowOutputs,
) {
    let sinks = Arc::clone(out.sinks);
    rows.inspect_core(move |event| {
        if let Ok((_, rows)) = &event {
            for sink in sinks.iter() {
                T::hand_to(sink.as_ref(), rows);
            }
        }
        write_event(&file, event)
    })
    .probe_with(out.probe);
}
