//! The engine measuring itself: record accounting, latency, throughput, lag,
//! CPU and memory, a live status line, and `metrics.json`.
//!
//! Accounting: every source counts the records it took (`generated`), and
//! each is either on time (`ingested` into the dataflow), `late` or `malformed`.
//! Each query counts the records it consumed; `processed` is the least over
//! the queries, and `unaccounted = ingested - processed` must be zero: the loss
//! rate is `unaccounted / generated`.
//!
//! Latency, per window row and per-record row, is recorded by the queries'
//! probes (`probes.rs`) into histograms this module reads.

pub use crate::probes::QueryCounters;
use crate::probes::{latency_histogram, Latencies};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters of one input stream.
#[derive(Default)]
pub struct StreamCounters {
    pub generated: AtomicU64,
    pub ingested: AtomicU64,
    pub late: AtomicU64,
    pub malformed: AtomicU64,
    /// Bytes read and total, for file progress (summed over workers).
    pub progress_done: AtomicU64,
    pub progress_total: AtomicU64,
}

/// What one worker of this process is doing, for the dashboard and `/metrics`.
#[derive(Default)]
pub struct WorkerGauges {
    pub ingested: AtomicU64,
    /// The worker's input time: its coarsened watermark, ms (0 before the first batch).
    pub watermark_ms: AtomicU64,
    /// Event time up to which every result of this worker is out: its probe's frontier, ms.
    pub frontier_ms: AtomicU64,
    state: AtomicU8,
}

/// The phase a worker is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Taking batches from its sources.
    Running,
    /// Waiting for the dataflow to catch up (the in-flight bound).
    Backpressured,
    /// Its sources are done and its dataflow drained.
    Done,
}

impl WorkerGauges {
    pub fn set_state(&self, state: WorkerState) {
        self.state.store(state as u8, Relaxed);
    }

    pub fn state(&self) -> WorkerState {
        match self.state.load(Relaxed) {
            0 => WorkerState::Running,
            1 => WorkerState::Backpressured,
            _ => WorkerState::Done,
        }
    }
}

/// One worker as a snapshot saw it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerSnapshot {
    pub ingested: u64,
    pub watermark_ms: u64,
    pub frontier_ms: u64,
    pub state: WorkerState,
    /// Kafka sources: the lag summed over the partitions this worker reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_lag: Option<i64>,
}

/// A sink that copies results elsewhere (a database): rows written and
/// retries after its server went away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkCounts {
    pub rows: u64,
    pub retries: u64,
}

/// Cumulative figures of this process at one moment, read without stopping
/// the workers: for the dashboard's sampler and the Prometheus endpoint.
pub struct Snapshot {
    pub elapsed_s: f64,
    /// Per stream: generated, ingested, late, malformed.
    pub streams: Vec<(&'static str, StreamSummary)>,
    pub queries: Vec<QuerySummary>,
    /// Records ingested that some query has not consumed yet: in flight while
    /// running, lost if still there at the end.
    pub in_flight: u64,
    /// Window latency, µs, since the start.
    pub latency_us: Histogram<u64>,
    /// Per-record latency (ewma rows), µs, since the start.
    pub record_latency_us: Histogram<u64>,
    /// The generator's latest lag behind its schedule, ms.
    pub generator_lag_ms: f64,
    pub workers: Vec<WorkerSnapshot>,
    pub cpu_s: f64,
    pub rss_bytes: u64,
    pub finished: bool,
    /// Kafka sources' lag per `topic/partition`, messages.
    pub kafka_lag: std::collections::BTreeMap<String, i64>,
    /// Database sinks by kind (`sqlite`, `postgres`).
    pub sinks: std::collections::BTreeMap<String, SinkCounts>,
    /// TCP ingest connections refused or dropped, by reason (none without --listen).
    pub ingest_refused: std::collections::BTreeMap<String, u64>,
    /// Bytes of each stream's TCP input log on disk (none without --listen).
    pub input_log_bytes: std::collections::BTreeMap<String, u64>,
}

impl Snapshot {
    pub fn rows_out(&self) -> u64 {
        self.queries.iter().map(|q| q.rows).sum()
    }

    /// Records taken from every source.
    pub fn generated(&self) -> u64 {
        self.streams.iter().map(|(_, s)| s.generated).sum()
    }

    /// How far the finished results trail the inputs, in event-time ms: the
    /// furthest watermark of any worker minus the least output frontier.
    pub fn watermark_lag_ms(&self) -> u64 {
        let live = || self.workers.iter().filter(|w| w.state != WorkerState::Done);
        let watermark = live().map(|w| w.watermark_ms).max().unwrap_or(0);
        let frontier = live().map(|w| w.frontier_ms).min().unwrap_or(watermark);
        watermark.saturating_sub(frontier)
    }
}

/// Everything one process measures, shared by its workers and the reporter.
pub struct Metrics {
    pub started: Instant,
    pub trades: StreamCounters,
    pub interactions: StreamCounters,
    queries: Mutex<Vec<Arc<QueryCounters>>>,
    workers: Vec<WorkerGauges>,
    /// Window and per-record latencies, recorded by the queries' probes.
    pub latencies: Arc<Latencies>,
    lag_us: Mutex<Histogram<u64>>,
    current_lag_us: AtomicU64,
    pub finished: AtomicBool,
    checkpoints: CheckpointCounters,
    /// Anomalies detected and forecast errors (see `quality.rs`).
    pub quality: Arc<crate::quality::Quality>,
    /// What the workers sent each other, when measured (`traffic.rs`).
    pub traffic: Arc<crate::traffic::Traffic>,
    pub measure_traffic: AtomicBool,
    /// Kafka sources: each partition's lag (log end offset − next offset to
    /// read), as last seen by the worker reading it; keyed `topic/partition`.
    /// (local worker reading it, lag).
    kafka_lag: Mutex<std::collections::BTreeMap<String, (usize, i64)>>,
    sinks: Mutex<std::collections::BTreeMap<String, SinkCounts>>,
    /// The TCP ingest of the run, once started: its refusals are counters.
    pub ingest: std::sync::OnceLock<Arc<crate::ingest::Ingest>>,
}

/// What the checkpoints of this run cost, summed over the process's workers.
#[derive(Default)]
struct CheckpointCounters {
    takes: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    bytes: AtomicU64,
}

/// What checkpoints cost in a run (`metrics.json`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CheckpointSummary {
    /// Checkpoints taken in this run.
    pub epochs: u64,
    /// Time a worker spent on one, from its quiet point to going on
    /// (state encoding, files, fsyncs, waiting for the other workers).
    pub mean_ms: f64,
    pub max_ms: f64,
    /// Bytes written per checkpoint by this process (all its workers' files).
    pub bytes_per_epoch: f64,
}

impl Metrics {
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Metrics {
            started: Instant::now(),
            trades: StreamCounters::default(),
            interactions: StreamCounters::default(),
            queries: Mutex::new(Vec::new()),
            workers: (0..workers).map(|_| WorkerGauges::default()).collect(),
            latencies: Arc::new(Latencies::default()),
            lag_us: Mutex::new(latency_histogram()),
            current_lag_us: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            checkpoints: CheckpointCounters::default(),
            quality: Default::default(),
            traffic: Default::default(),
            measure_traffic: AtomicBool::new(false),
            kafka_lag: Mutex::new(Default::default()),
            sinks: Mutex::new(Default::default()),
            ingest: std::sync::OnceLock::new(),
        })
    }

    pub fn stream(&self, name: &str) -> &StreamCounters {
        if name == "trades" {
            &self.trades
        } else {
            &self.interactions
        }
    }

    /// The counters of a query, shared by all workers of the process.
    pub fn query(&self, name: &str) -> Arc<QueryCounters> {
        let mut queries = self.queries.lock().expect("metrics lock");
        if let Some(q) = queries.iter().find(|q| q.name == name) {
            return Arc::clone(q);
        }
        let q = Arc::new(QueryCounters::new(name));
        queries.push(Arc::clone(&q));
        q
    }

    /// Notes one worker's part of a checkpoint.
    pub fn record_checkpoint(&self, took: Duration, bytes: u64) {
        let c = &self.checkpoints;
        let us = took.as_micros() as u64;
        c.takes.fetch_add(1, Relaxed);
        c.total_us.fetch_add(us, Relaxed);
        c.max_us.fetch_max(us, Relaxed);
        c.bytes.fetch_add(bytes, Relaxed);
    }

    fn checkpoint_summary(&self) -> Option<CheckpointSummary> {
        let c = &self.checkpoints;
        let takes = c.takes.load(Relaxed);
        let workers = self.workers.len().max(1) as u64;
        (takes > 0).then(|| CheckpointSummary {
            epochs: takes / workers,
            mean_ms: c.total_us.load(Relaxed) as f64 / takes as f64 / 1e3,
            max_ms: c.max_us.load(Relaxed) as f64 / 1e3,
            bytes_per_epoch: c.bytes.load(Relaxed) as f64 / (takes / workers).max(1) as f64,
        })
    }

    /// The record and row counters, by name, for a checkpoint.
    pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        let mut all = std::collections::BTreeMap::new();
        for stream in ["trades", "interactions"] {
            let s = self.stream(stream);
            for (what, c) in [
                ("generated", &s.generated),
                ("ingested", &s.ingested),
                ("late", &s.late),
                ("malformed", &s.malformed),
            ] {
                all.insert(format!("{stream}/{what}"), c.load(Relaxed));
            }
        }
        for q in self.queries.lock().expect("metrics lock").iter() {
            all.insert(
                format!("query/{}/consumed", q.name),
                q.consumed.load(Relaxed),
            );
            all.insert(format!("query/{}/rows", q.name), q.rows.load(Relaxed));
        }
        all
    }

    /// Sets the counters to those of a checkpoint (a resumed run goes on counting from them).
    pub fn restore_counters(&self, saved: &std::collections::BTreeMap<String, u64>) {
        for (name, &value) in saved {
            // Query names hold a '/' themselves ("trades/bars_1s"): split at the last one.
            let Some((owner, what)) = name.rsplit_once('/') else {
                continue;
            };
            if let Some(query) = owner.strip_prefix("query/") {
                let q = self.query(query);
                match what {
                    "consumed" => q.consumed.store(value, Relaxed),
                    "rows" => q.rows.store(value, Relaxed),
                    _ => {}
                }
            } else {
                let s = self.stream(owner);
                match what {
                    "generated" => s.generated.store(value, Relaxed),
                    "ingested" => s.ingested.store(value, Relaxed),
                    "late" => s.late.store(value, Relaxed),
                    "malformed" => s.malformed.store(value, Relaxed),
                    _ => {}
                }
            }
        }
    }

    /// The gauges of this process's `local_worker`-th worker.
    pub fn worker(&self, local_worker: usize) -> Option<&WorkerGauges> {
        self.workers.get(local_worker)
    }

    pub fn add_worker_ingested(&self, local_worker: usize, n: u64) {
        if let Some(w) = self.worker(local_worker) {
            w.ingested.fetch_add(n, Relaxed);
        }
    }

    fn stream_summaries(&self) -> Vec<(&'static str, StreamSummary)> {
        let stream = |c: &StreamCounters| StreamSummary {
            generated: c.generated.load(Relaxed),
            ingested: c.ingested.load(Relaxed),
            late: c.late.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
        };
        vec![
            ("trades", stream(&self.trades)),
            ("interactions", stream(&self.interactions)),
        ]
    }

    fn query_summaries(&self) -> Vec<QuerySummary> {
        self.queries
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|q| QuerySummary {
                name: q.name.clone(),
                consumed: q.consumed(),
                rows: q.rows(),
            })
            .collect()
    }

    /// The cumulative figures as they are now.
    /// Notes the consumer lag of Kafka partitions (`topic/partition` → messages).
    /// `worker` is the local index of the worker reading the partitions.
    pub fn set_kafka_lag(&self, worker: usize, lags: &[(String, i64)]) {
        let mut map = self.kafka_lag.lock().expect("metrics lock");
        for (key, lag) in lags {
            map.insert(key.clone(), (worker, *lag));
        }
    }

    fn kafka_lag(&self) -> std::collections::BTreeMap<String, i64> {
        let map = self.kafka_lag.lock().expect("metrics lock");
        map.iter().map(|(k, (_, lag))| (k.clone(), *lag)).collect()
    }

    /// The lag summed over the partitions worker `worker` reads (none if it reads none).
    fn worker_kafka_lag(&self, worker: usize) -> Option<i64> {
        let map = self.kafka_lag.lock().expect("metrics lock");
        let mut lags = map
            .values()
            .filter(|(w, _)| *w == worker)
            .map(|(_, lag)| *lag)
            .peekable();
        lags.peek().is_some().then(|| lags.sum())
    }

    /// Notes rows a database sink committed.
    pub fn add_sink_rows(&self, sink: &str, rows: u64) {
        let mut map = self.sinks.lock().expect("metrics lock");
        map.entry(sink.to_string()).or_default().rows += rows;
    }

    /// Notes a retry of a database sink whose server went away.
    pub fn add_sink_retry(&self, sink: &str) {
        let mut map = self.sinks.lock().expect("metrics lock");
        map.entry(sink.to_string()).or_default().retries += 1;
    }

    fn sinks(&self) -> std::collections::BTreeMap<String, SinkCounts> {
        self.sinks.lock().expect("metrics lock").clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        let streams = self.stream_summaries();
        let queries = self.query_summaries();
        let ingested: u64 = streams.iter().map(|(_, s)| s.ingested).sum();
        let by_name = streams
            .iter()
            .filter(|(_, s)| s.generated > 0)
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect();
        let in_flight = ingested.saturating_sub(processed_of(&by_name, &queries));
        let (cpu_user_s, cpu_system_s, _) = resource_usage();
        Snapshot {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            streams,
            queries,
            in_flight,
            latency_us: self
                .latencies
                .window_us
                .lock()
                .expect("metrics lock")
                .clone(),
            record_latency_us: self
                .latencies
                .record_us
                .lock()
                .expect("metrics lock")
                .clone(),
            generator_lag_ms: self.current_lag_us.load(Relaxed) as f64 / 1e3,
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| WorkerSnapshot {
                    ingested: w.ingested.load(Relaxed),
                    watermark_ms: w.watermark_ms.load(Relaxed),
                    frontier_ms: w.frontier_ms.load(Relaxed),
                    state: w.state(),
                    kafka_lag: self.worker_kafka_lag(i),
                })
                .collect(),
            cpu_s: cpu_user_s + cpu_system_s,
            rss_bytes: current_rss_bytes(),
            kafka_lag: self.kafka_lag(),
            sinks: self.sinks(),
            ingest_refused: self
                .ingest
                .get()
                .map(|i| i.refused_counts())
                .unwrap_or_default(),
            input_log_bytes: self.ingest.get().map(|i| i.log_bytes()).unwrap_or_default(),
            finished: self.finished.load(Relaxed),
        }
    }

    pub fn record_lag(&self, lag_ms: f64) {
        let us = ((lag_ms * 1000.0) as u64).clamp(1, 3_600_000_000);
        self.current_lag_us.store(us, Relaxed);
        self.lag_us
            .lock()
            .expect("metrics lock")
            .saturating_record(us);
    }

    fn totals(&self) -> (u64, u64, u64, u64, u64) {
        let s = [&self.trades, &self.interactions];
        let sum = |f: fn(&StreamCounters) -> &AtomicU64| {
            s.iter().map(|c| f(c).load(Relaxed)).sum::<u64>()
        };
        let rows = self
            .queries
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|q| q.rows())
            .sum();
        (
            sum(|c| &c.generated),
            sum(|c| &c.ingested),
            sum(|c| &c.late),
            sum(|c| &c.malformed),
            rows,
        )
    }

    /// One line of live figures; resets the interval histogram.
    pub fn status_line(&self, previous_in: &mut u64, interval: Duration) -> String {
        let (generated, ingested, late, malformed, rows) = self.totals();
        let rate = (generated - (*previous_in).min(generated)) as f64 / interval.as_secs_f64();
        *previous_in = generated;
        let mut h = self
            .latencies
            .window_interval_us
            .lock()
            .expect("metrics lock");
        let lat = if h.is_empty() {
            "-".to_string()
        } else {
            format!(
                "p50 {:.1} ms  p99 {:.1} ms",
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3
            )
        };
        h.reset();
        let progress = self.file_progress();
        let mut line = format!(
            "[{:>6.1}s] in {} ({:.0}/s)  ingested {}  out {} rows  latency {}  late {}  malformed {}  lag {:.1} ms",
            self.started.elapsed().as_secs_f64(),
            generated,
            rate,
            ingested,
            rows,
            lat,
            late,
            malformed,
            self.current_lag_us.load(Relaxed) as f64 / 1e3
        );
        if let Some((done, total)) = progress {
            let frac = done as f64 / total.max(1) as f64;
            let elapsed = self.started.elapsed().as_secs_f64();
            let eta = if frac > 0.0 {
                elapsed * (1.0 - frac) / frac
            } else {
                f64::NAN
            };
            line.push_str(&format!("  file {:.0}% eta {:.0}s", frac * 100.0, eta));
        }
        line
    }

    fn file_progress(&self) -> Option<(u64, u64)> {
        let s = [&self.trades, &self.interactions];
        let total: u64 = s.iter().map(|c| c.progress_total.load(Relaxed)).sum();
        let done: u64 = s.iter().map(|c| c.progress_done.load(Relaxed)).sum();
        (total > 0).then_some((done, total))
    }

    /// The end-of-run figures.
    pub fn summary(&self, workers: usize, processes: usize) -> Summary {
        let wall = self.started.elapsed().as_secs_f64();
        let (generated, ingested, late, malformed, rows_out) = self.totals();
        let streams: std::collections::BTreeMap<String, StreamSummary> = self
            .stream_summaries()
            .into_iter()
            .filter(|(_, s)| s.generated > 0)
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        let query_summaries = self.query_summaries();
        let processed = processed_of(&streams, &query_summaries);
        let unaccounted = ingested.saturating_sub(processed);
        let lat = self.latencies.window_us.lock().expect("metrics lock");
        let lag = self.lag_us.lock().expect("metrics lock");
        let per_record = self.latencies.record_us.lock().expect("metrics lock");
        let (cpu_user_s, cpu_system_s, peak_rss_bytes) = resource_usage();
        Summary {
            wall_time_s: wall,
            workers,
            processes,
            records: RecordSummary {
                generated,
                ingested,
                processed,
                late,
                malformed,
                unaccounted,
                loss_rate: if generated == 0 {
                    0.0
                } else {
                    unaccounted as f64 / generated as f64
                },
                rows_out,
            },
            streams,
            queries: query_summaries,
            throughput: Throughput {
                records_per_s: generated as f64 / wall.max(1e-9),
                ingested_per_s_per_worker: self
                    .workers
                    .iter()
                    .map(|w| w.ingested.load(Relaxed) as f64 / wall.max(1e-9))
                    .collect(),
                rows_out_per_s: rows_out as f64 / wall.max(1e-9),
            },
            latency_ms: Percentiles::of(&lat),
            generator_lag_ms: (!lag.is_empty()).then(|| Percentiles::of(&lag)),
            record_latency_ms: (!per_record.is_empty()).then(|| Percentiles::of(&per_record)),
            cpu_user_s,
            cpu_system_s,
            peak_rss_bytes,
            latency_histogram: encode(&lat),
            generator_lag_histogram: encode(&lag),
            record_latency_histogram: encode(&per_record),
            recoveries: Vec::new(),
            ingest: None,
            checkpoints: self.checkpoint_summary(),
            quality: self.quality.summary(),
            traffic: self
                .measure_traffic
                .load(Relaxed)
                .then(|| self.traffic.summary()),
            kafka_consumer_lag: self.kafka_lag(),
            sinks: self.sinks(),
            run: None,
            cluster: None,
        }
    }
}

/// The database sinks' counts of every process, added up.
fn merge_sinks(parts: &[Summary]) -> std::collections::BTreeMap<String, SinkCounts> {
    let mut all = std::collections::BTreeMap::<String, SinkCounts>::new();
    for (sink, c) in parts.iter().flat_map(|p| &p.sinks) {
        let sum = all.entry(sink.clone()).or_default();
        sum.rows += c.rows;
        sum.retries += c.retries;
    }
    all
}

type Histograms = (Histogram<u64>, Histogram<u64>, Histogram<u64>);

/// The window latency, generator lag and per-record latency histograms of
/// every process, added up.
fn merged_histograms(parts: &[Summary]) -> anyhow::Result<Histograms> {
    let mut latency = latency_histogram();
    let mut lag = latency_histogram();
    let mut per_record = latency_histogram();
    for p in parts {
        latency.add(decode(&p.latency_histogram)?)?;
        lag.add(decode(&p.generator_lag_histogram)?)?;
        if !p.record_latency_histogram.is_empty() {
            per_record.add(decode(&p.record_latency_histogram)?)?;
        }
    }
    Ok((latency, lag, per_record))
}

/// Records that reached every query of their stream: for each stream, the
/// least count any of its queries consumed (its ingested count when it has none).
fn processed_of(
    streams: &std::collections::BTreeMap<String, StreamSummary>,
    queries: &[QuerySummary],
) -> u64 {
    streams
        .iter()
        .map(|(name, s)| {
            let prefix = format!("{name}/");
            queries
                .iter()
                .filter(|q| q.name.starts_with(&prefix))
                .map(|q| q.consumed)
                .min()
                .unwrap_or(s.ingested)
        })
        .sum()
}

/// Percentiles of a µs histogram, in ms.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let q = |x: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(x) as f64 / 1e3
            }
        };
        Percentiles {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1e3
            },
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RecordSummary {
    pub generated: u64,
    pub ingested: u64,
    pub processed: u64,
    pub late: u64,
    pub malformed: u64,
    pub unaccounted: u64,
    pub loss_rate: f64,
    pub rows_out: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StreamSummary {
    pub generated: u64,
    pub ingested: u64,
    pub late: u64,
    pub malformed: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct QuerySummary {
    pub name: String,
    pub consumed: u64,
    pub rows: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Throughput {
    pub records_per_s: f64,
    pub ingested_per_s_per_worker: Vec<f64>,
    pub rows_out_per_s: f64,
}

/// What `metrics.json` holds.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Summary {
    pub wall_time_s: f64,
    pub workers: usize,
    pub processes: usize,
    pub records: RecordSummary,
    pub streams: std::collections::BTreeMap<String, StreamSummary>,
    pub queries: Vec<QuerySummary>,
    pub throughput: Throughput,
    pub latency_ms: Percentiles,
    pub generator_lag_ms: Option<Percentiles>,
    /// Per-record output latency (ewma.csv rows): emission minus the moment
    /// the record's ts + max_delay was reached.
    #[serde(default)]
    pub record_latency_ms: Option<Percentiles>,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// The largest peak RSS of any process.
    pub peak_rss_bytes: u64,
    /// The latency and lag histograms (HdrHistogram V2, deflated, base64), so
    /// that the summaries of a cluster's processes merge exactly.
    pub latency_histogram: String,
    pub generator_lag_histogram: String,
    #[serde(default)]
    pub record_latency_histogram: String,
    /// `eddy cluster --restart-on-failure`: the failures it recovered from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<Recovery>,
    /// `--listen`: what came in over TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<crate::ingest::IngestSummary>,
    /// With --checkpoint-dir: what the checkpoints cost (process 0's, in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointSummary>,
    /// What the anomaly detectors and forecasters produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::quality::QualitySummary>,
    /// With --measure-traffic: what the workers sent each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::traffic::TrafficSummary>,
    /// Kafka sources: each partition's consumer lag at the end, `topic/partition` → messages.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub kafka_consumer_lag: std::collections::BTreeMap<String, i64>,
    /// Database sinks: rows committed and retries, by kind (summed over processes).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sinks: std::collections::BTreeMap<String, SinkCounts>,
    /// Which run these results belong to, so that `eddy merge` puts
    /// together only the folders of one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunIdentity>,
    /// In a cluster: its generation, the peer timeout and the heartbeat's cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
}

/// The run a result folder belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunIdentity {
    /// The pipeline's fingerprint: what a checkpoint is checked against.
    pub pipeline: String,
    pub processes: usize,
    /// The processes whose results the folder holds: one, or all once merged.
    pub process: Vec<usize>,
    /// The cluster's generation (process 0's start count); none for a single process.
    pub generation: Option<u64>,
}

/// A cluster process's view of its peers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClusterStats {
    pub generation: u64,
    pub peer_timeout_s: f64,
    pub peer_wait_s: f64,
    pub heartbeat_interval_ms: u64,
    /// Heartbeat payload bytes (one a beat; TCP/IP adds about 66 a beat).
    pub heartbeat_bytes_sent: u64,
    pub heartbeat_bytes_received: u64,
}

/// A failure `eddy cluster --restart-on-failure` recovered from.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Recovery {
    /// The process that died first, and how.
    pub failed_process: usize,
    pub status: String,
    /// The checkpoint epoch (event time ms) the restarted processes resumed from.
    pub resumed_epoch: Option<u64>,
    /// From noticing the failure to the restarted processes' first new
    /// complete checkpoint (or their successful end, if that came first).
    pub recovery_s: f64,
}

fn encode(h: &Histogram<u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("histograms serialise to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A histogram as `encode` wrote it into metrics.json.
pub fn decode(text: &str) -> anyhow::Result<Histogram<u64>> {
    use base64::Engine;
    use hdrhistogram::serialization::Deserializer;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("bad histogram in metrics.json: {e:?}"))
}

impl Summary {
    /// The summary of a whole cluster from its processes' summaries: counts
    /// add up, histograms merge, wall time is the longest.
    pub fn merge(parts: &[Summary]) -> anyhow::Result<Summary> {
        let first = parts
            .first()
            .ok_or_else(|| anyhow::anyhow!("no process summaries to merge"))?;
        let (latency, lag, per_record) = merged_histograms(parts)?;
        let sum = |f: fn(&Summary) -> u64| parts.iter().map(f).sum::<u64>();
        let wall = parts.iter().map(|p| p.wall_time_s).fold(0.0, f64::max);
        let records = RecordSummary {
            generated: sum(|p| p.records.generated),
            ingested: sum(|p| p.records.ingested),
            processed: 0,
            late: sum(|p| p.records.late),
            malformed: sum(|p| p.records.malformed),
            unaccounted: 0,
            loss_rate: 0.0,
            rows_out: sum(|p| p.records.rows_out),
        };
        let mut streams = first.streams.clone();
        for p in &parts[1..] {
            for (name, s) in &p.streams {
                let e = streams.entry(name.clone()).or_insert(StreamSummary {
                    generated: 0,
                    ingested: 0,
                    late: 0,
                    malformed: 0,
                });
                e.generated += s.generated;
                e.ingested += s.ingested;
                e.late += s.late;
                e.malformed += s.malformed;
            }
        }
        let mut queries = first.queries.clone();
        for p in &parts[1..] {
            for q in &p.queries {
                match queries.iter_mut().find(|m| m.name == q.name) {
                    Some(m) => {
                        m.consumed += q.consumed;
                        m.rows += q.rows;
                    }
                    None => queries.push(q.clone()),
                }
            }
        }
        Ok(Summary {
            wall_time_s: wall,
            workers: first.workers,
            processes: parts.len(),
            throughput: Throughput {
                records_per_s: records.generated as f64 / wall.max(1e-9),
                ingested_per_s_per_worker: parts
                    .iter()
                    .flat_map(|p| {
                        p.throughput
                            .ingested_per_s_per_worker
                            .iter()
                            .map(|r| r * p.wall_time_s / wall.max(1e-9))
                    })
                    .collect(),
                rows_out_per_s: records.rows_out as f64 / wall.max(1e-9),
            },
            records: {
                // Records cross processes in the exchanges: account over the whole cluster.
                let processed = processed_of(&streams, &queries);
                let unaccounted = records.ingested.saturating_sub(processed);
                RecordSummary {
                    processed,
                    unaccounted,
                    loss_rate: if records.generated == 0 {
                        0.0
                    } else {
                        unaccounted as f64 / records.generated as f64
                    },
                    ..records
                }
            },
            streams,
            queries,
            latency_ms: Percentiles::of(&latency),
            generator_lag_ms: (!lag.is_empty()).then(|| Percentiles::of(&lag)),
            record_latency_ms: (!per_record.is_empty()).then(|| Percentiles::of(&per_record)),
            cpu_user_s: parts.iter().map(|p| p.cpu_user_s).sum(),
            cpu_system_s: parts.iter().map(|p| p.cpu_system_s).sum(),
            peak_rss_bytes: parts.iter().map(|p| p.peak_rss_bytes).max().unwrap_or(0),
            latency_histogram: encode(&latency),
            generator_lag_histogram: encode(&lag),
            record_latency_histogram: encode(&per_record),
            recoveries: Vec::new(),
            ingest: None,
            checkpoints: parts.first().and_then(|p| p.checkpoints.clone()),
            quality: parts.iter().any(|p| p.quality.is_some()).then(|| {
                crate::quality::QualitySummary::merge(parts.iter().flat_map(|p| &p.quality))
            }),
            traffic: parts.iter().any(|p| p.traffic.is_some()).then(|| {
                crate::traffic::TrafficSummary::merge(parts.iter().flat_map(|p| &p.traffic))
            }),
            kafka_consumer_lag: parts
                .iter()
                .flat_map(|p| p.kafka_consumer_lag.clone())
                .collect(),
            sinks: merge_sinks(parts),
            run: None,
            cluster: None,
        })
    }

    /// A few lines for the terminal at the end of a run.
    pub fn report(&self) -> String {
        let r = &self.records;
        format!(
            "eddy: {:.2} s, {} worker(s) x {} process(es)\n  records: generated {}  ingested {}  processed {}  late {}  malformed {}  unaccounted {} (loss rate {})\n  throughput: {:.0} records/s  rows out {}\n  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} windows)\n  cpu {:.2} s user + {:.2} s system, peak RSS {:.1} MiB",
            self.wall_time_s,
            self.workers,
            self.processes,
            r.generated,
            r.ingested,
            r.processed,
            r.late,
            r.malformed,
            r.unaccounted,
            r.loss_rate,
            self.throughput.records_per_s,
            r.rows_out,
            self.latency_ms.p50,
            self.latency_ms.p90,
            self.latency_ms.p99,
            self.latency_ms.p999,
            self.latency_ms.max,
            self.latency_ms.count,
            self.cpu_user_s,
            self.cpu_system_s,
            self.peak_rss_bytes as f64 / (1 << 20) as f64
        ) + &self
            .record_latency_ms
            .as_ref()
            .map(|p| {
                format!(
                    "\n  per-record latency ms (ewma rows): p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    p.p50, p.p99, p.p999, p.max
                )
            })
            .unwrap_or_default()
            + &self
                .recoveries
                .iter()
                .map(|r| {
                    format!(
                        "\n  recovered: process {} died ({}); all restarted from epoch {}, back in {:.2} s",
                        r.failed_process,
                        r.status,
                        r.resumed_epoch.map_or("none".into(), |e| e.to_string()),
                        r.recovery_s
                    )
                })
                .collect::<String>()
            + &self
                .checkpoints
                .as_ref()
                .map(|c| {
                    format!(
                        "\n  checkpoints: {} taken, {:.1} ms each (max {:.1} ms), {:.0} KiB each",
                        c.epochs,
                        c.mean_ms,
                        c.max_ms,
                        c.bytes_per_epoch / 1024.0
                    )
                })
                .unwrap_or_default()
    }
}

/// (user CPU s, system CPU s, peak RSS bytes) of this process.
pub fn resource_usage() -> (f64, f64, u64) {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // ru_maxrss is in KiB on Linux.
    (
        secs(usage.ru_utime),
        secs(usage.ru_stime),
        usage.ru_maxrss as u64 * 1024,
    )
}

/// The resident set size of this process now (not its peak), from /proc.
pub fn current_rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
}

/// Prints the status line every `every` until the run finishes.
pub fn spawn_reporter(metrics: Arc<Metrics>, every: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut previous = 0;
        let mut last = Instant::now();
        while !metrics.finished.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= every && !metrics.finished.load(Relaxed) {
                eprintln!("{}", metrics.status_line(&mut previous, last.elapsed()));
                last = Instant::now();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_lag_is_summed_per_worker_over_the_partitions_it_reads() {
        let m = Metrics::new(3);
        m.set_kafka_lag(1, &[("t/0".into(), 5), ("t/3".into(), 7)]);
        m.set_kafka_lag(2, &[("t/1".into(), 2)]);
        m.set_kafka_lag(1, &[("t/0".into(), 1)]);
        let lags: Vec<Option<i64>> = m.snapshot().workers.iter().map(|w| w.kafka_lag).collect();
        assert_eq!(lags, [None, Some(8), Some(2)]);
        assert_eq!(m.snapshot().kafka_lag["t/3"], 7);
    }

    #[test]
    fn sink_counts_add_up_per_sink_and_over_processes() {
        let m = Metrics::new(1);
        m.add_sink_rows("sqlite", 10);
        m.add_sink_rows("sqlite", 5);
        m.add_sink_retry("postgres");
        let snapshot = m.snapshot();
        assert_eq!(
            snapshot.sinks["sqlite"],
            SinkCounts {
                rows: 15,
                retries: 0
            }
        );
        assert_eq!(
            snapshot.sinks["postgres"],
            SinkCounts {
                rows: 0,
                retries: 1
            }
        );
        let mut a = m.summary(1, 2);
        a.sinks = snapshot.sinks.clone();
        let merged = merge_sinks(&[a.clone(), a]);
        assert_eq!(merged["sqlite"].rows, 30);
        assert_eq!(merged["postgres"].retries, 2);
    }

    #[test]
    fn counters_survive_a_checkpoint_round_trip() {
        let m = Metrics::new(1);
        m.stream("trades").ingested.store(7, Relaxed);
        m.stream("interactions").late.store(3, Relaxed);
        let bars = m.query("trades/bars_1s");
        bars.consumed.store(11, Relaxed);
        bars.rows.store(5, Relaxed);
        let saved = m.counters();

        let resumed = Metrics::new(1);
        resumed.restore_counters(&saved);
        assert_eq!(resumed.counters(), saved);
        assert_eq!(resumed.query("trades/bars_1s").consumed.load(Relaxed), 11);
        assert_eq!(resumed.stream("interactions").late.load(Relaxed), 3);
    }
}
