//! The SQLite store of the database sink: a file, written through the
//! bundled SQLite library in WAL mode (readers such as `sqlite3` or Grafana
//! see the last committed epoch while the run writes the next). Each row is
//! bound to a prepared upsert with its typed values: integers and floats
//! parsed from the CSV text (so a float is stored with every bit), empty
//! fields as NULL.

use super::fields::{for_each_row, Field};
use super::{progress_table, Batch, DbError, Store, Table};
use crate::sinks::ColumnType;
use anyhow::{anyhow, Context};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct SqliteStore {
    path: PathBuf,
    connection: Connection,
}

/// A locked or busy database is worth waiting for; anything else is not.
fn classify(e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::Retry(e.into()),
        _ => DbError::Fatal(e.into()),
    }
}

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer | ColumnType::Boolean => "INTEGER",
        ColumnType::Real => "REAL",
        ColumnType::Text => "TEXT",
    }
}

fn open(path: &Path) -> Result<Connection, DbError> {
    let connection = Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))
        .map_err(DbError::Fatal)?;
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    // WAL: readers do not block the writer; NORMAL: a killed process loses
    // no committed transaction (only a power cut could lose the last).
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .and_then(|_| connection.pragma_update(None, "synchronous", "NORMAL"))
        // 64 MiB of pages: the indexes' working set stays in memory.
        .and_then(|_| connection.pragma_update(None, "cache_size", -65_536))
        .map_err(|e| match classify(e) {
            DbError::Fatal(e) => {
                DbError::Fatal(e.context(format!("cannot write {}", path.display())))
            }
            retry => retry,
        })?;
    Ok(connection)
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let connection = open(path).map_err(|e| anyhow!("sqlite sink: {e}"))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            connection,
        })
    }
}

/// A typed field as SQLite's value (text borrowed, not copied).
impl rusqlite::ToSql for Field<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Field::Null => ValueRef::Null,
            Field::Integer(v) => ValueRef::Integer(v),
            Field::Real(v) => ValueRef::Real(v),
            Field::Boolean(v) => ValueRef::Integer(v as i64),
            Field::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn prepare(&mut self, tables: &[Table]) -> Result<(), DbError> {
        for table in tables {
            let found: Vec<String> = self
                .connection
                .prepare(&format!(
                    "PRAGMA table_info({})",
                    Table::quoted(&table.name)
                ))
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, String>(1))?
                        .collect::<Result<_, _>>()
                })
                .map_err(classify)?;
            table.check_existing(&found).map_err(DbError::Fatal)?;
            let mut statements = table.create_statements(&Table::quoted(&table.name), sql_type, "");
            if !table.identity.is_empty() {
                // The rows kept in primary-key order: one b-tree less to update per row.
                statements[0].push_str(" WITHOUT ROWID");
            }
            for statement in statements {
                self.connection.execute(&statement, []).map_err(classify)?;
            }
        }
        self.connection
            .execute(&progress_table("eddy_progress", "INTEGER", "TEXT"), [])
            .map_err(classify)?;
        Ok(())
    }

    fn progress(
        &mut self,
        pipeline: &str,
        process: usize,
    ) -> Result<Option<BTreeMap<String, u64>>, DbError> {
        let published: Option<String> = self
            .connection
            .query_row(
                "SELECT published FROM eddy_progress WHERE pipeline = ?1 AND process = ?2 LIMIT 1",
                (pipeline, process as i64),
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(classify(e)),
            })?;
        published
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| DbError::Fatal(anyhow!("eddy_progress.published: {e}")))
    }

    fn reset(
        &mut self,
        pipeline: &str,
        process: usize,
        keep_workers: std::ops::Range<usize>,
    ) -> Result<(), DbError> {
        self.connection
            .execute(
                &super::progress_reset("eddy_progress"),
                (
                    pipeline,
                    process as i64,
                    keep_workers.start as i64,
                    keep_workers.end as i64,
                ),
            )
            .map_err(classify)?;
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> Result<(), DbError> {
        let transaction = self.connection.transaction().map_err(classify)?;
        for (table, bytes) in &batch.rows {
            let placeholders = vec!["?"; table.columns.len()].join(", ");
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({placeholders}){}",
                Table::quoted(&table.name),
                table.column_list(),
                table.upsert_clause()
            );
            let mut statement = transaction.prepare_cached(&sql).map_err(classify)?;
            for_each_row(table, bytes, |row| {
                for (i, field) in row.fields().enumerate() {
                    statement
                        .raw_bind_parameter(i + 1, field?)
                        .map_err(classify)?;
                }
                statement.raw_execute().map(drop).map_err(classify)
            })?;
        }
        {
            let mut progress = transaction
                .prepare_cached(&super::progress_upsert(
                    "eddy_progress",
                    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                ))
                .map_err(classify)?;
            for row in batch.progress_rows() {
                progress.execute(row).map_err(classify)?;
            }
        }
        batch.before_commit();
        transaction.commit().map_err(classify)
    }

    fn reconnect(&mut self) -> Result<(), DbError> {
        self.connection = open(&self.path)?;
        Ok(())
    }
}
