//! Runs a pipeline: starts the timely workers, builds the dataflow on each,
//! feeds the sources into it in event time, and collects the measurements.
//!
//! The phases, one file each: `job.rs` (what a run is made of), `outputs.rs`
//! (the files it writes), `dataflow.rs` (the queries built on the inputs, in
//! a loop that names no query), `feed.rs` (sources into inputs, watermarks),
//! `worker.rs` (one worker's steps: restore or start, build, open the feeds,
//! drive), `checkpoints.rs` (the engine's side of checkpoints), `gather.rs`
//! (the sources' agreement on how they split their input). This file
//! starts the process's services (files, metrics, dashboard, TCP ingest) and
//! the workers, and gathers their results.

mod checkpoints;
mod dataflow;
mod feed;
mod gather;
mod job;
mod outputs;
mod worker;

pub use job::{ClusterPlace, Extensions, Job, SourceFactory};

use crate::dashboard::board::Board;
use crate::dashboard::{self, Dashboard, RunInfo};
use crate::ingest::Ingest;
use crate::metrics::{spawn_reporter, Metrics, Summary};
use crate::pipeline::{InteractionSource, Pipeline, TradeSource};
use crate::queries::Query;
use crate::sinks::row_sink::{RowSink, RowSinks};
use crate::time::Tick;
use anyhow::{bail, Context};
use checkpoints::CheckpointPlan;
use outputs::Outputs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use worker::{run_worker, RunStart, WorkerShared};

/// Event time of a simulated run's start when the pipeline names none: 2023-11-14.
pub const DEFAULT_START_MS: u64 = 1_700_000_000_000;

/// Runs the job to its end and returns (and writes) its measurements.
pub fn run(job: Job) -> anyhow::Result<Summary> {
    let pipeline = Arc::new(job.pipeline.with_run_defaults());
    let queries = queries_of(&pipeline, &job.extensions)?;
    check_input_files(&pipeline)?;
    let workers = pipeline.engine.workers;
    let processes = job.cluster.as_ref().map_or(1, |c| c.addresses.len());
    let process = job.cluster.as_ref().map_or(0, |c| c.process);
    let checkpoints = CheckpointPlan::prepare(&pipeline, processes, process)?.map(Arc::new);
    let resume = checkpoints.as_ref().is_some_and(|c| c.resume);
    let reopen = checkpoints.as_ref().is_some_and(|c| c.reopens_files());
    let outputs = Arc::new(Outputs::create(&pipeline, &queries, reopen)?);
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
    let ingest = start_ingest(&pipeline, processes, &outputs, resume, &job.stop)?;
    let ingest = register_ingest(&metrics, ingest);
    let copiers = start_result_copiers(
        &pipeline,
        &outputs,
        &queries,
        (process, workers),
        checkpoints.as_deref(),
        &metrics,
        &job.stop,
    )?;
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
    // The board and the models' tallies are row sinks; an embedding program may add its own.
    let sinks: RowSinks = Arc::new(
        board
            .iter()
            .map(|b| Arc::clone(b) as Arc<dyn RowSink>)
            .chain([Arc::clone(&metrics.quality) as Arc<dyn RowSink>])
            .chain(job.extensions.sinks.iter().cloned())
            .collect(),
    );
    let window_grid_ms = crate::queries::window_grid_ms(&queries, &pipeline.queries);
    let shared = WorkerShared {
        pipeline: Arc::clone(&pipeline),
        queries,
        outputs: Arc::clone(&outputs),
        metrics: Arc::clone(&metrics),
        stop: job.stop,
        reported: Arc::new(AtomicU64::new(0)),
        sinks,
        extensions: Arc::new(job.extensions),
        checkpoints,
        ingest: ingest.clone(),
        window_grid_ms,
        tick: Tick::new(pipeline.timestamp_ms(window_grid_ms)),
    };
    let (network, membership) = communication(job.cluster.as_ref(), &pipeline, resume)?;
    let guards = timely::execute::execute_from(
        network.0,
        network.1,
        timely::WorkerConfig::default(),
        move |worker| run_worker(worker, &shared, start),
    )
    .map_err(anyhow::Error::msg)?;
    let first_error = guards.join().into_iter().find_map(|result| match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(panic) => Some(anyhow::anyhow!("a worker failed: {panic}")),
    });
    membership.finish();
    metrics.finished.store(true, Relaxed);
    if let Some(r) = reporter {
        let _ = r.join();
    }
    outputs.flush()?;
    if let Some(e) = first_error {
        return Err(e);
    }
    outputs.finish()?;
    join_result_copiers(copiers)?;
    outputs.after_copiers()?;
    let mut summary = metrics.summary(workers, processes);
    summary.ingest = ingest.as_ref().map(|i| i.summary());
    membership.record(&mut summary);
    if let Some(dir) = &outputs.dir {
        let path = dir.join("metrics.json");
        std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(d) = &dashboard {
        linger(&pipeline, d);
    }
    Ok(summary)
}

/// The run's queries: the enabled built-in ones and those added in code,
/// each only when a source of a stream it reads is present.
fn queries_of(pipeline: &Pipeline, extensions: &Extensions) -> anyhow::Result<Vec<Arc<dyn Query>>> {
    pipeline.validate().map_err(anyhow::Error::msg)?;
    let added: Vec<&str> = extensions.queries.iter().map(|q| q.id()).collect();
    let mut queries =
        crate::queries::enabled(&pipeline.queries, &added).map_err(anyhow::Error::msg)?;
    for q in &extensions.queries {
        if queries.iter().any(|b| b.id() == q.id()) {
            bail!(
                "a query added in code reuses the id {:?} of a built-in one",
                q.id()
            );
        }
    }
    queries.extend(extensions.queries.iter().cloned());
    queries.retain(|q| dataflow::runs(q.as_ref(), pipeline));
    Ok(queries)
}

/// timely's allocators and the guard that keeps its network threads alive.
type Allocators = (
    Vec<timely::communication::AllocatorBuilder>,
    Box<dyn std::any::Any + Send>,
);

/// This process's place in its run: which run, and in a cluster its heartbeat.
struct Membership {
    fingerprint: String,
    processes: usize,
    process: usize,
    /// In a cluster: the heartbeat, the generation and the wait for peers.
    cluster: Option<(crate::cluster::heartbeat::Heartbeat, u64, Duration)>,
}

impl Membership {
    /// The workers have finished: peers leaving now are not lost.
    fn finish(&self) {
        if let Some((heartbeat, _, _)) = &self.cluster {
            heartbeat.finish();
        }
    }

    /// metrics.json's `run` and `cluster`.
    fn record(&self, summary: &mut crate::metrics::Summary) {
        summary.run = Some(crate::metrics::RunIdentity {
            pipeline: self.fingerprint.clone(),
            processes: self.processes,
            process: vec![self.process],
            generation: self.cluster.as_ref().map(|(_, g, _)| *g),
        });
        summary.cluster = self
            .cluster
            .as_ref()
            .map(|(h, generation, wait)| h.stats(*generation, *wait));
    }
}

/// The communication of this process: one thread, threads, or a cluster
/// (formed by `cluster::sockets`, with a handshake and a heartbeat).
fn communication(
    cluster: Option<&ClusterPlace>,
    pipeline: &Pipeline,
    resume: bool,
) -> anyhow::Result<(Allocators, Membership)> {
    let workers = pipeline.engine.workers;
    let processes = cluster.map_or(1, |c| c.addresses.len());
    let mut membership = Membership {
        fingerprint: pipeline.run_fingerprint(processes),
        processes,
        process: cluster.map_or(0, |c| c.process),
        cluster: None,
    };
    let allocators = match cluster {
        Some(c) if processes > 1 => {
            let identity = crate::cluster::handshake::Identity {
                me: c.process,
                processes,
                fingerprint: membership.fingerprint.clone(),
                secret: c.options.secret.clone().unwrap_or_default(),
                resuming: resume,
            };
            let joined = crate::cluster::sockets::join(
                &c.addresses,
                identity,
                workers,
                &c.options,
                pipeline.engine.checkpoint.dir.as_deref(),
            )?;
            membership.cluster = Some((joined.heartbeat, joined.generation, c.options.peer_wait));
            (joined.builders, joined.network)
        }
        _ if workers == 1 => timely::CommunicationConfig::Thread
            .try_build()
            .map_err(anyhow::Error::msg)?,
        _ => timely::CommunicationConfig::Process(workers)
            .try_build()
            .map_err(anyhow::Error::msg)?,
    };
    Ok((allocators, membership))
}

/// The threads that copy committed result rows elsewhere (Kafka, databases):
/// (what, thread returning the rows copied), and the flag that ends them.
type ResultCopiers = (
    Vec<(&'static str, std::thread::JoinHandle<anyhow::Result<u64>>)>,
    Arc<std::sync::atomic::AtomicBool>,
);

/// Lets the copiers write what is left and waits for them.
fn join_result_copiers((threads, done): ResultCopiers) -> anyhow::Result<()> {
    done.store(true, Relaxed);
    for (what, copier) in threads {
        let rows = copier
            .join()
            .map_err(|_| anyhow::anyhow!("the {what} sink failed"))??;
        tracing::info!("{what} sink: {rows} rows written");
    }
    Ok(())
}

/// Starts the sinks that copy committed result rows: `[sinks.kafka]`,
/// `[sinks.sqlite]`, `[sinks.postgres]`, `[sinks.mongodb]`; each says its mode.
fn start_result_copiers(
    pipeline: &Pipeline,
    outputs: &Outputs,
    queries: &[Arc<dyn Query>],
    place: (usize, usize),
    checkpoints: Option<&CheckpointPlan>,
    metrics: &Arc<Metrics>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ResultCopiers> {
    let (process, workers) = place;
    let resume = checkpoints.is_some_and(|c| c.resume);
    let rescaled = checkpoints.and_then(|c| c.rescaled.as_ref());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sinks = &pipeline.sinks;
    let mut threads = Vec::new();
    if sinks.kafka.is_none()
        && sinks.sqlite.is_none()
        && sinks.postgres.is_none()
        && sinks.mongodb.is_none()
    {
        return Ok((threads, done));
    }
    let Some(dir) = &outputs.dir else {
        bail!("[sinks.*] copy the result files: they need an output folder (--out)");
    };
    if let Some(config) = &sinks.kafka {
        let ids: Vec<String> = queries.iter().map(|q| q.id().to_string()).collect();
        let publisher = crate::kafka::sink::ResultPublisher::new(
            config,
            dir,
            pipeline.engine.checkpoint.dir.as_deref(),
            process,
            &ids,
            crate::kafka::sink::Start {
                layout: checkpoints.map(|c| c.layout.describe()),
                resume,
                rescaled: rescaled.is_some(),
            },
        )?;
        tracing::info!("{}", publisher.mode());
        threads.push((
            "kafka",
            crate::kafka::sink::spawn(publisher, Arc::clone(&done)),
        ));
    }
    let stores = crate::database::open_stores(
        sinks.sqlite.as_ref(),
        sinks.postgres.as_ref(),
        sinks.mongodb.as_ref(),
    )?;
    let name = if pipeline.name.is_empty() {
        "eddy"
    } else {
        &pipeline.name
    };
    for (store, only, retry_for_s) in stores {
        let only = only.as_deref();
        let kind = store.kind();
        let place = crate::database::SinkPlace {
            out: dir,
            checkpoints: pipeline.engine.checkpoint.dir.as_deref(),
            pipeline: name,
            process,
            workers: process * workers..(process + 1) * workers,
            resume,
            took_over: rescaled.map(|r| r.adopted.clone()).unwrap_or_default(),
        };
        let sink = crate::database::DatabaseSink::new(
            store,
            queries,
            only,
            place,
            retry_for_s,
            Arc::clone(metrics),
        )?;
        tracing::info!("{}", sink.mode());
        let stop = Arc::clone(stop);
        threads.push((kind, crate::database::spawn(sink, Arc::clone(&done), stop)));
    }
    Ok((threads, done))
}

/// Lets the metrics count the ingest's refusals (`eddy_ingest_refused_total`).
fn register_ingest(metrics: &Metrics, ingest: Option<Arc<Ingest>>) -> Option<Arc<Ingest>> {
    if let Some(ingest) = &ingest {
        let _ = metrics.ingest.set(Arc::clone(ingest));
    }
    ingest
}

/// Starts the TCP listener of `kind = "tcp"` streams (`--listen`), if any.
fn start_ingest(
    pipeline: &Pipeline,
    processes: usize,
    outputs: &Outputs,
    resume: bool,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Option<Arc<Ingest>>> {
    match &pipeline.sources.listen {
        Some(_) if processes > 1 => {
            bail!("--listen takes records in a single process; run it without a cluster")
        }
        Some(listen) => {
            let dir = crate::ingest::log_dir(
                listen,
                pipeline.engine.checkpoint.dir.as_deref(),
                outputs.dir.as_deref(),
            )?;
            Ok(Some(Ingest::start(
                listen,
                &dir,
                resume,
                pipeline.engine.workers,
                server_tls(pipeline)?,
                Arc::clone(stop),
            )?))
        }
        None => Ok(None),
    }
}

/// The TLS identity of the ingest port and the dashboard, when given.
fn server_tls(pipeline: &Pipeline) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    match (&pipeline.engine.tls_cert, &pipeline.engine.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(crate::security::tls::server_config(cert, key)?)),
        _ => Ok(None),
    }
}

/// Keeps the dashboard up after the run, when asked, so its last figures can be read.
fn linger(pipeline: &Pipeline, dashboard: &Dashboard) {
    let linger = pipeline.engine.dashboard_linger_s;
    if linger > 0.0 {
        tracing::info!(
            "the run has ended; the dashboard stays up on http://{}/ for {linger} s",
            dashboard.address
        );
        std::thread::sleep(Duration::from_secs_f64(linger));
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
    let token = match &e.dashboard_token_file {
        Some(path) => Some(crate::security::token::read_token(path)?),
        None => None,
    };
    dashboard::refuse_public_without_token(address, token.is_some(), e.dashboard_public)?;
    let tls = server_tls(pipeline)?;
    let serve = |at: &str| {
        let (metrics, board) = (Arc::clone(metrics), Arc::clone(board));
        dashboard::start(at, metrics, board, info.clone(), token.clone(), tls.clone())
    };
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
    let scheme = if pipeline.engine.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        "dashboard: {scheme}://{}/  (Prometheus: {scheme}://{}/metrics)",
        served.address,
        served.address
    );
    Ok(served)
}

/// Opens the files first, so that a bad path fails before any work.
fn check_input_files(pipeline: &Pipeline) -> anyhow::Result<()> {
    for (name, path) in csv_paths(pipeline) {
        std::fs::metadata(&path)
            .with_context(|| format!("cannot open {name} file {}", path.display()))?;
    }
    Ok(())
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
