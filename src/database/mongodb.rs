//! The MongoDB store (`[sinks.mongodb]`, `--mongodb URI`): a collection per
//! query, a document per row.
//!
//! A document holds the row's fields typed (64-bit integers, doubles,
//! booleans, strings; an empty field of an optional column is absent) and
//! `_id`, the row's identity (the SQL sinks' primary key): the identity
//! column's value, or the identity columns' values joined by `|` in order
//! when there are several (`"SYM001|1700000000000"`). Every write is an
//! upsert by `_id` (unordered `bulkWrite`s of up to [`ROWS_PER_COMMAND`]
//! rows: MongoDB 8.0 or later), so a row written again replaces itself.
//! Each collection is indexed by its key (the first identity column that is
//! not the time) and by time.
//!
//! Progress is a document per worker in `eddy_progress` (`_id`: pipeline,
//! process, worker; `epoch`, `published`: the bytes of each file written,
//! `committed_at`). Where the server runs transactions (a replica set or a
//! sharded cluster), a checkpoint's rows and the progress documents are one
//! transaction; on a standalone server they are written one after the
//! other, rows first: an epoch replayed after a crash rewrites the same
//! `_id`s, which is harmless, and the progress then skips it.

use super::fields::{for_each_row, Field};
use super::without_password;
use super::{Batch, DbError, Store, Table};
use anyhow::anyhow;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error, ErrorKind};
use mongodb::options::{ReplaceOneModel, WriteModel};
use mongodb::sync::{Client, ClientSession, Database};
use std::collections::BTreeMap;

/// Rows per `update` command (the server takes up to 100 000 and 48 MB).
const ROWS_PER_COMMAND: usize = 5_000;

/// How long a command waits for a server before it fails (unless the URI
/// says `serverSelectionTimeoutMS` / `connectTimeoutMS`).
const SERVER_SELECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A MongoDB database.
pub struct MongoStore {
    uri: String,
    options: mongodb::options::ClientOptions,
    database_name: String,
    client: Client,
    database: Database,
    /// Whether the server runs multi-document transactions.
    transactions: bool,
}

/// Network trouble and a server not (yet) selectable are waited for;
/// everything else (authentication, a bad command) ends the run.
fn classify(e: Error) -> DbError {
    let transient = e.contains_label("TransientTransactionError")
        || e.contains_label("RetryableWriteError")
        || matches!(
            *e.kind,
            ErrorKind::Io(_)
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::ConnectionPoolCleared { .. }
        );
    let e = anyhow!("{}", e.kind);
    if transient {
        DbError::Retry(e)
    } else {
        DbError::Fatal(e)
    }
}

impl MongoStore {
    /// Connects to `uri` and asks the server what it is: a bad URI, a
    /// refused authentication or a server that does not answer is the
    /// run's error, in one line.
    /// The database is `database`, else the URI's path, else `eddy`.
    pub fn connect(uri: &str, database: Option<&str>) -> anyhow::Result<MongoStore> {
        let (full_uri, uri) = (uri, without_password(uri));
        let mut options = mongodb::options::ClientOptions::parse(full_uri)
            .run()
            .map_err(|e| anyhow!("mongodb sink: {uri}: {}", e.kind))?;
        // A server that is not there is said in seconds, not the driver's 30.
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        options
            .connect_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        let database_name = database
            .map(str::to_string)
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| "eddy".to_string());
        let client = Client::with_options(options.clone())
            .map_err(|e| anyhow!("mongodb sink: {uri}: {}", e.kind))?;
        let database = client.database(&database_name);
        let hello = database
            .run_command(doc! { "hello": 1 })
            .run()
            .map_err(|e| anyhow!("mongodb sink: {uri}: {}", e.kind))?;
        let transactions =
            hello.contains_key("setName") || hello.get_str("msg").is_ok_and(|m| m == "isdbgrid");
        // bulkWrite came with MongoDB 8.0 (wire version 25).
        let wire = hello
            .get_i32("maxWireVersion")
            .map(i64::from)
            .or_else(|_| hello.get_i64("maxWireVersion"))
            .unwrap_or(0);
        if wire < 25 {
            anyhow::bail!(
                "mongodb sink: {uri}: the server speaks wire version {wire}; \
                 the sink's bulk writes need MongoDB 8.0 or later (wire version 25)"
            );
        }
        // A command that needs authentication where the server asks for it.
        database
            .run_command(doc! { "listCollections": 1, "nameOnly": true })
            .run()
            .map_err(|e| anyhow!("mongodb sink: {uri}: {}", e.kind))?;
        Ok(MongoStore {
            uri: uri.to_string(),
            options,
            database_name,
            client,
            database,
            transactions,
        })
    }

    /// Writes the rows of `bytes` into `table`'s collection, replacing any
    /// with the same `_id`.
    fn upsert_rows(
        &self,
        table: &Table,
        bytes: &[u8],
        session: &mut Option<ClientSession>,
    ) -> Result<(), DbError> {
        let identity: Vec<usize> = table
            .identity
            .iter()
            .filter_map(|k| table.columns.iter().position(|c| c.name == k))
            .collect();
        let mut documents: Vec<Document> = Vec::with_capacity(ROWS_PER_COMMAND);
        for_each_row(table, bytes, |row| {
            let mut document = Document::new();
            let mut values = Vec::with_capacity(row.len());
            for (column, field) in table.columns.iter().zip(row.fields()) {
                let value = bson_of(field?);
                if value != Bson::Null {
                    document.insert(column.name, value.clone());
                }
                values.push(value);
            }
            document.insert("_id", identity_of(&values, &identity));
            documents.push(document);
            if documents.len() == ROWS_PER_COMMAND {
                self.replace(&table.name, std::mem::take(&mut documents), session)?;
            }
            Ok(())
        })?;
        if !documents.is_empty() {
            self.replace(&table.name, documents, session)?;
        }
        Ok(())
    }

    /// Replaces the documents with their `_id`s in `collection` (upserts),
    /// in one unordered `bulkWrite`.
    fn replace(
        &self,
        collection: &str,
        documents: Vec<Document>,
        session: &mut Option<ClientSession>,
    ) -> Result<(), DbError> {
        let namespace = self.database.collection::<Document>(collection).namespace();
        let models: Vec<WriteModel> = documents
            .into_iter()
            .map(|d| {
                let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                ReplaceOneModel::builder()
                    .namespace(namespace.clone())
                    .filter(doc! { "_id": id })
                    .replacement(d)
                    .upsert(true)
                    .build()
                    .into()
            })
            .collect();
        let write = self.client.bulk_write(models).ordered(false);
        match session.as_mut() {
            Some(s) => write.session(s).run(),
            None => write.run(),
        }
        .map_err(classify)?;
        Ok(())
    }

    /// The progress documents of `batch`, replacing the ones before.
    fn write_progress(
        &self,
        batch: &Batch,
        session: &mut Option<ClientSession>,
    ) -> Result<(), DbError> {
        let published: Document = batch
            .to
            .iter()
            .map(|(file, bytes)| (file.clone(), Bson::Int64(*bytes as i64)))
            .collect();
        let now = mongodb::bson::DateTime::now();
        let documents: Vec<Document> = batch
            .workers
            .clone()
            .map(|worker| {
                let mut document = doc! {
                    "_id": progress_id(batch.pipeline, batch.process, worker),
                    "pipeline": batch.pipeline,
                    "process": batch.process as i64,
                    "worker": worker as i64,
                    "published": published.clone(),
                    "committed_at": now,
                };
                if let Some(epoch) = batch.epoch {
                    document.insert("epoch", epoch as i64);
                }
                document
            })
            .collect();
        self.replace("eddy_progress", documents, session)
    }
}

/// A row's `_id`: its one identity value, or its identity values joined by
/// `|`. A string rather than a sub-document: the test server (SecantusDB)
/// fails transactions that upsert documents with a sub-document `_id`.
fn identity_of(values: &[Bson], identity: &[usize]) -> Bson {
    match identity {
        [one] => values[*one].clone(),
        many => Bson::String(
            many.iter()
                .map(|&i| match &values[i] {
                    Bson::String(s) => s.clone(),
                    Bson::Null => String::new(),
                    v => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|"),
        ),
    }
}

fn progress_id(pipeline: &str, process: usize, worker: usize) -> String {
    format!("{pipeline}|{process}|{worker}")
}

/// A typed field as BSON.
fn bson_of(field: Field) -> Bson {
    match field {
        Field::Null => Bson::Null,
        Field::Integer(v) => Bson::Int64(v),
        Field::Real(v) => Bson::Double(v),
        Field::Boolean(v) => Bson::Boolean(v),
        Field::Text(v) => Bson::String(v.to_string()),
    }
}

impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn target(&self) -> String {
        format!("{} (database {})", self.uri, self.database_name)
    }

    fn exactly_once_how(&self) -> &'static str {
        if self.transactions {
            "each checkpoint's rows in one transaction with eddy_progress"
        } else {
            "a standalone server without transactions: each checkpoint's rows upserted by _id, then eddy_progress"
        }
    }

    fn prepare(&mut self, tables: &[Table]) -> Result<(), DbError> {
        for table in tables {
            let key = table
                .identity
                .iter()
                .find(|k| Some(*k) != table.time.as_ref());
            let indexes: Vec<Document> = [("by_key", key), ("by_time", table.time.as_ref())]
                .into_iter()
                .filter_map(|(name, column)| {
                    let column = column?;
                    Some(doc! { "key": { column.as_str(): 1 }, "name": format!("{}_{name}", table.name) })
                })
                .collect();
            if !indexes.is_empty() {
                self.database
                    .run_command(doc! { "createIndexes": &table.name, "indexes": indexes })
                    .run()
                    .map_err(classify)?;
            }
        }
        Ok(())
    }

    fn progress(
        &mut self,
        pipeline: &str,
        process: usize,
    ) -> Result<Option<BTreeMap<String, u64>>, DbError> {
        let found = self
            .database
            .collection::<Document>("eddy_progress")
            .find_one(doc! { "pipeline": pipeline, "process": process as i64 })
            .run()
            .map_err(classify)?;
        let Some(found) = found else {
            return Ok(None);
        };
        let published = found
            .get_document("published")
            .map_err(|e| DbError::Fatal(anyhow!("eddy_progress.published: {e}")))?;
        let mut lengths = BTreeMap::new();
        for (file, bytes) in published {
            let bytes = bytes.as_i64().ok_or_else(|| {
                DbError::Fatal(anyhow!("eddy_progress.published.{file}: {bytes}"))
            })?;
            lengths.insert(file.clone(), bytes as u64);
        }
        Ok(Some(lengths))
    }

    fn reset(
        &mut self,
        pipeline: &str,
        process: usize,
        keep_workers: std::ops::Range<usize>,
    ) -> Result<(), DbError> {
        let (start, end) = (keep_workers.start as i64, keep_workers.end as i64);
        self.database
            .collection::<Document>("eddy_progress")
            .delete_many(doc! {
                "pipeline": pipeline,
                "process": process as i64,
                "$or": [{ "worker": { "$lt": start } }, { "worker": { "$gte": end } }],
            })
            .run()
            .map_err(classify)?;
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> Result<(), DbError> {
        let mut session = if self.transactions {
            let mut s = self.client.start_session().run().map_err(classify)?;
            s.start_transaction().run().map_err(classify)?;
            Some(s)
        } else {
            None
        };
        for (table, bytes) in &batch.rows {
            self.upsert_rows(table, bytes, &mut session)?;
        }
        self.write_progress(batch, &mut session)?;
        batch.before_commit();
        if let Some(s) = session.as_mut() {
            s.commit_transaction().run().map_err(classify)?;
        }
        Ok(())
    }

    fn reconnect(&mut self) -> Result<(), DbError> {
        let client = Client::with_options(self.options.clone()).map_err(classify)?;
        self.database = client.database(&self.database_name);
        self.client = client;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_of_several_columns_is_one_string() {
        let values = [
            Bson::String("SYM004".into()),
            Bson::Int64(1_700_000_001_000),
            Bson::Double(101.5),
        ];
        assert_eq!(
            identity_of(&values, &[0, 1]),
            Bson::String("SYM004|1700000001000".into())
        );
        assert_eq!(identity_of(&values, &[1]), Bson::Int64(1_700_000_001_000));
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            without_password("mongodb://eddy:s3cret@db:27017/x?authSource=admin"),
            "mongodb://eddy:***@db:27017/x?authSource=admin"
        );
        assert_eq!(
            without_password("mongodb://eddy@db/x"),
            "mongodb://eddy@db/x"
        );
        assert_eq!(without_password("mongodb://db/x"), "mongodb://db/x");
        assert_eq!(without_password("not a uri"), "not a uri");
    }
}
