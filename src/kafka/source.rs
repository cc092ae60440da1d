//! A Kafka topic as a stream's source: this worker's share of its partitions.
//!
//! Partition `p` of a topic belongs to worker `p % n` of all `n` workers of
//! all processes; each worker assigns itself its partitions (no group
//! rebalancing: the layout is eddy's) and reads them from `start` (or from a
//! checkpoint's offsets). With `stop = "end"` each partition is read until
//! the client reports its end (the fetch reached the log end offset), and the
//! source then ends like a file. (The end is what the fetch meets, not a
//! ListOffsets answer at the start: tansu 0.6 answers ListOffsets `latest`
//! with 1 for partitions of thousands of messages, while its fetches carry
//! the right high watermark. For a topic nobody writes to while eddy reads,
//! both are the same.)
//!
//! Watermarks are per partition: a record is late when its ts is below its
//! partition's greatest ts so far − the max delay, so late decisions depend
//! on each partition's order only, never on how partitions are spread over
//! workers. The worker's watermark is the minimum over its partitions that
//! can still send records (a partition that is finished, or at its end and
//! silent for `idle_timeout_ms`, no longer holds it back; a record such a
//! partition sends later is late if it is behind the worker's watermark).
//! A record's `seq` (the tie-breaker of equal timestamps) is
//! `offset × partitions + partition`: within a partition, its order.
//!
//! A message that is not a valid row is counted and written to
//! malformed.csv; its `line` is its offset and the error names the partition.
//!
//! Resuming needs a broker that serves a fetch from any offset. tansu 0.6
//! cannot serve one that starts inside a record batch: it answers with the
//! batches after it, or with nothing. The first case is detected (the first
//! message after a seek is past the asked offset: the partition is read
//! again from its start, skipping what was taken); the second stalls the
//! partition. Topics whose every message is its own batch (`eddy produce
//! --option batch.num.messages=1 --option linger.ms=0`) resume correctly on
//! tansu; a Kafka broker serves any offset.

use super::{client_config, partitions, KafkaLog, KafkaSourceConfig, Start, Stop, BROKER_TIMEOUT};
use crate::record::Event;
use crate::sources::parse::ParseRow;
use crate::sources::{Batch, Late, Malformed, Poll, Source};
use crate::time::Watermark;
use anyhow::{bail, Context};
use csv::ByteRecord;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// Where a worker stands in one of its partitions.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Partition {
    partition: i32,
    /// The offset this run started from (for progress).
    start: i64,
    /// The offset of the next message to take.
    next: i64,
    /// `stop = "end"` and the partition's end was reached: nothing more is read.
    finished: bool,
    /// The greatest ts seen in this partition.
    max_seen_ms: Option<u64>,
    /// The client reported the partition's end and nothing came since.
    #[serde(skip)]
    at_end: bool,
    #[serde(skip)]
    last_message: Option<Instant>,
    /// The consumer was just pointed at `next`: the first message tells
    /// whether the broker honoured it.
    #[serde(skip)]
    check_seek: bool,
    /// The broker skipped past `next` after a seek; the partition is read
    /// again from `start` and the records before `next` are skipped.
    #[serde(skip)]
    rewound: bool,
}

impl Partition {
    fn finished(&self) -> bool {
        self.finished
    }

    fn idle(&self, timeout: Duration, opened: Instant) -> bool {
        self.at_end && self.last_message.unwrap_or(opened).elapsed() >= timeout
    }
}

/// This worker's partitions of a topic.
pub struct KafkaSource<E> {
    consumer: BaseConsumer<KafkaLog>,
    config: KafkaSourceConfig,
    partition_count: i32,
    owned: Vec<Partition>,
    max_delay_ms: u64,
    batch_size: usize,
    opened: Instant,
    /// When the partitions' lag was last reported.
    lag_reported: Option<Instant>,
    row: ByteRecord,
    _record: PhantomData<E>,
}

impl<E: Event + ParseRow> KafkaSource<E> {
    /// Connects, finds the topic's partitions and assigns this worker's.
    pub fn open(
        config: &KafkaSourceConfig,
        max_delay_ms: u64,
        batch_size: usize,
        index: usize,
        peers: usize,
    ) -> anyhow::Result<Self> {
        // Fetches large enough for whole record batches: tansu 0.6 cannot
        // serve a fetch that starts inside a batch (see `check_seek`).
        let defaults = [
            ("group.id", config.group.as_str()),
            ("client.id", config.client_id.as_str()),
            ("max.partition.fetch.bytes", "67108864"),
            ("fetch.max.bytes", "134217728"),
            ("receive.message.max.bytes", "200000000"),
            ("statistics.interval.ms", "500"),
        ];
        let consumer: BaseConsumer<KafkaLog> =
            client_config(&config.brokers, &defaults, &config.options)
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "earliest")
                .create_with_context(KafkaLog::default())
                .with_context(|| {
                    format!("kafka: cannot create a consumer for {}", config.brokers)
                })?;
        let partition_count = partitions(&consumer, &config.brokers, &config.topic)?;
        let mut owned = Vec::new();
        for p in (0..partition_count).filter(|p| *p as usize % peers == index) {
            let (low, high) = consumer
                .fetch_watermarks(&config.topic, p, BROKER_TIMEOUT)
                .with_context(|| {
                    format!(
                        "kafka: cannot read the offsets of {} partition {p}",
                        config.topic
                    )
                })?;
            let start = match config.start {
                Start::Earliest => low,
                Start::Latest => high,
            };
            owned.push(Partition {
                partition: p,
                start,
                next: start,
                finished: false,
                max_seen_ms: None,
                at_end: false,
                last_message: None,
                check_seek: false,
                rewound: false,
            });
        }
        let mut source = KafkaSource {
            consumer,
            config: config.clone(),
            partition_count,
            owned,
            max_delay_ms,
            batch_size: batch_size.max(1),
            opened: Instant::now(),
            lag_reported: None,
            row: ByteRecord::new(),
            _record: PhantomData,
        };
        source.assign()?;
        Ok(source)
    }

    /// Points the consumer at each unfinished partition's next offset (its
    /// start, for a partition whose broker does not honour seeks).
    fn assign(&mut self) -> anyhow::Result<()> {
        let mut list = TopicPartitionList::new();
        for p in self.owned.iter_mut().filter(|p| !p.finished()) {
            let at = if p.rewound { p.start } else { p.next };
            list.add_partition_offset(&self.config.topic, p.partition, Offset::Offset(at))?;
            p.check_seek = true;
        }
        self.consumer
            .assign(&list)
            .with_context(|| format!("kafka: cannot assign partitions of {}", self.config.topic))
    }

    /// Takes one message of partition `slot`'s.
    fn take(
        &mut self,
        slot: usize,
        offset: i64,
        payload: &[u8],
        batch: &mut Batch<E>,
        outer: &Watermark,
    ) {
        let part = &mut self.owned[slot];
        part.next = offset + 1;
        part.at_end = false;
        part.last_message = Some(Instant::now());
        batch.generated += 1;
        let seq = offset as u64 * self.partition_count as u64 + part.partition as u64;
        let (line, parsed) = decode_message::<E>(payload, &mut self.row, seq);
        match parsed {
            Err(error) => batch.malformed.push(Malformed {
                line: offset as u64,
                error: format!("partition {} offset {offset}: {error}", part.partition),
                raw: String::from_utf8_lossy(line).into_owned(),
            }),
            Ok(record) => {
                let ts = record.ts_ms();
                let own = part
                    .max_seen_ms
                    .map(|m| m.saturating_sub(self.max_delay_ms));
                match own {
                    Some(w) if ts < w => batch.late.push(Late {
                        record,
                        watermark_ms: w,
                    }),
                    _ => {
                        part.max_seen_ms = Some(part.max_seen_ms.map_or(ts, |m| m.max(ts)));
                        batch.admit(record, ts, outer);
                    }
                }
            }
        }
    }

    /// Moves the worker's watermark to the least of its partitions that can
    /// still send records (all of them when every one is idle).
    fn advance(&self, watermark: &mut Watermark) {
        let timeout = Duration::from_millis(self.config.idle_timeout_ms);
        let open: Vec<&Partition> = self.owned.iter().filter(|p| !p.finished()).collect();
        let live: Vec<&&Partition> = open
            .iter()
            .filter(|p| !p.idle(timeout, self.opened))
            .collect();
        let least = if live.is_empty() {
            open.iter().filter_map(|p| p.max_seen_ms).min()
        } else if live.iter().all(|p| p.max_seen_ms.is_some()) {
            live.iter().filter_map(|p| p.max_seen_ms).min()
        } else {
            None
        };
        if let Some(ts) = least {
            watermark.observe(ts);
        }
    }

    /// Each partition's lag (log end − next offset), from the high watermark
    /// of the client's latest statistics (every 500 ms), at most every 250 ms.
    fn report_lag(&mut self, batch: &mut Batch<E>) {
        if self
            .lag_reported
            .is_some_and(|t| t.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.lag_reported = Some(Instant::now());
        for p in &self.owned {
            let end = self
                .consumer
                .context()
                .high_offsets
                .lock()
                .expect("kafka statistics lock")
                .get(&(self.config.topic.clone(), p.partition))
                .copied()
                .unwrap_or(-1);
            let lag = if p.finished() || end < 0 {
                0
            } else {
                (end - p.next).max(0)
            };
            batch
                .partition_lag
                .push((format!("{}/{}", self.config.topic, p.partition), lag));
        }
    }

    fn slot(&self, partition: i32) -> Option<usize> {
        self.owned.iter().position(|p| p.partition == partition)
    }
}

impl<E: Event + ParseRow> Source<E> for KafkaSource<E> {
    fn next_batch(
        &mut self,
        batch: &mut Batch<E>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll> {
        if self.owned.iter().all(Partition::finished) {
            return Ok(Poll::Done);
        }
        let mut taken = 0;
        while taken < self.batch_size {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(slot) = self.slot(p) {
                        self.owned[slot].at_end = true;
                        if self.config.stop == Stop::End {
                            self.owned[slot].finished = true;
                        }
                    }
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!("kafka {}: {e}", self.config.topic);
                    break;
                }
                Some(Ok(m)) => m,
            };
            let Some(slot) = self.slot(message.partition()) else {
                continue;
            };
            let part = &mut self.owned[slot];
            let offset = message.offset();
            // tansu 0.6 answers a fetch from an offset inside a record batch
            // with the batches after it: the first message after a seek shows it.
            if std::mem::take(&mut part.check_seek)
                && offset > part.next
                && !part.rewound
                && part.next > part.start
            {
                tracing::warn!(
                    "kafka {} partition {}: asked for offset {}, the broker sent {offset}; reading the partition again from offset {} and skipping what was taken",
                    self.config.topic, part.partition, part.next, part.start
                );
                part.rewound = true;
                drop(message);
                self.assign()?;
                continue;
            }
            // After the end (stop = "end"), or already taken.
            if offset < part.next || part.finished() {
                continue;
            }
            part.rewound = false;
            let (offset, payload) = (
                message.offset(),
                message.payload().unwrap_or_default().to_vec(),
            );
            drop(message);
            self.take(slot, offset, &payload, batch, watermark);
            taken += 1;
        }
        self.advance(watermark);
        let done = self.owned.iter().all(Partition::finished);
        if done {
            self.lag_reported = None;
        }
        self.report_lag(batch);
        Ok(if done {
            Poll::Done
        } else if taken > 0 {
            Poll::Ready
        } else {
            Poll::Wait(Duration::from_millis(5))
        })
    }

    /// The partitions' offsets; also committed to the consumer group, for
    /// monitoring tools (eddy resumes from its checkpoints, not from the group).
    fn save(&self) -> anyhow::Result<Vec<u8>> {
        let mut list = TopicPartitionList::new();
        for p in &self.owned {
            list.add_partition_offset(&self.config.topic, p.partition, Offset::Offset(p.next))?;
        }
        if !list.elements().is_empty() {
            if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
                tracing::warn!(
                    "kafka {}: cannot commit offsets to group {}: {e}",
                    self.config.topic,
                    self.config.group
                );
            }
        }
        Ok(bincode::serialize(&self.owned)?)
    }

    /// Every old worker's partitions, each with its offset and watermark:
    /// this worker takes those the topic gives it now (late decisions are
    /// per partition, so they move with it).
    fn restore_rescaled(
        &mut self,
        all: &[Vec<u8>],
        _index: usize,
        _peers: usize,
    ) -> anyhow::Result<()> {
        let mut saved = std::collections::BTreeMap::new();
        for bytes in all {
            for p in bincode::deserialize::<Vec<Partition>>(bytes)? {
                saved.insert(p.partition, p);
            }
        }
        for p in self.owned.iter_mut() {
            *p = saved.remove(&p.partition).with_context(|| {
                format!(
                    "kafka {}: the checkpoint has no offset for partition {}",
                    self.config.topic, p.partition
                )
            })?;
        }
        self.assign()
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let saved: Vec<Partition> = bincode::deserialize(saved)?;
        let mine: Vec<i32> = self.owned.iter().map(|p| p.partition).collect();
        let theirs: Vec<i32> = saved.iter().map(|p| p.partition).collect();
        if mine != theirs {
            bail!(
                "kafka {}: the checkpoint holds partitions {theirs:?} for this worker, the topic now gives it {mine:?}",
                self.config.topic
            );
        }
        self.owned = saved;
        self.assign()
    }
}

/// A message's payload as one row of the stream (one WORKLOAD.md line,
/// an optional line end): the line, and its record or why it is malformed.
/// `row` is reused between messages.
pub fn decode_message<'a, E: ParseRow>(
    payload: &'a [u8],
    row: &mut ByteRecord,
    seq: u64,
) -> (&'a [u8], Result<E, String>) {
    row.clear();
    let line = payload.strip_suffix(b"\n").unwrap_or(payload);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    for field in line.split(|b| *b == b',') {
        row.push_field(field);
    }
    (line, E::parse_row(row, seq))
}
