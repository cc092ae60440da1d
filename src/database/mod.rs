//! Database sinks: every query's rows in a table of SQLite (`[sinks.sqlite]`,
//! `--sqlite FILE`) or PostgreSQL (`[sinks.postgres]`, `--postgres URL`), or
//! a collection of MongoDB (`[sinks.mongodb]`, `--mongodb URI`; see
//! `mongodb.rs`), exactly once per checkpoint epoch.
//!
//! A table per query, named by its id: the columns and types of its row type
//! (the source of its CSV header), a primary key of the row's identity
//! ([`crate::queries::RowFile::identified_by`]), an index by time. Rows are
//! copied from the committed part of the result files ([`crate::committed`]):
//! after each checkpoint, the rows it committed are written in one
//! transaction together with the process's row of `eddy_progress`
//! (pipeline, process, worker, epoch, and the bytes of each file written).
//! Resuming, the sink starts from what that table says was written, so an
//! epoch is written once: a crash before the commit leaves nothing of it, a
//! crash after it leaves the progress that skips it. Rows are upserted by
//! identity, so a new run over the same input replaces its rows instead of
//! failing on them.
//!
//! Resumed on another layout (`docs/FAULTS.md`), a process's result files
//! begin with its own old files' committed rows, so its progress row still
//! names a prefix of them; the rows it took over from other old processes
//! follow and are written again, which the upsert by identity makes
//! harmless (every query's rows have an identity). The progress rows of
//! processes and workers that are no more are removed.
//!
//! Without checkpoints rows are committed in batches as the files grow
//! (every 100 ms) and the sink is at-least-once.
//!
//! A server that goes away (PostgreSQL stopped, a busy SQLite file) is
//! waited for: the transaction is retried with backoff up to `retry_for_s`,
//! each retry counted (`eddy_sink_retries_total{sink}`). Other errors (bad
//! URL, permission, full disk, a table of other columns) end the run with
//! one line.

mod fields;
pub mod mongodb;
pub mod pg_tls;
pub mod postgres;
pub mod query;
pub mod sqlite;

use crate::committed::{Commit, CommittedFiles};
use crate::metrics::Metrics;
use crate::queries::Query;
use crate::sinks::{Column, ColumnType};
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[sinks.sqlite]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// The database file (created when missing).
    pub path: PathBuf,
    /// The queries written (default: every query of the run).
    #[serde(default)]
    pub queries: Option<Vec<String>>,
    /// How long a locked database is waited for before the run fails.
    #[serde(default = "retry_for_s")]
    pub retry_for_s: f64,
}

/// `[sinks.postgres]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgresql://user:password@host:port/db` or `host=... user=...` (no TLS).
    pub url: String,
    /// The schema of the tables (created when missing).
    #[serde(default = "public")]
    pub schema: String,
    /// The queries written (default: every query of the run).
    #[serde(default)]
    pub queries: Option<Vec<String>>,
    /// How long a server that went away is waited for before the run fails.
    #[serde(default = "retry_for_s")]
    pub retry_for_s: f64,
}

/// `[sinks.mongodb]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MongoSinkConfig {
    /// `mongodb://host:port/db?...` (the official driver's URI).
    pub uri: String,
    /// The database (default: the URI's path, else `eddy`).
    #[serde(default)]
    pub database: Option<String>,
    /// The queries written (default: every query of the run).
    #[serde(default)]
    pub queries: Option<Vec<String>>,
    /// How long a server that went away is waited for before the run fails.
    #[serde(default = "retry_for_s")]
    pub retry_for_s: f64,
}

impl MongoSinkConfig {
    /// Every query to `uri`, the default settings.
    pub fn at(uri: &str) -> Self {
        MongoSinkConfig {
            uri: uri.to_string(),
            database: None,
            queries: None,
            retry_for_s: retry_for_s(),
        }
    }
}

impl SqliteSinkConfig {
    /// Every query to `path`, the default settings.
    pub fn at(path: &Path) -> Self {
        SqliteSinkConfig {
            path: path.to_path_buf(),
            queries: None,
            retry_for_s: retry_for_s(),
        }
    }
}

impl PostgresSinkConfig {
    /// Every query to `url`, schema `public`, the default settings.
    pub fn at(url: &str) -> Self {
        PostgresSinkConfig {
            url: url.to_string(),
            schema: public(),
            queries: None,
            retry_for_s: retry_for_s(),
        }
    }
}

/// A database sink's store, the queries it keeps (all when none) and how
/// long it waits for its database.
pub type ConfiguredStore = (Box<dyn Store>, Option<Vec<String>>, f64);

/// Opens the stores of `[sinks.sqlite]`, `[sinks.postgres]` and
/// `[sinks.mongodb]`: a file that cannot be opened or a server that cannot
/// be reached is the run's error.
pub fn open_stores(
    sqlite: Option<&SqliteSinkConfig>,
    postgres: Option<&PostgresSinkConfig>,
    mongodb: Option<&MongoSinkConfig>,
) -> anyhow::Result<Vec<ConfiguredStore>> {
    let mut stores: Vec<ConfiguredStore> = Vec::new();
    if let Some(c) = sqlite {
        let store = sqlite::SqliteStore::open(&c.path)?;
        stores.push((Box::new(store), c.queries.clone(), c.retry_for_s));
    }
    if let Some(c) = postgres {
        let store = postgres::PostgresStore::connect(&c.url, &c.schema)?;
        stores.push((Box::new(store), c.queries.clone(), c.retry_for_s));
    }
    if let Some(c) = mongodb {
        let store = mongodb::MongoStore::connect(&c.uri, c.database.as_deref())?;
        stores.push((Box::new(store), c.queries.clone(), c.retry_for_s));
    }
    Ok(stores)
}

fn retry_for_s() -> f64 {
    300.0
}

fn public() -> String {
    "public".into()
}

/// A query's table.
#[derive(Clone, Debug)]
pub struct Table {
    /// The query id: the table's name.
    pub name: String,
    /// Its result file.
    pub file: String,
    pub columns: Vec<Column>,
    /// The primary key (empty: none).
    pub identity: Vec<String>,
    /// The column indexed by time (`window_start_ms` or `ts_ms`), if any.
    pub time: Option<String>,
}

impl Table {
    pub fn of(query: &dyn Query) -> anyhow::Result<Table> {
        let output = query.output();
        let columns = output
            .typed_columns()
            .map_err(|e| anyhow::anyhow!("query {}: {e}", query.id()))?;
        let time = ["window_start_ms", "ts_ms"]
            .into_iter()
            .find(|t| columns.iter().any(|c| c.name == *t))
            .map(str::to_string);
        Ok(Table {
            name: query.id().to_string(),
            file: crate::queries::file_name(query.id()),
            columns,
            identity: output.identity().iter().map(|c| c.to_string()).collect(),
            time,
        })
    }

    /// `"name"` quoted as an SQL identifier.
    pub fn quoted(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// The column list, quoted.
    pub fn column_list(&self) -> String {
        let names: Vec<String> = self.columns.iter().map(|c| Table::quoted(c.name)).collect();
        names.join(", ")
    }

    /// `ON CONFLICT (identity) DO UPDATE SET c = excluded.c, ...` (empty
    /// without identity): a row written again replaces the one before.
    pub fn upsert_clause(&self) -> String {
        if self.identity.is_empty() {
            return String::new();
        }
        let key: Vec<String> = self.identity.iter().map(|c| Table::quoted(c)).collect();
        let set: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.identity.iter().any(|k| k == c.name))
            .map(|c| format!("{0} = excluded.{0}", Table::quoted(c.name)))
            .collect();
        if set.is_empty() {
            format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
        } else {
            format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                key.join(", "),
                set.join(", ")
            )
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` in a dialect's types, and the time index
    /// (`time_index_method`: e.g. ` USING brin`, or empty for the default).
    pub fn create_statements(
        &self,
        qualified: &str,
        sql_type: fn(ColumnType) -> &'static str,
        time_index_method: &str,
    ) -> Vec<String> {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let null = if c.nullable { "" } else { " NOT NULL" };
                format!("{} {}{null}", Table::quoted(c.name), sql_type(c.ty))
            })
            .collect();
        if !self.identity.is_empty() {
            let key: Vec<String> = self.identity.iter().map(|c| Table::quoted(c)).collect();
            parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
        }
        let mut statements = vec![format!(
            "CREATE TABLE IF NOT EXISTS {qualified} ({})",
            parts.join(", ")
        )];
        if let Some(time) = &self.time {
            statements.push(format!(
                "CREATE INDEX IF NOT EXISTS {} ON {qualified}{time_index_method} ({})",
                Table::quoted(&format!("{}_by_time", self.name)),
                Table::quoted(time)
            ));
        }
        statements
    }

    /// Checks that an existing table has the row type's columns (names in
    /// order), so a table of an older row type is one clear error.
    pub fn check_existing(&self, found: &[String]) -> anyhow::Result<()> {
        let want: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        if !found.is_empty() && found != want.as_slice() {
            bail!(
                "table {} exists with columns ({}) but the query's rows have ({}): drop it or write to another database",
                self.name,
                found.join(", "),
                want.join(", ")
            );
        }
        Ok(())
    }
}

/// What a sink writes in one transaction: the rows of each table between
/// the bytes written before and `to`, and the progress row.
pub struct Batch<'a> {
    pub pipeline: &'a str,
    pub process: usize,
    /// The global indexes of this process's workers (a progress row each).
    pub workers: std::ops::Range<usize>,
    pub epoch: Option<u64>,
    /// Bytes of each file written once the transaction commits.
    pub to: BTreeMap<String, u64>,
    /// (table, CSV lines) of the rows to write.
    pub rows: Vec<(&'a Table, Vec<u8>)>,
    /// Fault injection (`EDDY_CRASH_AT=sink-before-commit@N`): the store
    /// kills the process once the rows are written, before the commit.
    pub crash_before_commit: bool,
    /// The commit must be on disk when acknowledged, and with it every
    /// commit before (a store that acknowledges earlier may lose its last
    /// commits in a crash, see [`DatabaseSink::durable`]).
    pub durable: bool,
}

impl Batch<'_> {
    /// Called by a store between writing the rows and committing.
    pub fn before_commit(&self) {
        if self.crash_before_commit {
            crate::checkpoint::crash_here();
        }
    }
}

impl Batch<'_> {
    pub fn row_count(&self) -> usize {
        self.rows
            .iter()
            .map(|(_, bytes)| bytes.iter().filter(|b| **b == b'\n').count())
            .sum()
    }

    /// The `eddy_progress` rows the transaction writes, one per worker:
    /// (pipeline, process, worker, epoch, published as JSON).
    pub fn progress_rows(&self) -> Vec<ProgressRow<'_>> {
        let published = serde_json::to_string(&self.to).expect("a map of numbers");
        self.workers
            .clone()
            .map(|worker| {
                (
                    self.pipeline,
                    self.process as i64,
                    worker as i64,
                    self.epoch.map(|e| e as i64),
                    published.clone(),
                )
            })
            .collect()
    }
}

/// A row of `eddy_progress`, in [`progress_upsert`]'s parameter order.
pub type ProgressRow<'a> = (&'a str, i64, i64, Option<i64>, String);

/// The statement that writes a [`ProgressRow`] (parameters `$1`..`$5`, which
/// SQLite and PostgreSQL both take); `now` is the dialect's expression of
/// the commit time as RFC 3339 text in UTC.
pub fn progress_upsert(qualified: &str, now: &str) -> String {
    format!(
        "INSERT INTO {qualified} (pipeline, process, worker, epoch, published, committed_at) \
         VALUES ($1, $2, $3, $4, $5, {now}) ON CONFLICT (pipeline, process, worker) DO UPDATE SET \
         epoch = excluded.epoch, published = excluded.published, committed_at = excluded.committed_at"
    )
}

/// The statement that deletes a process's [`ProgressRow`]s but those of
/// a range of workers (parameters `$1`..`$4`: pipeline, process, the
/// range's start and end).
pub fn progress_reset(qualified: &str) -> String {
    format!(
        "DELETE FROM {qualified} WHERE pipeline = $1 AND process = $2 \
         AND (worker < $3 OR worker >= $4)"
    )
}

/// Why a database operation failed: worth waiting for (the server went
/// away, the file is locked) or not (everything else).
#[derive(Debug)]
pub enum DbError {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Retry(e) | DbError::Fatal(e) => write!(f, "{e:#}"),
        }
    }
}

/// One database: SQLite or PostgreSQL.
pub trait Store: Send {
    /// `sqlite` or `postgres`: the `sink` label of its metrics.
    fn kind(&self) -> &'static str;
    /// Where it writes, for messages.
    fn target(&self) -> String;
    /// How it is exactly once with checkpoints, for the start of the run.
    fn exactly_once_how(&self) -> &'static str {
        "each checkpoint's rows in one transaction with eddy_progress"
    }
    /// Creates the tables, their indexes and `eddy_progress` where missing.
    fn prepare(&mut self, tables: &[Table]) -> Result<(), DbError>;
    /// The bytes of each file the process's last committed transaction wrote.
    fn progress(
        &mut self,
        pipeline: &str,
        process: usize,
    ) -> Result<Option<BTreeMap<String, u64>>, DbError>;
    /// Forgets the process's progress rows but those of `keep_workers` (a
    /// run that does not resume starts over; a resumed one keeps only its
    /// workers' rows).
    fn reset(
        &mut self,
        pipeline: &str,
        process: usize,
        keep_workers: std::ops::Range<usize>,
    ) -> Result<(), DbError>;
    /// Writes a batch in one transaction.
    fn write(&mut self, batch: &Batch) -> Result<(), DbError>;
    /// Connects again after a `Retry` error.
    fn reconnect(&mut self) -> Result<(), DbError>;
}

/// `CREATE TABLE IF NOT EXISTS eddy_progress` in a dialect.
pub fn progress_table(qualified: &str, bigint: &str, text: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {qualified} (pipeline {text} NOT NULL, process {bigint} NOT NULL, \
         worker {bigint} NOT NULL, epoch {bigint}, published {text} NOT NULL, \
         committed_at {text} NOT NULL, PRIMARY KEY (pipeline, process, worker))"
    )
}

/// Copies committed result rows of one process into a [`Store`].
pub struct DatabaseSink {
    store: Box<dyn Store>,
    files: CommittedFiles,
    tables: Vec<Table>,
    pipeline: String,
    process: usize,
    workers: std::ops::Range<usize>,
    /// Bytes of each file the database holds.
    written: BTreeMap<String, u64>,
    /// Bytes of each file the database holds on disk: a server that
    /// crashes may come back without its last commits (PostgreSQL commits
    /// without waiting for the disk), so the rolled parts from here on stay.
    durable: BTreeMap<String, u64>,
    /// When a commit last waited for the disk.
    last_durable: Instant,
    retry_for: Duration,
    metrics: Arc<Metrics>,
    pub rows: u64,
    transactions: u64,
    crash: Option<crate::checkpoint::CrashPoint>,
}

/// Where a sink's rows come from and go to.
pub struct SinkPlace<'a> {
    pub out: &'a Path,
    pub checkpoints: Option<&'a Path>,
    pub pipeline: &'a str,
    pub process: usize,
    pub workers: std::ops::Range<usize>,
    pub resume: bool,
    /// Resumed on another layout: the old processes whose result rows this
    /// process took over (its own old index first, when it had one).
    pub took_over: Vec<usize>,
}

impl DatabaseSink {
    /// Prepares the tables and finds where to start (see the module doc).
    pub fn new(
        mut store: Box<dyn Store>,
        queries: &[Arc<dyn Query>],
        only: Option<&[String]>,
        place: SinkPlace,
        retry_for_s: f64,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<DatabaseSink> {
        if let Some(only) = only {
            if let Some(q) = only
                .iter()
                .find(|q| !queries.iter().any(|r| r.id() == q.as_str()))
            {
                bail!(
                    "{} sink: query {q:?} is not one of this run's queries",
                    store.kind()
                );
            }
        }
        let chosen: Vec<&Arc<dyn Query>> = queries
            .iter()
            .filter(|q| only.is_none_or(|o| o.iter().any(|n| n == q.id())))
            .collect();
        let tables = chosen
            .iter()
            .map(|q| Table::of(q.as_ref()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ids: Vec<String> = chosen.iter().map(|q| q.id().to_string()).collect();
        let files = CommittedFiles::new(place.out, place.checkpoints, place.process, &ids, None);
        let kind = store.kind();
        let fatal = |e: DbError| anyhow::anyhow!("{kind} sink: {e}");
        store.prepare(&tables).map_err(fatal)?;
        let rewrites_taken_over = place.took_over.iter().any(|&q| q != place.process);
        let without_identity = tables.iter().find(|t| t.identity.is_empty());
        if let Some(t) = without_identity.filter(|_| rewrites_taken_over) {
            bail!(
                "{kind} sink: table {} has no identity, so the rows this process took over \
                 in the rescale would be written twice; resume on the layout that wrote the checkpoint",
                t.name
            );
        }
        let mut written = BTreeMap::new();
        if place.resume {
            let done = store
                .progress(place.pipeline, place.process)
                .map_err(fatal)?
                .unwrap_or_default();
            let committed = files.resumed_lengths()?;
            for (file, len) in done {
                written.insert(
                    file.clone(),
                    len.min(committed.get(&file).copied().unwrap_or(0)),
                );
            }
            // Rows of workers and processes that are no more.
            store
                .reset(place.pipeline, place.process, place.workers.clone())
                .map_err(fatal)?;
            for &old in place.took_over.iter().filter(|&&q| q != place.process) {
                store.reset(place.pipeline, old, 0..0).map_err(fatal)?;
            }
        } else {
            store
                .reset(place.pipeline, place.process, 0..0)
                .map_err(fatal)?;
        }
        Ok(DatabaseSink {
            store,
            files,
            tables,
            pipeline: place.pipeline.to_string(),
            process: place.process,
            workers: place.workers,
            durable: written.clone(),
            last_durable: Instant::now(),
            written,
            retry_for: Duration::from_secs_f64(retry_for_s.max(0.0)),
            metrics,
            rows: 0,
            transactions: 0,
            crash: crate::checkpoint::CrashPoint::from_env(place.process),
        })
    }

    /// Which mode the run uses, for the start of the run.
    pub fn mode(&self) -> String {
        let (kind, target) = (self.store.kind(), self.store.target());
        if self.files.checkpointed() {
            format!(
                "{kind} sink to {target}: exactly once, {}",
                self.store.exactly_once_how()
            )
        } else {
            format!("{kind} sink to {target}: at least once, rows committed every 100 ms as the files grow (no checkpoints)")
        }
    }

    /// Writes what the newest commit adds, if anything.
    pub fn step(&mut self, at_end: bool) -> anyhow::Result<()> {
        let Some(commit) = self.files.next(at_end)? else {
            return Ok(());
        };
        self.write_commit(&commit, at_end)
    }

    /// Writes the rows between what the database holds and `commit` in one
    /// transaction. A database that went away is waited for with backoff;
    /// once back, what it holds is read again (a lost answer may hide a
    /// commit) and the transaction rebuilt from there. About once a second,
    /// and at the end, a commit waits for the disk.
    fn write_commit(&mut self, commit: &Commit, at_end: bool) -> anyhow::Result<()> {
        let kind = self.store.kind();
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            let Some((to, rows)) = build_batch(&self.files, &self.tables, &self.written, commit)?
            else {
                return Ok(());
            };
            self.transactions += 1;
            let crash_before_commit = self.crash_at(crate::checkpoint::Stage::SinkBeforeCommit);
            let crash_after_commit = self.crash_at(crate::checkpoint::Stage::SinkAfterCommit);
            let batch = Batch {
                pipeline: &self.pipeline,
                process: self.process,
                workers: self.workers.clone(),
                epoch: commit.epoch,
                to,
                rows,
                crash_before_commit,
                durable: at_end || self.last_durable.elapsed() >= DURABLE_EVERY,
            };
            let error = match self.store.write(&batch) {
                Ok(()) => {
                    if crash_after_commit {
                        crate::checkpoint::crash_here();
                    }
                    let count = batch.row_count() as u64;
                    if batch.durable {
                        self.last_durable = Instant::now();
                        self.durable = batch.to.clone();
                        self.files.hold_at(&self.durable);
                    }
                    self.written = batch.to;
                    self.rows += count;
                    self.metrics.add_sink_rows(kind, count);
                    return Ok(());
                }
                Err(DbError::Fatal(e)) => bail!("{kind} sink: {e:#}"),
                Err(DbError::Retry(e)) => e,
            };
            let mut error = error;
            // Wait for the database, then read what it holds.
            loop {
                if started.elapsed() > self.retry_for {
                    bail!(
                        "{kind} sink: {} unavailable for {:.0} s, giving up: {error:#}",
                        self.store.target(),
                        self.retry_for.as_secs_f64()
                    );
                }
                self.metrics.add_sink_retry(kind);
                tracing::warn!("{kind} sink: {error:#}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
                let back = self
                    .store
                    .reconnect()
                    .and_then(|()| self.store.progress(&self.pipeline, self.process));
                match back {
                    Ok(held) => {
                        self.written = held.unwrap_or_default();
                        // What a crash took is written again from its parts.
                        for (file, at) in &mut self.durable {
                            *at = (*at).min(self.written.get(file).copied().unwrap_or(0));
                        }
                        break;
                    }
                    Err(DbError::Fatal(e)) => bail!("{kind} sink: {e:#}"),
                    Err(DbError::Retry(e)) => error = e,
                }
            }
        }
    }

    /// Whether fault injection asks for a crash at `stage` of this transaction.
    fn crash_at(&self, stage: crate::checkpoint::Stage) -> bool {
        self.crash
            .as_ref()
            .is_some_and(|c| c.stage == stage && c.nth == self.transactions)
    }
}

/// How often a commit waits for the disk (see [`DatabaseSink::durable`]).
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The rows from `written` to `commit`, and the bytes of each file written
/// after them; none if that adds nothing.
fn build_batch<'a>(
    files: &CommittedFiles,
    tables: &'a [Table],
    written: &BTreeMap<String, u64>,
    commit: &Commit,
) -> anyhow::Result<Option<BatchRows<'a>>> {
    let mut rows = Vec::new();
    let mut to = written.clone();
    for table in tables {
        let Some(&end) = commit.lengths.get(&table.file) else {
            continue;
        };
        let from = written.get(&table.file).copied().unwrap_or(0);
        let block = files.read(&table.file, from, end)?;
        to.insert(table.file.clone(), block.end);
        if !block.bytes.is_empty() {
            rows.push((table, block.bytes));
        }
    }
    Ok((to != *written).then_some((to, rows)))
}

type BatchRows<'a> = (BTreeMap<String, u64>, Vec<(&'a Table, Vec<u8>)>);

/// Runs a sink beside the workers: every 100 ms it writes what was committed
/// since; at the end, everything. Returns the rows written. A sink that
/// fails says so at once and stops the run (`stop`), which then fails.
pub fn spawn(
    mut sink: DatabaseSink,
    finished: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<u64>> {
    std::thread::spawn(move || {
        while !finished.load(Relaxed) {
            let started = Instant::now();
            if let Err(e) = sink.step(false) {
                tracing::error!("{e:#}");
                stop.store(true, Relaxed);
                return Err(e);
            }
            // Every 100 ms, or at once when the last transaction took longer
            // (the database is behind: it should not also wait).
            let period = Duration::from_millis(100);
            std::thread::sleep(period.saturating_sub(started.elapsed()));
        }
        sink.step(true)?;
        Ok(sink.rows)
    })
}

/// `uri` with any password replaced by `***`, for messages.
pub(crate) fn without_password(uri: &str) -> String {
    if !uri.contains("://") {
        // `key=value` words (PostgreSQL): the password's value hidden.
        let words = uri.split_whitespace().map(|w| match w.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => w.to_string(),
        });
        return words.collect::<Vec<_>>().join(" ");
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if !credentials.contains('/') => {
            let user = credentials.split(':').next().unwrap_or_default();
            if credentials.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                uri.to_string()
            }
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_query_has_a_table_with_its_identity_among_its_columns() {
        let tables = crate::queries::QueryTables::default();
        for q in crate::queries::enabled(&tables, &[]).unwrap() {
            let table = Table::of(q.as_ref()).unwrap();
            let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            assert_eq!(names, q.output().columns(), "{}", q.id());
            assert!(!table.identity.is_empty(), "{} has no identity", q.id());
            for key in &table.identity {
                let column = table.columns.iter().find(|c| c.name == key);
                assert!(column.is_some_and(|c| !c.nullable), "{}: {key}", q.id());
            }
            assert!(
                table.time.is_some() || q.id() == "item_totals",
                "{}",
                q.id()
            );
        }
    }

    #[test]
    fn column_types_come_from_the_row_type() {
        let bars = Table::of(
            crate::queries::enabled(&Default::default(), &[])
                .unwrap()
                .iter()
                .find(|q| q.id() == "ewma")
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        let types: Vec<(&str, ColumnType, bool)> = bars
            .columns
            .iter()
            .map(|c| (c.name, c.ty, c.nullable))
            .collect();
        assert_eq!(
            types,
            [
                ("symbol", ColumnType::Text, false),
                ("ts_ms", ColumnType::Integer, false),
                ("price", ColumnType::Real, false),
                ("ewma", ColumnType::Real, false),
                ("ewm_vol", ColumnType::Real, true),
                ("seq", ColumnType::Integer, false),
            ]
        );
        assert_eq!(
            bars.upsert_clause(),
            " ON CONFLICT (\"seq\", \"symbol\") DO UPDATE SET \"ts_ms\" = excluded.\"ts_ms\", \
             \"price\" = excluded.\"price\", \"ewma\" = excluded.\"ewma\", \"ewm_vol\" = excluded.\"ewm_vol\""
        );
    }
}
