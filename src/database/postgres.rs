//! The PostgreSQL store of the database sink: one connection (no TLS: a
//! local server, or one reached through a tunnel), tables in `schema`.
//! Each transaction streams the rows' CSV bytes as they are in the result
//! files with `COPY ... FROM STDIN (FORMAT csv)` into the query's table;
//! when a row is there already (a run over input written before: `COPY`
//! cannot upsert), that table's rows go to a temporary staging table
//! instead and are upserted from there. Then the process's `eddy_progress`
//! rows are written and the transaction committed.
//!
//! A lost connection, a server shutting down or starting up, a deadlock or
//! a serialization failure are worth waiting for; every other error (bad
//! URL, authentication, permission, full disk) is not.

use super::{progress_table, Batch, DbError, Store, Table};
use crate::sinks::ColumnType;
use anyhow::anyhow;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use std::collections::BTreeMap;
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

pub struct PostgresStore {
    config: Config,
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
        let mut config =
            Config::from_str(url).map_err(|e| anyhow!("postgres sink: bad URL {url:?}: {e}"))?;
        config.connect_timeout(Duration::from_secs(10));
        let target = describe(&config);
        let client = config
            .connect(NoTls)
            .map_err(|e| anyhow!("postgres sink: cannot connect to {target}: {e}"))?;
        Ok(PostgresStore {
            config,
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
    /// is back (or resuming), writes those rows again. The run's last
    /// transaction waits (see [`Store::write`] with `final_commit`).
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

/// Streams CSV rows into a `COPY ... FROM STDIN` statement.
fn copy_rows(
    transaction: &mut postgres::Transaction,
    copy: &str,
    bytes: &[u8],
) -> Result<(), postgres::Error> {
    let mut writer = transaction.copy_in(copy)?;
    // A failed write shows as the error `finish` returns.
    let _ = writer.write_all(bytes);
    writer.finish().map(|_| ())
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

    fn reset(&mut self, pipeline: &str, process: usize) -> Result<(), DbError> {
        let sql = format!(
            "DELETE FROM {} WHERE pipeline = $1 AND process = $2",
            self.qualified("eddy_progress")
        );
        self.client
            .execute(&sql, &[&pipeline, &(process as i64)])
            .map_err(classify)?;
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> Result<(), DbError> {
        let statements: Vec<(String, String, String, &[u8])> = batch
            .rows
            .iter()
            .map(|(table, bytes)| {
                let stage = PostgresStore::stage(&table.name);
                let direct = format!(
                    "COPY {} ({}) FROM STDIN (FORMAT csv)",
                    self.qualified(&table.name),
                    table.column_list()
                );
                let copy = format!(
                    "COPY {stage} ({}) FROM STDIN (FORMAT csv)",
                    table.column_list()
                );
                let upsert = format!(
                    "INSERT INTO {} ({1}) SELECT {1} FROM {stage}{2}",
                    self.qualified(&table.name),
                    table.column_list(),
                    table.upsert_clause()
                );
                (direct, copy, upsert, bytes.as_slice())
            })
            .collect();
        let progress_sql = super::progress_upsert(
            &self.qualified("eddy_progress"),
            r#"to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
        );
        let mut transaction = self.client.transaction().map_err(classify)?;
        for (direct, copy, upsert, bytes) in statements {
            // Straight into the table, unless a row is there already (a run
            // over input written before): then staged and upserted.
            let mut attempt = transaction.savepoint("direct").map_err(classify)?;
            match copy_rows(&mut attempt, &direct, bytes) {
                Ok(()) => attempt.commit().map_err(classify)?,
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    attempt.rollback().map_err(classify)?;
                    copy_rows(&mut transaction, &copy, bytes).map_err(classify)?;
                    transaction.batch_execute(&upsert).map_err(classify)?;
                }
                Err(e) => return Err(classify(e)),
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
        batch.before_commit();
        transaction.commit().map_err(classify)
    }

    fn reconnect(&mut self) -> Result<(), DbError> {
        self.client = self.config.connect(NoTls).map_err(classify)?;
        self.create_stages()
    }
}
