//! `[sinks.kafka]`: the result rows of the queries published to Kafka, each
//! row once, even across crashes (read-back protocol, no transactions).
//!
//! The publisher follows the result files rather than the dataflow: a row is
//! published only once it is committed, that is once a checkpoint recorded
//! the length of its file past it (without checkpoints: once the run has
//! ended). Each message is one CSV row (`format = "csv"`) or one JSON object
//! (`format = "json"`), keyed by the row's first column, with headers
//! `eddy-query`, `eddy-process` and `eddy-offset` (the row's byte offset in
//! its file). After publishing up to a checkpoint the publisher writes a
//! progress record (the bytes of each file published) to
//! `TOPIC.eddy-progress`. Resuming (`--resume`), the files are cut back to
//! the checkpoint's lengths, so below the lesser of those and the progress
//! record the files are the very bytes already published; past it, the
//! resumed run writes the same rows as the first (as a multiset: workers
//! interleave differently), so the publisher reads back the rows of this
//! process the topic holds past that point and skips each of them once when
//! it meets it again. A crash anywhere (before, while or after publishing,
//! before the progress record) neither loses nor doubles a row.
//!
//! Progress records name the layout that wrote them; resumed on another
//! layout (or once the topic holds progress of one), a process compares its
//! files from their start with every row of the topic instead, skipping
//! each once when it meets it: rows moved between processes in the rescale.
//!
//! With `transactions = true` each checkpoint's rows and its progress record
//! are one Kafka transaction instead (the two-phase commit of Flink's
//! KafkaSink, committed once the checkpoint completes): the read-back then
//! finds nothing past the progress record. Brokers without transactions
//! (tansu, the broker the tests run) are refused at start with one line.

use super::{client_config, KafkaLog, BROKER_TIMEOUT};
use crate::committed::CommittedFiles;
use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// How a row becomes a message.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Csv,
    Json,
}

/// `[sinks.kafka]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub brokers: String,
    /// The topic of every query's rows (header `eddy-query` names the query),
    /// or with `topic_per_query`, the prefix of `TOPIC.QUERY_ID`.
    pub topic: String,
    #[serde(default)]
    pub topic_per_query: bool,
    #[serde(default)]
    pub format: Format,
    /// The queries published (default: every query of the run).
    #[serde(default)]
    pub queries: Option<Vec<String>>,
    /// Partitions of a result topic that is created (default 1).
    #[serde(default = "one")]
    pub partitions: i32,
    /// librdkafka settings passed through.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Each checkpoint's rows and progress record in one Kafka transaction
    /// (readers with `isolation.level = read_committed` see them together);
    /// needs checkpoints and brokers with transactions (tansu has none: the
    /// run then stops at start with one line).
    #[serde(default)]
    pub transactions: bool,
}

fn one() -> i32 {
    1
}

/// What a progress record holds: the bytes of each result file published.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Progress {
    epoch: u64,
    published: BTreeMap<String, u64>,
    /// The layout of the run that published (absent in older records).
    #[serde(default)]
    layout: Option<String>,
}

/// How a publisher starts: the layout of the run (recorded in its progress
/// records), whether it resumes and whether from another layout.
pub struct Start {
    pub layout: Option<String>,
    pub resume: bool,
    pub rescaled: bool,
}

/// Publishes committed result rows of one process (see the module doc).
pub struct ResultPublisher {
    config: KafkaSinkConfig,
    /// The result files published, and where they are committed to.
    files: CommittedFiles,
    process: usize,
    producer: ThreadedProducer<DefaultProducerContext>,
    published: BTreeMap<String, u64>,
    /// Rows already in the topic past `published` (resuming): (file, row) → copies.
    already: BTreeMap<(String, String), u64>,
    pub messages: u64,
    /// The run's layout, recorded in each progress record.
    layout: Option<String>,
}

impl ResultPublisher {
    pub fn new(
        config: &KafkaSinkConfig,
        out: &Path,
        checkpoints: Option<&Path>,
        process: usize,
        queries: &[String],
        start: Start,
    ) -> anyhow::Result<Self> {
        let files = CommittedFiles::new(
            out,
            checkpoints,
            process,
            queries,
            config.queries.as_deref(),
        );
        let topics: BTreeSet<String> = files
            .files
            .iter()
            .map(|(q, _): &(String, String)| topic_of(config, q))
            .collect();
        for (topic, partitions) in topics
            .iter()
            .map(|t| (t.clone(), config.partitions))
            .chain([(progress_topic(config), 1)])
        {
            super::produce::ensure_topic(&config.brokers, &topic, partitions, &config.options)?;
        }
        if config.transactions && checkpoints.is_none() {
            bail!("[sinks.kafka] transactions = true commits a transaction per checkpoint: it needs --checkpoint-dir");
        }
        let transactional_id = format!("eddy-sink-{}-{process}", config.topic);
        let mut client = client_config(
            &config.brokers,
            &[
                ("linger.ms", "5"),
                ("enable.idempotence", "true"),
                // A broker that cannot take the rows fails the run, not hangs it.
                ("message.timeout.ms", "30000"),
            ],
            &config.options,
        );
        if config.transactions {
            client.set("transactional.id", &transactional_id);
        }
        let producer: ThreadedProducer<DefaultProducerContext> =
            client.create().with_context(|| {
                format!(
                    "kafka sink: cannot create a producer for {}",
                    config.brokers
                )
            })?;
        if config.transactions {
            // A probe transaction (one empty message to the progress topic,
            // which readers skip): some brokers take the first steps and
            // refuse only the commit.
            let probe = || -> anyhow::Result<()> {
                producer.init_transactions(BROKER_TIMEOUT)?;
                producer.begin_transaction()?;
                let topic = progress_topic(config);
                producer
                    .send(BaseRecord::<str, str>::to(&topic).key("eddy-transaction-probe"))
                    .map_err(|(e, _)| e)?;
                producer.commit_transaction(BROKER_TIMEOUT)?;
                Ok(())
            };
            probe().map_err(|e| {
                anyhow::anyhow!(
                    "kafka sink: the brokers at {} refuse transactions ({e}); \
                     without `transactions = true` the sink is exactly once by read-back",
                    config.brokers
                )
            })?;
        }
        let mut publisher = ResultPublisher {
            config: config.clone(),
            files,
            process,
            producer,
            published: BTreeMap::new(),
            already: BTreeMap::new(),
            messages: 0,
            layout: start.layout.clone(),
        };
        if start.resume {
            publisher.read_back(start.rescaled)?;
        }
        Ok(publisher)
    }

    /// Which mode the run uses, for the start of the run.
    pub fn mode(&self) -> String {
        match self.files.checkpointed() {
            true if self.config.transactions => format!(
                "kafka sink to {}: exactly once, each checkpoint's rows and progress in one Kafka transaction",
                self.config.topic
            ),
            true => format!(
                "kafka sink to {}: exactly once, each checkpoint's rows published once it completes (read-back, no transactions)",
                self.config.topic
            ),
            false => format!(
                "kafka sink to {}: rows published when the run ends (no checkpoints: a crash publishes nothing)",
                self.config.topic
            ),
        }
    }

    fn topic_of(&self, query: &str) -> String {
        topic_of(&self.config, query)
    }

    fn progress_topic(&self) -> String {
        progress_topic(&self.config)
    }

    /// Resuming: the last progress record of this process, the lengths the
    /// resumed checkpoint committed, and the rows published past the lesser.
    /// Once the topic holds records of another layout (a rescale: rows
    /// moved between processes), every row of the topic counts instead and
    /// the result files are compared from their start (see [`Self::skip_all_published`]).
    fn read_back(&mut self, rescaled: bool) -> anyhow::Result<()> {
        let consumer: BaseConsumer<KafkaLog> = client_config(
            &self.config.brokers,
            &[("enable.partition.eof", "true")],
            &self.config.options,
        )
        .set("group.id", "eddy-sink-read-back")
        .set("enable.auto.commit", "false")
        .create_with_context(KafkaLog::default())?;
        let progress_topic = self.progress_topic();
        let mut other_layouts = rescaled;
        for (_, _, payload) in read_all(&consumer, &progress_topic)? {
            if let Ok((process, progress)) = serde_json::from_slice::<(usize, Progress)>(&payload) {
                other_layouts |= progress.layout.is_some() && progress.layout != self.layout;
                if process == self.process {
                    self.published = progress.published;
                }
            }
        }
        if other_layouts {
            return self.skip_all_published(&consumer);
        }
        let committed = self.files.resumed_lengths()?;
        for (file, len) in self.published.iter_mut() {
            *len = (*len).min(committed.get(file).copied().unwrap_or(0));
        }
        let me = self.process.to_string();
        let published = self.published.clone();
        self.note_rows_in_topics(&consumer, |headers, file| {
            let offset = headers.get("eddy-offset").and_then(|o| o.parse().ok());
            headers.get("eddy-process") == Some(&me)
                && offset.unwrap_or(u64::MAX) >= published.get(file).copied().unwrap_or(0)
        })?;
        tracing::info!(
            "kafka sink: resuming after {} published bytes; {} rows already in the topic past them",
            self.published.values().sum::<u64>(),
            self.already.values().sum::<u64>()
        );
        Ok(())
    }

    /// After a rescale the rows a process holds were published by whichever
    /// old process held them then, at offsets of its own files: this
    /// process compares its files from their start with every row the topic
    /// holds, skipping each row it meets once. A row in the topic belongs
    /// to one process of the run (its key's, or its window's), and
    /// everything published is a committed row or one the run writes again,
    /// so each is met once, by that process.
    fn skip_all_published(&mut self, consumer: &BaseConsumer<KafkaLog>) -> anyhow::Result<()> {
        self.published.clear();
        self.note_rows_in_topics(consumer, |_, _| true)?;
        tracing::info!(
            "kafka sink: the topic holds rows published by another layout; \
             {} rows in it are skipped where this process meets them",
            self.already.values().sum::<u64>()
        );
        Ok(())
    }

    /// Notes in `already` each row of the result topics that `counts`
    /// (given the message's headers and the row's file) says to skip once.
    fn note_rows_in_topics(
        &mut self,
        consumer: &BaseConsumer<KafkaLog>,
        counts: impl Fn(&BTreeMap<String, String>, &str) -> bool,
    ) -> anyhow::Result<()> {
        let topics: BTreeSet<String> = self
            .files
            .files
            .iter()
            .map(|(q, _)| self.topic_of(q))
            .collect();
        for topic in topics {
            for (headers, _, payload) in read_all(consumer, &topic)? {
                let Some(q) = headers.get("eddy-query") else {
                    continue;
                };
                let file = crate::queries::file_name(q);
                if counts(&headers, &file) {
                    let row = String::from_utf8(payload)?;
                    *self.already.entry((file, row)).or_insert(0) += 1;
                }
            }
        }
        Ok(())
    }

    /// Publishes what the newest complete checkpoint committed (with
    /// checkpoints), or everything (`at_end`, without).
    pub fn publish_committed(&mut self, at_end: bool) -> anyhow::Result<()> {
        let Some(commit) = self.files.next(at_end)? else {
            return Ok(());
        };
        let (epoch, lengths) = (commit.epoch.unwrap_or(u64::MAX), commit.lengths);
        if self.config.transactions {
            self.producer
                .begin_transaction()
                .context("kafka sink: cannot begin a transaction")?;
        }
        let files = self.files.files.clone();
        for (query, name) in &files {
            let Some(&end) = lengths.get(name) else {
                continue;
            };
            self.publish_range(query, name, end)?;
        }
        self.producer
            .flush(Duration::from_secs(60))
            .context("kafka sink: rows not acknowledged")?;
        let progress = (
            self.process,
            Progress {
                epoch,
                published: self.published.clone(),
                layout: self.layout.clone(),
            },
        );
        let payload = serde_json::to_vec(&progress)?;
        let key = self.process.to_string();
        let topic = self.progress_topic();
        self.send(BaseRecord::to(&topic).key(&key).payload(&payload))?;
        if self.config.transactions {
            self.producer
                .commit_transaction(Duration::from_secs(60))
                .context("kafka sink: the transaction did not commit")?;
        }
        self.producer
            .flush(Duration::from_secs(60))
            .context("kafka sink: progress not acknowledged")?;
        // The brokers acknowledged it all: the parts before may go.
        self.files.hold_at(&self.published);
        Ok(())
    }

    /// Publishes the rows of `name` from what was published up to `end`.
    fn publish_range(&mut self, query: &str, name: &str, end: u64) -> anyhow::Result<()> {
        let from = self.published.get(name).copied().unwrap_or(0);
        let block = self.files.read(name, from, end)?;
        let topic = self.topic_of(query);
        for (row_offset, row) in block.rows() {
            let payload = match self.config.format {
                Format::Csv => row.to_string(),
                Format::Json => to_json(&block.columns, row)?,
            };
            if let Some(copies) = self.already.get_mut(&(name.to_string(), payload.clone())) {
                if *copies > 0 {
                    *copies -= 1;
                    continue;
                }
            }
            let key = first_field(row);
            let process = self.process.to_string();
            let at = row_offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "eddy-query",
                    value: Some(query),
                })
                .insert(Header {
                    key: "eddy-process",
                    value: Some(&process),
                })
                .insert(Header {
                    key: "eddy-offset",
                    value: Some(&at),
                });
            self.send(
                BaseRecord::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .headers(headers),
            )?;
            self.messages += 1;
        }
        self.published.insert(name.to_string(), block.end);
        Ok(())
    }

    fn send<K, P>(&self, mut record: BaseRecord<'_, K, P>) -> anyhow::Result<()>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, back)) => bail!("kafka sink: cannot publish to {}: {e}", back.topic),
            }
        }
    }
}

/// The topic of a query's rows.
fn topic_of(config: &KafkaSinkConfig, query: &str) -> String {
    if config.topic_per_query {
        format!("{}.{query}", config.topic)
    } else {
        config.topic.clone()
    }
}

/// The topic of the progress records.
fn progress_topic(config: &KafkaSinkConfig) -> String {
    format!("{}.eddy-progress", config.topic)
}

/// The first CSV field of a row (the message key).
fn first_field(row: &str) -> String {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(row.as_bytes())
        .records()
        .next()
        .and_then(|r| r.ok())
        .and_then(|r| r.get(0).map(str::to_string))
        .unwrap_or_default()
}

/// A CSV row as a JSON object of its columns (numbers as numbers).
fn to_json(columns: &[String], row: &str) -> anyhow::Result<String> {
    let record = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(row.as_bytes())
        .records()
        .next()
        .context("empty row")??;
    let mut object = serde_json::Map::new();
    for (name, value) in columns.iter().zip(record.iter()) {
        let v = match value.parse::<f64>() {
            Ok(n) if n.is_finite() => serde_json::json!(n),
            _ if value.is_empty() => serde_json::Value::Null,
            _ => serde_json::Value::String(value.to_string()),
        };
        object.insert(name.clone(), v);
    }
    Ok(serde_json::Value::Object(object).to_string())
}

/// A message read back: (headers, key, payload).
type ReadMessage = (BTreeMap<String, String>, Vec<u8>, Vec<u8>);

/// Every message of `topic` from the start: (headers, key, payload). A
/// missing topic has none.
fn read_all(consumer: &BaseConsumer<KafkaLog>, topic: &str) -> anyhow::Result<Vec<ReadMessage>> {
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT) else {
        return Ok(Vec::new());
    };
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut open: BTreeSet<i32> = partitions.into_iter().collect();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        if std::time::Instant::now() > deadline {
            bail!("kafka sink: reading back {topic} took over 60 s");
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => bail!("kafka sink: reading back {topic}: {e}"),
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for i in 0..h.count() {
                        let header = h.get(i);
                        if let Some(v) = header.value {
                            headers.insert(
                                header.key.to_string(),
                                String::from_utf8_lossy(v).into_owned(),
                            );
                        }
                    }
                }
                out.push((
                    headers,
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
    }
    Ok(out)
}

/// Runs a publisher beside the workers: every 200 ms it publishes what the
/// newest checkpoint committed; at the end, everything.
pub fn spawn(
    mut publisher: ResultPublisher,
    finished: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<u64>> {
    std::thread::spawn(move || {
        while !finished.load(Relaxed) {
            if publisher.files.checkpointed() {
                publisher.publish_committed(false)?;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        publisher.publish_committed(true)?;
        Ok(publisher.messages)
    })
}
