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
use crate::dashboard::board::{Board, Tap};
use crate::dashboard::{self, Dashboard, RunInfo};
use crate::metrics::{
    spawn_reporter, AdvanceLog, Due, LatencyProbe, Metrics, StreamCounters, Summary, WorkerState,
};
use crate::operators::activity::{activity, Activity};
use crate::operators::alerts::{alert_rows, fire_alerts, Alert};
use crate::operators::bars::{Bar, Bars};
use crate::operators::correlation::{correlate, BarReturns, Correlation};
use crate::operators::ewma::{Ewma, EwmaRow};
use crate::operators::item_counts::{ItemCount, ItemCounts};
use crate::operators::item_totals::{item_totals, ItemTotal};
use crate::operators::ordered::ordered;
use crate::operators::pane_window::window;
use crate::operators::stats::{PriceStats, Stats};
use crate::operators::volatility::{RealisedVolatility, Volatility};
use crate::pipeline::{InteractionSource, Pipeline, TradeSource};
use crate::record::{route_hash, Event, Interaction, Trade};
use crate::sinks::{self, CsvSink, Flush, LateRow, MalformedRow};
use crate::sources::csv_replay::CsvReplay;
use crate::sources::interactions::InteractionGenerator;
use crate::sources::market::MarketGenerator;
use crate::sources::schedule::{Schedule, Timing};
use crate::sources::{Batch, Poll, Source};
use crate::time::{Tick, Watermark};
use anyhow::Context;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::UnorderedHandle;
use timely::dataflow::operators::core::{Exchange, Inspect, Probe, UnorderedInput};
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
}

impl Job {
    /// A single-process job that runs until its sources end.
    pub fn new(pipeline: Pipeline) -> Self {
        Job {
            pipeline,
            stop: Arc::new(AtomicBool::new(false)),
            cluster: None,
        }
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
    late: Option<Arc<CsvSink<LateRow>>>,
    malformed: Option<Arc<CsvSink<MalformedRow>>>,
}

impl Outputs {
    fn create(pipeline: &Pipeline) -> anyhow::Result<Outputs> {
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
                let sink = CsvSink::create(dir, name, header)?;
                self.all.push(Arc::clone(&sink) as Arc<dyn Flush>);
                Ok(Some(sink))
            }
            _ => Ok(None),
        }
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.all.iter().try_for_each(|s| s.flush())
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
    let outputs = Arc::new(Outputs::create(&pipeline)?);
    let workers = pipeline.engine.workers;
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
    let malformed_reported = Arc::new(AtomicU64::new(0));

    let processes = job.cluster.as_ref().map_or(1, |c| c.addresses.len());
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
    let shared = (
        Arc::clone(&pipeline),
        Arc::clone(&outputs),
        Arc::clone(&metrics),
        job.stop,
        malformed_reported,
        board,
    );
    let guards = timely::execute(config, move |worker| {
        let (pipeline, outputs, metrics, stop, reported, board) = shared.clone();
        let shared = WorkerShared {
            pipeline: &pipeline,
            outputs: &outputs,
            metrics: &metrics,
            stop: &stop,
            reported: &reported,
            board: &board,
        };
        run_worker(worker, &shared, start)
    })
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
    let summary = metrics.summary(workers, processes);
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

/// The common start of every worker's clocks.
#[derive(Clone, Copy)]
struct RunStart {
    wall: Instant,
    event_ms: u64,
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
        RunStart { wall, event_ms }
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
    /// The time this input can still send at; none once closed.
    fn time(&self) -> Option<u64> {
        self.cap.as_ref().map(|c| *c.time())
    }

    fn close(&mut self) {
        self.cap = None;
    }

    /// Takes one batch from the source into the dataflow and notes what it
    /// sent in `in_flight`. Returns what the source said.
    fn pump(&mut self, ctx: &FeedContext, in_flight: &mut InFlight) -> anyhow::Result<Poll> {
        if self.cap.is_none() {
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
        if ctx.report_progress {
            if let Some((done, total)) = self.source.progress() {
                counters.progress_done.store(done, Relaxed);
                counters.progress_total.store(total, Relaxed);
            }
        }
        self.send_on_time();
        // Sent in timestamp order: the last record has the latest time.
        if let Some(last) = self.batch.on_time.last() {
            let latest = self.tick.coarsen(last.ts_ms());
            in_flight.sent(self.batch.on_time.len() as u64, latest);
        }
        if poll == Poll::Done {
            self.close();
        }
        Ok(poll)
    }

    /// Sends on-time records at their coarsened event times, then moves the
    /// capability up to the coarsened watermark.
    fn send_on_time(&mut self) {
        let cap = self.cap.as_mut().expect("open feed");
        let tick = self.tick;
        let records = &mut self.batch.on_time;
        if !records.is_empty() {
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
        }
        let watermark_time = tick.coarsen(self.watermark.current());
        if watermark_time > *cap.time() {
            cap.downgrade(&watermark_time);
        }
    }
}

/// What the workers of a process share.
struct WorkerShared<'a> {
    pipeline: &'a Pipeline,
    outputs: &'a Outputs,
    metrics: &'a Arc<Metrics>,
    stop: &'a AtomicBool,
    reported: &'a AtomicU64,
    /// The dashboard's results, when it is on.
    board: &'a Option<Arc<Board>>,
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: &WorkerShared,
    start: RunStart,
) -> anyhow::Result<()> {
    let WorkerShared {
        pipeline,
        outputs,
        metrics,
        stop,
        reported,
        board,
    } = *shared;
    let index = worker.index();
    let peers = worker.peers();
    let engine = &pipeline.engine;
    let probe = ProbeHandle::new();
    let advance_log = Rc::new(RefCell::new(AdvanceLog::default()));
    let due = match engine.timing {
        Timing::RealTime if !matches!(pipeline.sources.trades, Some(TradeSource::Csv(_))) => {
            Due::Schedule {
                start_wall: start.wall,
                start_event_ms: start.event_ms,
                speed: engine.speed,
                max_delay_ms: engine.max_delay_ms,
            }
        }
        _ => Due::InputAdvance(Rc::clone(&advance_log)),
    };
    let latency = LatencyProbe::new(due, Arc::clone(metrics));
    let queries = &pipeline.queries;
    let tick = Tick::new(engine.tick_ms);

    let ((trade_handle, trade_cap), (ix_handle, ix_cap)) = worker.dataflow::<u64, _, _>(|scope| {
        let (trade_input, trades) =
            scope.new_unordered_input::<CapacityContainerBuilder<Vec<Trade>>>();
        let (ix_input, interactions) =
            scope.new_unordered_input::<CapacityContainerBuilder<Vec<Interaction>>>();
        let trades = trades.exchange(|t: &Trade| route_hash(t.symbol.0));
        let q = queries;
        let counters = |name: &str| metrics.query(name);
        if q.bars_1s.enabled || q.corr_60s.enabled {
            let bars = window(
                trades.clone(),
                "bars_1s",
                q.bars_1s.spec(),
                Bars,
                counters("trades/bars_1s"),
                latency.clone(),
            );
            if q.bars_1s.enabled {
                write_and_probe(bars.clone(), outputs.bars.clone(), board, &probe);
            }
            if q.corr_60s.enabled {
                let set = q.corr_60s.symbol_set();
                let returns = ordered(
                    bars,
                    "returns",
                    BarReturns::new(set),
                    counters("bars/returns"),
                );
                let corr = correlate(
                    returns.broadcast(),
                    &q.corr_60s,
                    index,
                    peers,
                    counters("bars/corr_60s"),
                    latency.clone(),
                );
                write_and_probe(corr, outputs.corr.clone(), board, &probe);
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
            );
            write_and_probe(stats, outputs.stats.clone(), board, &probe);
        }
        if q.vol_60s.enabled {
            let logic = RealisedVolatility::new(&q.vol_60s);
            let vol = ordered(trades.clone(), "vol_60s", logic, counters("trades/vol_60s"));
            write_and_probe(vol, outputs.vol.clone(), board, &probe);
        }
        if q.ewma.enabled {
            let ewma = ordered(
                trades.clone(),
                "ewma",
                Ewma::new(&q.ewma),
                counters("trades/ewma"),
            );
            // One row per trade: the per-record latency of the engine.
            let rows_latency = latency.clone();
            let ewma = ewma.inspect_core(move |event| {
                if let Ok((_, rows)) = event {
                    rows_latency.records_emitted(rows.iter().map(|r| r.ts_ms));
                }
            });
            write_and_probe(ewma, outputs.ewma.clone(), board, &probe);
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
                ItemCounts,
                counters("interactions/item_counts_60s"),
                latency.clone(),
            );
            if q.item_counts_60s.enabled {
                write_and_probe(counts.clone(), outputs.item_counts.clone(), board, &probe);
            }
            if q.alerts.enabled {
                let threshold = q.alerts.threshold;
                write_and_probe(
                    alert_rows(counts, threshold),
                    outputs.alerts.clone(),
                    board,
                    &probe,
                );
                if q.alerts.log || board.is_some() {
                    fire_alerts(
                        by_item.clone(),
                        spec.length_ms,
                        threshold,
                        q.alerts.log,
                        board.clone(),
                        counters("interactions/alerts"),
                    );
                }
            }
        }
        if q.activity_60s.enabled {
            let rows = activity(
                interactions.clone(),
                &q.activity_60s,
                tick,
                counters("interactions/activity_60s"),
                latency.clone(),
            );
            write_and_probe(rows, outputs.activity.clone(), board, &probe);
        }
        if q.item_totals.enabled {
            item_totals(
                interactions.clone(),
                tick,
                outputs.item_totals.clone(),
                counters("interactions/item_totals"),
            );
        }
        trades.probe_with(&probe);
        interactions.probe_with(&probe);
        (trade_input, ix_input)
    });

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
    };
    let mut trades = trade_source.map(|source| Feed {
        source,
        handle: trade_handle,
        cap: Some(trade_cap),
        watermark: Watermark::new(engine.max_delay_ms),
        batch: Batch::default(),
        tick,
    });
    let mut interactions = ix_source.map(|source| Feed {
        source,
        handle: ix_handle,
        cap: Some(ix_cap),
        watermark: Watermark::new(engine.max_delay_ms),
        batch: Batch::default(),
        tick,
    });
    // An absent input's capability was dropped with its handle above: it is closed.

    let ctx = FeedContext {
        metrics,
        outputs,
        reported,
        local_index: index % engine.workers,
        report_progress: index == 0,
    };
    let mut in_flight = InFlight::default();
    let gauges = metrics.worker(index % engine.workers);
    let set_state = |state| gauges.iter().for_each(|g| g.set_state(state));
    loop {
        if stop.load(Relaxed) {
            trades.iter_mut().for_each(|f| f.close());
            interactions.iter_mut().for_each(|f| f.close());
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
        let Some(input_time) = input_time else { break };
        worker.step();
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
        let frontier = probe.with_frontier(|f| f.first().copied());
        if let Some(t) = frontier {
            advance_log.borrow_mut().forget_before(t);
        }
        if let Some(g) = gauges {
            g.watermark_ms.store(input_time, Relaxed);
            g.frontier_ms.store(frontier.unwrap_or(input_time), Relaxed);
        }
        if !ready {
            worker.step_or_park(wait);
        }
    }
    while !probe.done() {
        worker.step();
    }
    set_state(WorkerState::Done);
    Ok(())
}

/// Writes a result stream's rows to its sink (if any), shows them on the
/// dashboard (if on) and probes them.
fn write_and_probe<T: serde::Serialize + Clone + 'static>(
    rows: Stream<'_, u64, Vec<T>>,
    sink: Option<Arc<CsvSink<T>>>,
    board: &Option<Arc<Board>>,
    probe: &ProbeHandle<u64>,
) where
    Board: Tap<T>,
{
    let board = board.clone();
    rows.inspect_core(move |event| {
        if let (Some(board), Ok((_, rows))) = (&board, &event) {
            board.rows(rows);
        }
        write_rows(&sink, event)
    })
    .probe_with(probe);
}

fn write_rows<T: serde::Serialize>(
    sink: &Option<Arc<CsvSink<T>>>,
    event: Result<(&timely::dataflow::channels::Stamp<u64>, &Vec<T>), &[u64]>,
) {
    if let (Some(sink), Ok((_, rows))) = (sink, event) {
        if let Err(e) = sink.write_all(rows.iter()) {
            tracing::error!("cannot write results: {e}");
        }
    }
}
