//! The `eddy` command line: run a pipeline, replay files, generate data sets.

use clap::{Args, Parser, Subcommand, ValueEnum};
use eddy::engine::{self, ClusterPlace, Job};
use eddy::generate;
use eddy::pipeline::{
    self, CsvSource, InteractionSource, OutputConfig, Pipeline, Sources, TradeSource,
};
use eddy::sources::interactions::InteractionConfig;
use eddy::sources::market::MarketConfig;
use eddy::sources::schedule::Timing;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// eddy: a real-time stream processing engine for market data and user
/// interaction logs, on timely-dataflow.
///
/// With no command, runs the built-in demo (`eddy run`): a live market and an
/// interaction log for 2 minutes, event time at 10x the wall clock, with the
/// live dashboard on http://127.0.0.1:8080/; results in out/demo/.
#[derive(Parser)]
#[command(name = "eddy", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file (dataflows/*.toml), or the built-in demo when none is given.
    Run(Box<RunArgs>),
    /// Replay recorded CSV files (WORKLOAD.md formats) and write every result file.
    Replay(Box<ReplayArgs>),
    /// Write a generated data set to a CSV file (WORKLOAD.md format).
    Generate(GenerateArgs),
    /// Stream a CSV file to an engine started with `run --listen`.
    Send(SendArgs),
    /// Publish a generator's stream or a recorded CSV file to a Kafka topic.
    Produce(ProduceArgs),
    /// Run a `run` or `replay` command as N local processes of a timely cluster and merge their results.
    Cluster(ClusterArgs),
    /// Put the result folders of one run's processes (or hosts) together into one folder.
    Merge(MergeArgs),
    /// Inspect a checkpoint folder.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Draw PNG and SVG charts from a result folder (a run's output or results/).
    Plot(PlotArgs),
    /// Score a run's anomalies and forecasts against the generators' ground truth.
    Evaluate(EvaluateArgs),
    /// Run an SQL query on a database sink's tables and print the rows as CSV.
    Query(QueryArgs),
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// Show each epoch: its layout and key groups, state bytes per query and
    /// per worker's group range, source positions, committed result files.
    Show {
        /// The checkpoint folder (--checkpoint-dir).
        dir: PathBuf,
    },
}

#[derive(Args)]
struct QueryArgs {
    /// The SQL, e.g. "SELECT * FROM bars_1s WHERE symbol = 'SYM001' LIMIT 10".
    sql: String,
    /// The SQLite file a run wrote (--sqlite).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "postgres",
        conflicts_with = "postgres"
    )]
    sqlite: Option<PathBuf>,
    /// The PostgreSQL a run wrote (--postgres).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

#[derive(Args)]
struct EvaluateArgs {
    /// Ground truth: a run's truth.csv, or the NAME.truth.csv files of `generate --anomalies` (repeatable).
    #[arg(long, required = true, value_name = "FILE")]
    truth: Vec<PathBuf>,
    /// The run's output folder (with anomalies.csv and/or forecasts.csv).
    #[arg(long = "in", value_name = "DIR")]
    input: PathBuf,
    /// How far (ms of event time) a detection may lie outside a labelled anomaly and still match it.
    #[arg(long, default_value_t = 1_000)]
    tolerance_ms: u64,
    /// Score only what starts before this event time (ms since the epoch).
    #[arg(long)]
    until_ms: Option<u64>,
    /// Where to write anomaly_quality.csv and forecast_quality.csv (default: the --in folder).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct PlotArgs {
    /// A run's output folder, or results/ with the benchmark CSVs.
    #[arg(long = "in", value_name = "DIR")]
    input: PathBuf,
    /// Where to write the charts.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Symbols for the price and bar charts (default: the four most traded).
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    symbols: Option<Vec<String>>,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(200..=8000))]
    width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = 700, value_parser = clap::value_parser!(u32).range(200..=8000))]
    height: u32,
}

#[derive(Args)]
struct ClusterArgs {
    /// Number of processes.
    #[arg(short = 'n', long)]
    processes: usize,
    /// Worker threads per process.
    #[arg(short, long, default_value_t = 1)]
    workers: usize,
    /// When a process dies, stop the others and restart all from the last
    /// checkpoint (needs --checkpoint-dir in the command); reports the recovery time.
    #[arg(long)]
    restart_on_failure: bool,
    /// With --restart-on-failure: give up after this many restarts.
    #[arg(long, default_value_t = 3, requires = "restart_on_failure")]
    max_restarts: usize,
    /// The command each process runs: `run ...` or `replay ...`, with --out DIR.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct MergeArgs {
    /// The result folders of one run, one per process (any order).
    #[arg(required = true, value_name = "DIR")]
    folders: Vec<PathBuf>,
    /// The folder to write the merged results into.
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
}

/// Settings of the engine that every command that runs a dataflow takes.
#[derive(Args, Default)]
struct EngineArgs {
    /// Worker threads.
    #[arg(short, long)]
    workers: Option<usize>,
    /// Out-of-orderness bound in ms: records more than this behind the latest seen are late.
    #[arg(long)]
    max_delay_ms: Option<u64>,
    /// Timely timestamps are event times rounded down to this many ms.
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Key groups: the unit keyed state is checkpointed in and moves in when
    /// a run resumes on another layout (at least the workers in all; fixed
    /// once a checkpoint exists).
    #[arg(long)]
    key_groups: Option<u32>,
    /// As fast as possible over files and generators: the coarsest event time one timestamp may span (default 1000; 0: a tick).
    #[arg(long)]
    as_fast_timestamp_ms: Option<u64>,
    /// Real time: take records into the dataflow at most this often (wall ms; 0: each as it falls due); windows still close on time.
    #[arg(long)]
    release_ms: Option<u64>,
    /// Records handed to the dataflow per batch and worker (default: 4096 as fast as possible over files and generators, else 1024).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Event time (ms) allowed in flight behind the inputs before the sources wait (default: 30000 as fast as possible over files and generators, else 2000).
    #[arg(long)]
    max_inflight_ms: Option<u64>,
    /// Records (per worker) allowed in flight behind the inputs before the sources wait.
    #[arg(long)]
    max_inflight_records: Option<u64>,
    /// Alert when an item's interactions in a window exceed this (default 50).
    #[arg(long)]
    threshold: Option<u64>,
    /// Correlate the pairs of these symbols only (default: every symbol).
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    symbols_for_correlation: Option<Vec<String>>,
    /// Event time at which generators start, ms since the epoch.
    #[arg(long)]
    start_ms: Option<u64>,
    /// Cluster mode: the number of processes (timely's -n).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Cluster mode: this process's index, from 0 (timely's -p).
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// Cluster mode: a file of `host:port` lines, line I for process I (timely's -h).
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// Cluster mode: a peer silent for this long (dead, hung or cut off) stops
    /// this process with one line and exit code 3.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    peer_timeout_s: f64,
    /// Cluster mode: how long to wait at start for every peer; then exit code 4
    /// with a line naming those that never came.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = positive_seconds)]
    peer_wait_s: f64,
    /// Cluster mode: a file holding the secret every process must prove it
    /// knows (HMAC challenge-response; never sent). Or EDDY_CLUSTER_SECRET.
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Cluster mode: wall-clock ms at which a real-time run starts (set by `eddy cluster`).
    #[arg(long, hide = true)]
    origin_ms: Option<u64>,
    /// Serve the live dashboard and Prometheus /metrics on HOST:PORT (port 0: any free port).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_dashboard")]
    dashboard: Option<String>,
    /// Keep serving the dashboard this many seconds after the run ends.
    #[arg(long, value_name = "SECONDS")]
    dashboard_linger: Option<f64>,
    /// The dashboard, its API and /metrics ask for the token in this file
    /// (`Authorization: Bearer TOKEN`, or `?token=TOKEN` once in a browser).
    #[arg(long, value_name = "FILE")]
    dashboard_token_file: Option<PathBuf>,
    /// Serve the dashboard on a non-loopback address without a token.
    #[arg(long)]
    dashboard_public: bool,
    /// TLS on the --listen port and the dashboard: this PEM certificate chain...
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// ... and its PEM private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// No dashboard, even where the pipeline asks for one (the demo does).
    #[arg(long)]
    no_dashboard: bool,
    /// Take checkpoints in this folder, so that a killed run can resume (--resume).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Event time between checkpoints, ms (real time at speed 1: wall time).
    #[arg(long, value_name = "MS")]
    checkpoint_interval_ms: Option<u64>,
    /// Resume from the newest complete checkpoint in --checkpoint-dir: the
    /// result files are cut back to it and the run goes on from there.
    #[arg(long, requires = "checkpoint_dir")]
    resume: bool,
    /// No live status line.
    #[arg(short, long)]
    quiet: bool,
    /// Also write every query's rows to this SQLite file (tables per query,
    /// exactly once with checkpoints; see `eddy query`).
    #[arg(long, value_name = "FILE")]
    sqlite: Option<PathBuf>,
    /// Also write every query's rows to PostgreSQL, e.g.
    /// postgresql://user:password@127.0.0.1:5432/db (no TLS).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// With --postgres: the schema of the tables.
    #[arg(long, value_name = "NAME", requires = "postgres")]
    postgres_schema: Option<String>,
    /// Also write every query's rows to MongoDB, a collection per query,
    /// e.g. mongodb://127.0.0.1:27017/eddy (the database from the path,
    /// default eddy).
    #[arg(long, value_name = "URI")]
    mongodb: Option<String>,
    /// Count the records and progress messages the workers send each other
    /// (metrics.json `traffic`; costs a little).
    #[arg(long)]
    measure_traffic: bool,
    /// Roll each query's rows into ID/part-NNNNN.csv files of about this
    /// many MB (with checkpoints: at the first checkpoint past it).
    #[arg(long, value_name = "MB")]
    roll_mb: Option<f64>,
    /// Roll parts this many seconds old.
    #[arg(long, value_name = "SECONDS")]
    roll_s: Option<f64>,
    /// Keep only the newest this many finished parts of each query.
    #[arg(long, value_name = "N")]
    keep_parts: Option<usize>,
    /// Remove finished parts older than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    keep_s: Option<f64>,
}

impl EngineArgs {
    /// This process's place in a cluster, when --processes asks for more than one.
    fn cluster(&self) -> anyhow::Result<Option<ClusterPlace>> {
        if self.processes <= 1 {
            return Ok(None);
        }
        let hostfile = self.hostfile.as_ref().ok_or_else(|| {
            anyhow::anyhow!("--processes {} needs --hostfile FILE", self.processes)
        })?;
        let mut place = ClusterPlace::from_hostfile(self.process, self.processes, hostfile)?;
        place.origin_ms = self.origin_ms;
        place.options = eddy::cluster::ClusterOptions {
            peer_timeout: std::time::Duration::from_secs_f64(self.peer_timeout_s),
            peer_wait: std::time::Duration::from_secs_f64(self.peer_wait_s),
            secret: self.cluster_secret()?,
        };
        Ok(Some(place))
    }

    /// The cluster secret: from --cluster-secret-file, else EDDY_CLUSTER_SECRET.
    fn cluster_secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let secret = match &self.cluster_secret_file {
            Some(path) => std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read --cluster-secret-file {}: {e}", path.display())
            })?,
            None => match std::env::var_os("EDDY_CLUSTER_SECRET") {
                Some(v) => v.into_encoded_bytes(),
                None => return Ok(None),
            },
        };
        // A trailing newline (echo > file) is not part of the secret.
        let secret = secret.trim_ascii_end().to_vec();
        if secret.len() < 16 {
            anyhow::bail!(
                "the cluster secret must be at least 16 bytes (it has {})",
                secret.len()
            );
        }
        Ok(Some(secret))
    }

    fn apply(&self, p: &mut Pipeline) {
        let o = &mut p.output;
        o.roll_mb = self.roll_mb.or(o.roll_mb);
        o.roll_s = self.roll_s.or(o.roll_s);
        o.keep_parts = self.keep_parts.or(o.keep_parts);
        o.keep_s = self.keep_s.or(o.keep_s);
        let e = &mut p.engine;
        if let Some(w) = self.workers {
            e.workers = w;
        }
        if let Some(d) = self.max_delay_ms {
            e.max_delay_ms = d;
        }
        if let Some(t) = self.tick_ms {
            e.tick_ms = t;
        }
        if let Some(g) = self.key_groups {
            e.key_groups = g;
        }
        if let Some(t) = self.as_fast_timestamp_ms {
            e.as_fast_timestamp_ms = t;
        }
        if let Some(r) = self.release_ms {
            e.release_ms = r;
        }
        if let Some(b) = self.batch_size {
            e.batch_size = Some(b);
        }
        if let Some(m) = self.max_inflight_ms {
            e.max_inflight_ms = Some(m);
        }
        if let Some(m) = self.max_inflight_records {
            e.max_inflight_records = m;
        }
        if self.quiet {
            e.status = false;
        }
        if self.measure_traffic {
            e.measure_traffic = true;
        }
        if let Some(address) = &self.dashboard {
            e.dashboard = Some(address.clone());
        }
        if let Some(s) = self.dashboard_linger {
            e.dashboard_linger_s = s;
        }
        if let Some(path) = &self.dashboard_token_file {
            e.dashboard_token_file = Some(path.clone());
        }
        if self.dashboard_public {
            e.dashboard_public = true;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            e.tls_cert = Some(cert.clone());
            e.tls_key = Some(key.clone());
        }
        if self.no_dashboard {
            e.dashboard = None;
        }
        if let Some(t) = self.start_ms {
            p.engine.start_ms = Some(t);
        }
        if let Some(dir) = &self.checkpoint_dir {
            p.engine.checkpoint.dir = Some(dir.clone());
        }
        if let Some(ms) = self.checkpoint_interval_ms {
            p.engine.checkpoint.interval_ms = ms;
        }
        if self.resume {
            p.engine.checkpoint.resume = true;
        }
        if let Some(t) = self.threshold {
            p.queries.set("alerts", "threshold", t as i64);
        }
        if let Some(symbols) = &self.symbols_for_correlation {
            p.queries.set("corr_60s", "symbols", symbols.clone());
        }
        if let Some(path) = &self.sqlite {
            p.sinks.sqlite = Some(eddy::database::SqliteSinkConfig {
                path: path.clone(),
                ..p.sinks
                    .sqlite
                    .clone()
                    .unwrap_or(eddy::database::SqliteSinkConfig::at(path))
            });
        }
        if let Some(url) = &self.postgres {
            let mut c = p
                .sinks
                .postgres
                .clone()
                .unwrap_or(eddy::database::PostgresSinkConfig::at(url));
            c.url = url.clone();
            if let Some(schema) = &self.postgres_schema {
                c.schema = schema.clone();
            }
            p.sinks.postgres = Some(c);
        }
        if let Some(uri) = &self.mongodb {
            let mut c = p
                .sinks
                .mongodb
                .clone()
                .unwrap_or(eddy::database::MongoSinkConfig::at(uri));
            c.uri = uri.clone();
            p.sinks.mongodb = Some(c);
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Pipeline file; the built-in demo when absent.
    pipeline: Option<PathBuf>,
    /// Stop after this many seconds of wall time.
    #[arg(short, long)]
    duration: Option<f64>,
    /// Output folder for result files and metrics.json.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Generators in real time or as fast as possible.
    #[arg(long, value_enum)]
    timing: Option<Timing>,
    /// Real time: event time runs this many times faster than the wall clock.
    #[arg(long)]
    speed: Option<f64>,
    /// Take both streams over TCP on HOST:PORT instead (see `eddy send`); every
    /// line is logged durably before it is processed.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// With --listen: the input log folder (default: DIR/input-log of
    /// --checkpoint-dir, else of --out).
    #[arg(long, value_name = "DIR", requires = "listen")]
    input_log: Option<PathBuf>,
    /// With --listen: end the streams once no sender has been connected for this long.
    #[arg(long, value_name = "SECONDS", requires = "listen")]
    idle_exit: Option<f64>,
    /// With --listen: MiB of logged input not yet processed before senders are held back.
    #[arg(long, value_name = "MIB", requires = "listen")]
    max_backlog_mib: Option<u64>,
    /// With --listen: senders must present the token in this file on their
    /// first line (`token=...`, see `eddy send --token-file`).
    #[arg(long, value_name = "FILE", requires = "listen")]
    ingest_token_file: Option<PathBuf>,
    /// With --listen: a line longer than this (KiB) drops its sender.
    #[arg(long, value_name = "KIB", requires = "listen")]
    max_line_kib: Option<u64>,
    /// With --listen: senders connected at once; more are told `busy`.
    #[arg(long, value_name = "N", requires = "listen")]
    max_connections: Option<usize>,
    /// With --listen: connections waiting for their first line at once;
    /// one more pushes out the oldest.
    #[arg(long, value_name = "N", requires = "listen")]
    max_pending: Option<usize>,
    /// With --listen: a connection must send its first line within this long.
    #[arg(long, value_name = "SECONDS", requires = "listen")]
    hello_timeout: Option<f64>,
    /// With --listen: the input log's segment size; whole segments behind
    /// the oldest kept checkpoint are removed.
    #[arg(long, value_name = "MIB", requires = "listen")]
    input_log_segment_mib: Option<f64>,
    /// With --listen: a sender that sends nothing this long is dropped.
    #[arg(long, value_name = "SECONDS", requires = "listen")]
    ingest_idle_timeout: Option<f64>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
struct SendArgs {
    /// A trades.csv or interactions.csv file (the header says which).
    file: PathBuf,
    /// The engine's --listen address.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// Lines per second (default: as fast as the engine takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Sender id, so that a reconnecting sender resends nothing twice
    /// (default: the file's name).
    #[arg(long)]
    id: Option<String>,
    /// After a lost connection, keep reconnecting this many seconds.
    #[arg(long, default_value_t = 30.0)]
    retry_s: f64,
    /// The engine's token (its --ingest-token-file): the file's first line.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Speak TLS, trusting only the certificates in this PEM file (the
    /// engine's certificate is checked against the host name of --to).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Speak TLS, trusting the public web roots.
    #[arg(long, conflicts_with = "tls_ca")]
    tls: bool,
}

#[derive(Args)]
struct ReplayArgs {
    /// trades.csv to replay.
    #[arg(long)]
    trades: Option<PathBuf>,
    /// interactions.csv to replay.
    #[arg(long)]
    interactions: Option<PathBuf>,
    /// Output folder for result files and metrics.json.
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum StreamKind {
    Trades,
    Interactions,
}

#[derive(Args)]
struct GenerateArgs {
    /// Which stream to generate.
    #[arg(value_enum)]
    stream: StreamKind,
    /// The CSV file to write.
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    generator: GeneratorArgs,
    /// Where to write the anomalies' ground truth (default: beside the output,
    /// `NAME.truth.csv`).
    #[arg(long, requires = "anomalies")]
    truth: Option<PathBuf>,
}

/// A generator's settings, shared by `generate` and `produce`.
#[derive(Args)]
struct GeneratorArgs {
    /// Number of records.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    count: u64,
    /// Seed: the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Trades: number of symbols.
    #[arg(long, conflicts_with_all = ["users", "items"])]
    symbols: Option<u64>,
    /// Interactions: number of users.
    #[arg(long)]
    users: Option<u64>,
    /// Interactions: number of items.
    #[arg(long)]
    items: Option<u64>,
    /// Records per second of event time.
    #[arg(long)]
    rate: Option<f64>,
    /// Largest backwards displacement of a record's timestamp, in ms.
    #[arg(long)]
    disorder_ms: Option<u64>,
    /// Event time of the first record, ms since the epoch.
    #[arg(long)]
    start_ms: Option<u64>,
    /// Inject labelled anomalies with their default settings (trades: price
    /// jumps, volatility bursts, volume spikes; interactions: item bursts, bots).
    #[arg(long)]
    anomalies: bool,
}

impl GeneratorArgs {
    fn market(&self) -> MarketConfig {
        let mut c = MarketConfig {
            symbols: self.symbols.unwrap_or(MarketConfig::default().symbols),
            anomalies: self.anomalies.then(Default::default),
            ..MarketConfig::default()
        };
        self.set_arrivals(&mut c.arrivals);
        c
    }

    fn interactions(&self) -> InteractionConfig {
        let defaults = InteractionConfig::default();
        let mut c = InteractionConfig {
            users: self.users.unwrap_or(defaults.users),
            items: self.items.unwrap_or(defaults.items),
            anomalies: self.anomalies.then(Default::default),
            ..defaults
        };
        self.set_arrivals(&mut c.arrivals);
        c
    }

    fn set_arrivals(&self, a: &mut eddy::sources::arrivals::ArrivalConfig) {
        a.count = Some(self.count);
        a.seed = self.seed;
        a.rate = self.rate.unwrap_or(a.rate);
        a.disorder_ms = self.disorder_ms.unwrap_or(a.disorder_ms);
        a.start_ms = self.start_ms;
    }
}

#[derive(Args)]
struct ProduceArgs {
    /// The generator to publish (or --file).
    #[arg(value_enum, required_unless_present = "file")]
    stream: Option<StreamKind>,
    /// Publish a recorded trades.csv or interactions.csv instead of a generator.
    #[arg(long, conflicts_with = "stream")]
    file: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT]")]
    brokers: String,
    /// The topic (created with --partitions when missing).
    #[arg(long)]
    topic: String,
    /// Partitions of a topic that is created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Messages per second of wall-clock time, open loop (default: as fast as possible).
    #[arg(long = "send-rate", value_name = "PER_S")]
    send_rate: Option<f64>,
    /// A librdkafka setting passed through (repeatable), e.g. security.protocol=SSL.
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    #[command(flatten)]
    generator: GeneratorArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line naming the problem, not a page of usage.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "eddy: {} (see eddy --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A cluster that did not form: its own line and exit code (README, "Exit codes").
        Err(e) => match e.downcast_ref::<eddy::cluster::exit::ClusterError>() {
            Some(c) => {
                eprintln!("{}", c.line);
                ExitCode::from(c.code)
            }
            None => {
                eprintln!("eddy: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run(RunArgs {
            pipeline: None,
            duration: None,
            out: None,
            timing: None,
            speed: None,
            listen: None,
            input_log: None,
            idle_exit: None,
            max_backlog_mib: None,
            ingest_token_file: None,
            max_line_kib: None,
            max_connections: None,
            max_pending: None,
            hello_timeout: None,
            input_log_segment_mib: None,
            ingest_idle_timeout: None,
            engine: EngineArgs::default(),
        }),
        Some(Command::Run(args)) => run(*args),
        Some(Command::Replay(args)) => replay(*args),
        Some(Command::Generate(args)) => generate(args),
        Some(Command::Send(args)) => send(args),
        Some(Command::Produce(args)) => produce(args),
        Some(Command::Query(args)) => {
            let out = std::io::stdout().lock();
            match (&args.sqlite, &args.postgres) {
                (Some(path), _) => eddy::database::query::sqlite(path, &args.sql, out),
                (None, Some(url)) => eddy::database::query::postgres(url, &args.sql, out),
                (None, None) => unreachable!("clap requires one"),
            }
        }
        Some(Command::Evaluate(args)) => {
            let out = args.out.unwrap_or_else(|| args.input.clone());
            let e = eddy::evaluate::evaluate(&eddy::evaluate::EvaluateOptions {
                truth_files: &args.truth,
                results: &args.input,
                tolerance_ms: args.tolerance_ms,
                until_ms: args.until_ms,
                out: &out,
            })?;
            print!("{e}");
            eprintln!(
                "eddy: wrote {} and {}",
                out.join("anomaly_quality.csv").display(),
                out.join("forecast_quality.csv").display()
            );
            Ok(())
        }
        Some(Command::Plot(args)) => {
            let options = eddy::plot::PlotOptions {
                width: args.width,
                height: args.height,
                symbols: args.symbols.unwrap_or_default(),
            };
            for file in eddy::plot::plot_dir(&args.input, &args.out, &options)? {
                eprintln!("eddy: wrote {}", file.display());
            }
            Ok(())
        }
        Some(Command::Cluster(args)) => {
            let summary = eddy::cluster::launch(&eddy::cluster::Launch {
                processes: args.processes,
                workers: args.workers,
                command: args.command,
                max_restarts: if args.restart_on_failure {
                    args.max_restarts
                } else {
                    0
                },
            })?;
            eprintln!("{}", summary.report());
            Ok(())
        }
        Some(Command::Checkpoint(CheckpointCommand::Show { dir })) => {
            print!("{}", eddy::checkpoint::show::show(&dir)?);
            Ok(())
        }
        Some(Command::Merge(args)) => {
            let summary = eddy::cluster::merge::merge_folders(
                &args.folders,
                &args.out,
                eddy::cluster::merge::Inputs::Keep,
            )?;
            eprintln!(
                "eddy: merged the results of {} processes into {}/\n{}",
                args.folders.len(),
                args.out.display(),
                summary.report()
            );
            Ok(())
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut p = pipeline::load_or_demo(args.pipeline.as_deref())?;
    args.engine.apply(&mut p);
    if let Some(d) = args.duration {
        p.engine.duration_s = Some(d);
    }
    if let Some(o) = args.out {
        p.output.dir = Some(o);
    }
    if let Some(t) = args.timing {
        p.engine.timing = t;
    }
    if let Some(s) = args.speed {
        p.engine.speed = s;
    }
    if let Some(address) = args.listen {
        let defaults = eddy::ingest::ListenConfig::default();
        p.sources = Sources {
            trades: Some(TradeSource::Tcp {}),
            interactions: Some(InteractionSource::Tcp {}),
            listen: Some(eddy::ingest::ListenConfig {
                address,
                log_dir: args.input_log,
                max_backlog_mib: args.max_backlog_mib.unwrap_or(defaults.max_backlog_mib),
                idle_exit_s: args.idle_exit,
                max_line_kib: args.max_line_kib.unwrap_or(defaults.max_line_kib),
                max_connections: args.max_connections.unwrap_or(defaults.max_connections),
                idle_timeout_s: args.ingest_idle_timeout.unwrap_or(defaults.idle_timeout_s),
                max_pending: args.max_pending.unwrap_or(defaults.max_pending),
                hello_timeout_s: args.hello_timeout.unwrap_or(defaults.hello_timeout_s),
                segment_mib: args.input_log_segment_mib.unwrap_or(defaults.segment_mib),
                token_file: args.ingest_token_file,
            }),
        };
    }
    p.validate().map_err(anyhow::Error::msg)?;
    let cluster = args.engine.cluster()?;
    let name = if p.name.is_empty() {
        "pipeline".to_string()
    } else {
        p.name.clone()
    };
    tracing::info!(
        "running {name}: {} worker(s), {:?}{}; Ctrl-C stops with a summary",
        p.engine.workers,
        p.engine.timing,
        p.engine
            .duration_s
            .map_or(String::new(), |d| format!(", {d} s"))
    );
    run_pipeline(p, cluster)
}

fn send(args: SendArgs) -> anyhow::Result<()> {
    let id = args.id.unwrap_or_else(|| {
        args.file
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            })
            .unwrap_or_default()
    });
    let sent = eddy::send::send(
        &args.file,
        &eddy::send::Send {
            to: args.to,
            rate: args.rate,
            id,
            retry: std::time::Duration::from_secs_f64(args.retry_s.max(0.0)),
            token: match &args.token_file {
                Some(path) => Some(String::from_utf8(eddy::security::token::read_token(path)?)?),
                None => None,
            },
            tls: match (&args.tls_ca, args.tls) {
                (Some(ca), _) => Some(eddy::security::tls::client_config(Some(ca))?),
                (None, true) => Some(eddy::security::tls::client_config(None)?),
                (None, false) => None,
            },
        },
    )?;
    eprintln!(
        "sent {} {} lines in {:.2} s ({:.0}/s) over {} connection(s); {} sent again after a reconnection, none logged twice",
        sent.lines,
        sent.stream,
        sent.seconds,
        sent.lines as f64 / sent.seconds.max(1e-9),
        sent.connections,
        sent.resent
    );
    Ok(())
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    if args.trades.is_none() && args.interactions.is_none() {
        anyhow::bail!("replay needs --trades FILE and/or --interactions FILE");
    }
    let mut p = Pipeline {
        name: "replay".into(),
        sources: Sources {
            trades: args.trades.map(|path| TradeSource::Csv(CsvSource { path })),
            interactions: args
                .interactions
                .map(|path| InteractionSource::Csv(CsvSource { path })),
            listen: None,
        },
        output: OutputConfig {
            dir: Some(args.out),
            ..OutputConfig::default()
        },
        ..Pipeline::default()
    };
    args.engine.apply(&mut p);
    run_pipeline(p, args.engine.cluster()?)
}

fn run_pipeline(p: Pipeline, cluster: Option<ClusterPlace>) -> anyhow::Result<()> {
    let out = p.output.dir.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if on_signal.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("eddy: stopping: draining the dataflow (Ctrl-C again to quit at once)");
    })?;
    let summary = engine::run(Job {
        stop,
        cluster,
        ..Job::new(p)
    })?;
    eprintln!("{}", summary.report());
    if let Some(dir) = out {
        eprintln!("  results in {}/", dir.display());
    }
    Ok(())
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let truth = args.generator.anomalies.then(|| {
        args.truth.clone().unwrap_or_else(|| {
            let stem = args.out.file_stem().unwrap_or_default().to_string_lossy();
            args.out.with_file_name(format!("{stem}.truth.csv"))
        })
    });
    let (written, labelled) = match args.stream {
        StreamKind::Trades => {
            generate::write_trades(&args.generator.market(), &args.out, truth.as_deref())?
        }
        StreamKind::Interactions => generate::write_interactions(
            &args.generator.interactions(),
            &args.out,
            truth.as_deref(),
        )?,
    };
    eprintln!("eddy: wrote {written} records to {}", args.out.display());
    if let Some(t) = &truth {
        eprintln!(
            "eddy: wrote {labelled} labelled anomalies to {}",
            t.display()
        );
    }
    Ok(())
}

fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use eddy::kafka::produce::{produce_file, produce_generated, Produce};
    let mut options = std::collections::BTreeMap::new();
    for o in &args.options {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--option {o}: expected KEY=VALUE"))?;
        options.insert(k.to_string(), v.to_string());
    }
    let how = Produce {
        brokers: args.brokers,
        topic: args.topic,
        partitions: args.partitions,
        rate: args.send_rate,
        options,
    };
    let g = &args.generator;
    let done = match (&args.file, args.stream) {
        (Some(file), _) => produce_file(file, &how)?,
        (None, Some(StreamKind::Trades)) => {
            produce_generated(generate::market_source(&g.market())?, g.count, &how)?
        }
        (None, Some(StreamKind::Interactions)) => produce_generated(
            generate::interaction_source(&g.interactions())?,
            g.count,
            &how,
        )?,
        (None, None) => anyhow::bail!("produce needs a stream (trades, interactions) or --file"),
    };
    eprintln!(
        "eddy: published {} {} messages to {} in {:.2} s ({:.0}/s){}",
        done.messages,
        done.stream,
        how.topic,
        done.seconds,
        done.messages as f64 / done.seconds.max(1e-9),
        match how.rate {
            Some(_) => format!(
                "; largest lag behind the schedule {:.1} ms",
                done.max_lag_ms
            ),
            None => String::new(),
        }
    );
    Ok(())
}
