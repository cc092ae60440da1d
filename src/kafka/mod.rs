//! Kafka in and out: `[sources.*] kind = "kafka"` (partitioned sources read
//! by every worker of every process, see [`source`]) and `eddy produce`
//! (a generator or a recorded file published to a topic, see [`produce`]).
//!
//! Messages are WORKLOAD.md rows: one CSV row per message, no header; the
//! key is the row's symbol (trades) or item (interactions), so a key always
//! lands in the same partition. The client is librdkafka (the `rdkafka`
//! crate); any librdkafka setting can be passed through (`options`).

pub mod produce;
pub mod sink;
pub mod source;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a broker may take to answer metadata and offset requests before
/// the run stops with an error (never a hang).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a source starts reading when no checkpoint says otherwise.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}

/// When a source ends.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Reads on until the run is stopped.
    #[default]
    Never,
    /// Reads up to each partition's end offset as of the start, then ends
    /// like a file: the bounded mode of reproducible runs and tests.
    End,
}

/// `[sources.trades]` / `[sources.interactions]` with `kind = "kafka"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub topic: String,
    #[serde(default)]
    pub start: Start,
    #[serde(default)]
    pub stop: Stop,
    /// Consumer group the offsets are committed to after each checkpoint
    /// (for lag monitoring; eddy's own position is in its checkpoints).
    #[serde(default = "default_group")]
    pub group: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// A partition with nothing new for this long (ms) stops holding the
    /// worker's watermark back; records it sends later are late if behind.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// librdkafka settings passed through (security.protocol, sasl.*, ssl.*, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_group() -> String {
    "eddy".into()
}

fn default_client_id() -> String {
    "eddy".into()
}

fn default_idle_timeout_ms() -> u64 {
    5_000
}

/// A client configuration for `brokers`: eddy's `defaults`, then the
/// pass-through `options` (which win).
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    options: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    // Errors come back to eddy rather than being retried for minutes.
    c.set("socket.timeout.ms", "10000");
    c.set("log_level", "3");
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in options {
        c.set(k, v);
    }
    c
}

/// The client's callbacks: librdkafka's errors and logs go to eddy's log,
/// except the end of a partition, which the sources handle (it is not an
/// error); its statistics give each partition's log end offset (the high
/// watermark of its latest fetch), from which a source reports its lag.
#[derive(Default)]
pub struct KafkaLog {
    /// (topic, partition) → high watermark offset.
    pub high_offsets: std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>,
}

impl rdkafka::ClientContext for KafkaLog {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut high = self.high_offsets.lock().expect("kafka statistics lock");
        for (name, topic) in statistics.topics {
            for (partition, p) in topic.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    high.insert((name.clone(), partition), p.hi_offset);
                }
            }
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => tracing::error!("librdkafka {fac}: {log_message}"),
            Warning => tracing::warn!("librdkafka {fac}: {log_message}"),
            _ => tracing::debug!("librdkafka {fac}: {log_message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::warn!("kafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for KafkaLog {}

/// The number of partitions of `topic`, or a clear error when the broker
/// cannot be reached or the topic does not exist.
pub fn partitions(
    consumer: &BaseConsumer<KafkaLog>,
    brokers: &str,
    topic: &str,
) -> anyhow::Result<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .with_context(|| format!("kafka: cannot reach brokers {brokers} (topic {topic})"))?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("kafka: topic {topic} not found at {brokers}"))?;
    if let Some(e) = t.error() {
        anyhow::bail!(
            "kafka: topic {topic} at {brokers}: {}",
            rdkafka::error::RDKafkaErrorCode::from(e)
        );
    }
    if t.partitions().is_empty() {
        anyhow::bail!("kafka: topic {topic} at {brokers} has no partitions");
    }
    Ok(t.partitions().len() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;

    /// The options of a broker behind TLS and SCRAM: librdkafka is built
    /// with both (it refuses `SASL_SSL` otherwise) and loads the CA file.
    #[test]
    fn tls_and_sasl_options_pass_through_to_librdkafka() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["broker".to_string()]).unwrap();
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        let options = |ca: &str| -> BTreeMap<String, String> {
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "eddy"),
                ("sasl.password", "s3cret"),
                ("ssl.ca.location", ca),
                ("ssl.endpoint.identification.algorithm", "https"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let config = client_config("broker:9093", &[], &options(ca.to_str().unwrap()));
        let made: Result<BaseConsumer, _> = config.create();
        assert!(made.is_ok(), "{:?}", made.err());
        let missing = dir.path().join("absent.pem");
        let config = client_config("broker:9093", &[], &options(missing.to_str().unwrap()));
        let e = config.create::<BaseConsumer>().err().unwrap().to_string();
        assert!(e.contains("ssl.ca.location failed"), "{e}");
    }
}
