//! The PostgreSQL store of the database sink: one connection (TLS as the
//! URL's `sslmode` and `sslrootcert` say, see `pg_tls.rs`), tables in `schema`.
//! Each transaction parses the rows of the result files to their types and
//! streams them with a binary `COPY ... FROM STDIN` into the query's table
//! (the server stores values instead of parsing text); when a row is there
//! already (a run over input written before: `COPY` cannot upsert), that
//! table's rows go to a temporary staging table instead and are upserted
//! from there. Then the process's `eddy_progress`
//! rows are written and the transaction committed.
//!
//! A lost connection, a server shutting down or starting up, a deadlock or
//! a serialization failure are worth waiting for; every other error (bad
//! URL, authentication, permission, full disk) is not.

use super::fields::{for_each_row, Field, Row};
use super::pg_tls::{explain, PgTarget};
use super::{progress_table, Batch, DbError, Store, Table};
use crate::sinks::ColumnType;
use anyhow::anyhow;
use postgres::error::SqlState;
use postgres::{Client, Config};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

pub struct PostgresStore {
    server: PgTarget,
    /// `user@host:port/db`, without the password.
    target: String,
    schema: String,
    client: Client,
    tables: Vec<Table>,
}

fn classify(e: postgres::Error) -> DbError {
    let transient = match e.code() {
        None => true, // no answer from the server: the connection is gone
        Some(code) => {
            let class = &code.code()[..2];
            class == "08"
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
    };
    let e = anyhow::Error::from(e);
    if transient {
        DbError::Retry(e)
    } else {
        DbError::Fatal(e)
    }
}

fn is_unique_violation(e: &anyhow::Error) -> bool {
    e.downcast_ref::<postgres::Error>()
        .is_some_and(|e| e.code() == Some(&SqlState::UNIQUE_VIOLATION))
}

fn with_context(e: DbError, what: String) -> DbError {
    match e {
        DbError::Retry(e) => DbError::Retry(e.context(what)),
        DbError::Fatal(e) => DbError::Fatal(e.context(what)),
    }
}

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "BIGINT",
        ColumnType::Real => "DOUBLE PRECISION",
        ColumnType::Text => "TEXT",
        ColumnType::Boolean => "BOOLEAN",
    }
}

impl PostgresStore {
    /// Connects (within 10 s); any failure here is the run's one-line error.
    pub fn connect(url: &str, schema: &str) -> anyhow::Result<PostgresStore> {
        let mut server = PgTarget::parse(url).map_err(|e| {
            anyhow!(
                "postgres sink: bad URL {}: {e:#}",
                super::without_password(url)
            )
        })?;
        server.config.connect_timeout(Duration::from_secs(10));
        let target = describe(&server.config);
        let client = server
            .connect()
            .map_err(|e| anyhow!("postgres sink: cannot connect to {target}: {}", explain(&e)))?;
        Ok(PostgresStore {
            server,
            target,
            schema: schema.to_string(),
            client,
            tables: Vec::new(),
        })
    }

    fn qualified(&self, name: &str) -> String {
        format!("{}.{}", Table::quoted(&self.schema), Table::quoted(name))
    }

    fn stage(name: &str) -> String {
        Table::quoted(&format!("eddy_stage_{name}"))
    }

    /// The session's settings and staging tables (temporary: gone with
    /// the connection). Commits do not wait for the WAL to reach the disk:
    /// a server that crashes may lose its last commits, but their progress
    /// rows go with them, so the sink, reading them again when the server
    /// is back (or resuming), writes those rows again. About once a second,
    /// and at the run's end, a commit waits ([`super::Batch::durable`]).
    fn create_stages(&mut self) -> Result<(), DbError> {
        self.client
            .batch_execute("SET synchronous_commit = off")
            .map_err(classify)?;
        for table in &self.tables {
            let sql = format!(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS",
                PostgresStore::stage(&table.name),
                self.qualified(&table.name)
            );
            self.client.batch_execute(&sql).map_err(classify)?;
        }
        Ok(())
    }
}

/// Appends a row in the binary `COPY` format
/// (<https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>):
/// the field count, then each field's length (-1: NULL) and its value in
/// network byte order.
fn put_row(out: &mut Vec<u8>, row: Row) -> Result<(), DbError> {
    out.extend_from_slice(&(row.len() as i16).to_be_bytes());
    for field in row.fields() {
        let mut put = |value: &[u8]| {
            out.extend_from_slice(&(value.len() as i32).to_be_bytes());
            out.extend_from_slice(value);
        };
        match field? {
            Field::Null => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Field::Integer(v) => put(&v.to_be_bytes()),
            Field::Real(v) => put(&v.to_bits().to_be_bytes()),
            Field::Boolean(v) => put(&[v as u8]),
            Field::Text(v) => put(v.as_bytes()),
        }
    }
    Ok(())
}

/// Streams a table's CSV rows, parsed to their types, into a binary
/// `COPY ... FROM STDIN`: the server then stores values instead of parsing
/// text (its time per row drops by a quarter, and it is the busier side).
/// The rows are framed here rather than with `BinaryCopyInWriter`, whose
/// round through the async client per row cost more than the parsing.
fn copy_rows(
    transaction: &mut postgres::Transaction,
    into: &str,
    table: &Table,
    bytes: &[u8],
) -> Result<(), DbError> {
    let copy = format!(
        "COPY {into} ({}) FROM STDIN (FORMAT binary)",
        table.column_list()
    );
    let mut out = Vec::with_capacity(bytes.len() + 64);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&[0; 8]); // flags and header extension length
    for_each_row(table, bytes, |row| put_row(&mut out, row))?;
    out.extend_from_slice(&(-1i16).to_be_bytes());
    let mut writer = transaction.copy_in(&copy).map_err(classify)?;
    // A failed write shows as the error `finish` returns.
    let _ = writer.write_all(&out);
    writer.finish().map(drop).map_err(classify)
}

/// `user@host:port/db` of a connection config.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("")
    )
}

impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn prepare(&mut self, tables: &[Table]) -> Result<(), DbError> {
        // Created only when missing: a user may write to a schema it may not create.
        let exists = self
            .client
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&self.schema],
            )
            .map_err(classify)?
            .is_some();
        if !exists {
            let schema = Table::quoted(&self.schema);
            self.client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .map_err(|e| with_context(classify(e), format!("cannot create schema {schema}")))?;
        }
        for table in tables {
            let found: Vec<String> = self
                .client
                .query(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                    &[&self.schema, &table.name],
                )
                .map_err(classify)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            table.check_existing(&found).map_err(DbError::Fatal)?;
            // BRIN: rows arrive in about time order, so a block range index
            // answers time ranges for almost nothing per row (a b-tree on
            // `ts_ms` costs a third more per ewma row).
            let qualified = self.qualified(&table.name);
            for statement in table.create_statements(&qualified, sql_type, " USING brin") {
                self.client.batch_execute(&statement).map_err(|e| {
                    with_context(classify(e), format!("cannot create table {}", table.name))
                })?;
            }
        }
        let progress = progress_table(&self.qualified("eddy_progress"), "BIGINT", "TEXT");
        self.client.batch_execute(&progress).map_err(classify)?;
        self.tables = tables.to_vec();
        self.create_stages()
    }

    fn progress(
        &mut self,
        pipeline: &str,
        process: usize,
    ) -> Result<Option<BTreeMap<String, u64>>, DbError> {
        let sql = format!(
            "SELECT published FROM {} WHERE pipeline = $1 AND process = $2 LIMIT 1",
            self.qualified("eddy_progress")
        );
        let row = self
            .client
            .query_opt(&sql, &[&pipeline, &(process as i64)])
            .map_err(classify)?;
        row.map(|r| serde_json::from_str(r.get::<_, &str>(0)))
            .transpose()
            .map_err(|e| DbError::Fatal(anyhow!("eddy_progress.published: {e}")))
    }

    fn reset(
        &mut self,
        pipeline: &str,
        process: usize,
        keep_workers: std::ops::Range<usize>,
    ) -> Result<(), DbError> {
        let sql = super::progress_reset(&self.qualified("eddy_progress"));
        self.client
            .execute(
                &sql,
                &[
                    &pipeline,
                    &(process as i64),
                    &(keep_workers.start as i64),
                    &(keep_workers.end as i64),
                ],
            )
            .map_err(classify)?;
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> Result<(), DbError> {
        let progress_sql = super::progress_upsert(
            &self.qualified("eddy_progress"),
            r#"to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
        );
        let targets: Vec<String> = batch
            .rows
            .iter()
            .map(|(t, _)| self.qualified(&t.name))
            .collect();
        let mut transaction = self.client.transaction().map_err(classify)?;
        for ((table, bytes), direct) in batch.rows.iter().zip(targets) {
            // Straight into the table, unless a row is there already (a run
            // over input written before): then staged and upserted.
            let mut attempt = transaction.savepoint("direct").map_err(classify)?;
            match copy_rows(&mut attempt, &direct, table, bytes) {
                Ok(()) => attempt.commit().map_err(classify)?,
                Err(DbError::Fatal(e)) if is_unique_violation(&e) => {
                    attempt.rollback().map_err(classify)?;
                    let stage = PostgresStore::stage(&table.name);
                    copy_rows(&mut transaction, &stage, table, bytes)?;
                    let upsert = format!(
                        "INSERT INTO {direct} ({0}) SELECT {0} FROM {stage}{1}",
                        table.column_list(),
                        table.upsert_clause()
                    );
                    transaction.batch_execute(&upsert).map_err(classify)?;
                }
                Err(e) => return Err(e),
            }
        }
        for (pipeline, process, worker, epoch, published) in batch.progress_rows() {
            transaction
                .execute(
                    &progress_sql,
                    &[&pipeline, &process, &worker, &epoch, &published],
                )
                .map_err(classify)?;
        }
        if batch.durable {
            // Flushes the WAL to here: this commit and every one before.
            transaction
                .batch_execute("SET LOCAL synchronous_commit = on")
                .map_err(classify)?;
        }
        batch.before_commit();
        transaction.commit().map_err(classify)
    }

    fn reconnect(&mut self) -> Result<(), DbError> {
        self.client = self.server.connect().map_err(classify)?;
        self.create_stages()
    }
}
