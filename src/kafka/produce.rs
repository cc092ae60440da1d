//! `eddy produce`: publishes a generator's stream or a recorded CSV file to a
//! Kafka topic, one WORKLOAD.md row per message, keyed by symbol (trades) or
//! item (interactions). The topic is created with `--partitions` when it is
//! missing. With `--rate`, messages follow an open-loop schedule (message `i`
//! is due `i / rate` seconds after the start, whatever the broker's pace) and
//! the lag behind it is reported; without, they go as fast as the broker
//! takes them.

use super::{client_config, BROKER_TIMEOUT};
use crate::record::{Event, Trade};
use crate::sources::{Batch, Poll, Source};
use crate::time::Watermark;
use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What `eddy produce` was asked.
pub struct Produce {
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic if it is created.
    pub partitions: i32,
    /// Messages per second; none: as fast as possible.
    pub rate: Option<f64>,
    /// librdkafka settings passed through.
    pub options: BTreeMap<String, String>,
}

/// What a produce did.
#[derive(Debug)]
pub struct Produced {
    pub stream: &'static str,
    pub messages: u64,
    pub seconds: f64,
    /// The largest delay behind the open-loop schedule (with a rate).
    pub max_lag_ms: f64,
}

/// The field a stream's messages are keyed by: the symbol of a trade, the
/// item of an interaction.
fn key_field(stream: &str) -> usize {
    if stream == Trade::STREAM {
        1
    } else {
        2
    }
}

/// A topic's producer and its pacing.
struct Publisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    key_field: usize,
    rate: Option<f64>,
    started: Instant,
    sent: u64,
    max_lag_ms: f64,
}

impl Publisher {
    fn open(how: &Produce, stream: &'static str) -> anyhow::Result<Self> {
        ensure_topic(&how.brokers, &how.topic, how.partitions, &how.options)?;
        let producer: ThreadedProducer<DefaultProducerContext> = client_config(
            &how.brokers,
            &[("linger.ms", "5"), ("enable.idempotence", "true")],
            &how.options,
        )
        .create()
        .with_context(|| format!("kafka: cannot create a producer for {}", how.brokers))?;
        Ok(Publisher {
            producer,
            topic: how.topic.clone(),
            key_field: key_field(stream),
            rate: how.rate,
            started: Instant::now(),
            sent: 0,
            max_lag_ms: 0.0,
        })
    }

    /// Publishes one row, waiting for its turn (with a rate) and for room in
    /// the client's queue.
    fn publish(&mut self, line: &str) -> anyhow::Result<()> {
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.sent as f64 / rate);
            let now = self.started.elapsed();
            if now < due {
                std::thread::sleep(due - now);
            } else {
                self.max_lag_ms = self.max_lag_ms.max((now - due).as_secs_f64() * 1e3);
            }
        }
        let key = line.split(',').nth(self.key_field).unwrap_or("");
        let mut record = BaseRecord::to(&self.topic).key(key).payload(line);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("kafka: cannot publish to {}: {e}", self.topic),
            }
        }
        self.sent += 1;
        Ok(())
    }

    fn finish(self, stream: &'static str) -> anyhow::Result<Produced> {
        self.producer
            .flush(Duration::from_secs(60))
            .with_context(|| format!("kafka: messages to {} not acknowledged", self.topic))?;
        Ok(Produced {
            stream,
            messages: self.sent,
            seconds: self.started.elapsed().as_secs_f64(),
            max_lag_ms: self.max_lag_ms,
        })
    }
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub(crate) fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    options: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let probe: BaseConsumer = client_config(brokers, &[], options)
        .create()
        .with_context(|| format!("kafka: cannot create a client for {}", brokers))?;
    let metadata = probe
        .fetch_metadata(None, BROKER_TIMEOUT)
        .with_context(|| format!("kafka: cannot reach brokers {}", brokers))?;
    if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
        if t.error().is_none() && !t.partitions().is_empty() {
            if t.partitions().len() as i32 != partitions {
                tracing::warn!(
                    "topic {} exists with {} partitions (not {}); publishing to it as it is",
                    topic,
                    t.partitions().len(),
                    partitions
                );
            }
            return Ok(());
        }
    }
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, &[], options)
        .create()
        .context("kafka: cannot create an admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime
        .block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("kafka: cannot create topic {}", topic))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, e)) => bail!("kafka: cannot create topic {name}: {e}"),
        }
    }
    Ok(())
}

/// Publishes the data rows of a trades.csv or interactions.csv file (the
/// header says which), blank lines skipped.
pub fn produce_file(path: &Path, how: &Produce) -> anyhow::Result<Produced> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let stream = crate::record::stream_of_header(path, lines.next().unwrap_or(""))?;
    let mut publisher = Publisher::open(how, stream)?;
    for line in lines.map(str::trim_end).filter(|l| !l.is_empty()) {
        publisher.publish(line)?;
    }
    publisher.finish(stream)
}

/// Publishes `count` records of a generator, in arrival order.
pub fn produce_generated<E: Event>(
    mut source: impl Source<E>,
    count: u64,
    how: &Produce,
) -> anyhow::Result<Produced> {
    let mut publisher = Publisher::open(how, E::STREAM)?;
    // No watermark applies: every record is published as generated.
    let mut watermark = Watermark::new(u64::MAX);
    let mut batch = Batch::default();
    while publisher.sent < count {
        batch.clear();
        let poll = source.next_batch(&mut batch, &mut watermark)?;
        for record in batch.on_time.iter().take((count - publisher.sent) as usize) {
            publisher.publish(&record.to_csv_line())?;
        }
        if poll == Poll::Done {
            break;
        }
    }
    publisher.finish(E::STREAM)
}
