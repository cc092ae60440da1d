//! `/metrics`: the engine's figures in the Prometheus / OpenMetrics text
//! format, read from [`Metrics`] at each scrape (a `prometheus-client`
//! collector, so the counters are the engine's own, not copies).
//!
//! Families (counters end in `_total` in the exposition):
//! - `eddy_records_generated`, `_ingested`, `_late`, `_malformed` per `stream`;
//! - `eddy_query_records_consumed` and `eddy_query_rows` per `query` (records
//!   in and rows out of each query);
//! - `eddy_window_latency_seconds`, `eddy_record_latency_seconds`: histograms;
//! - gauges `eddy_watermark_lag_seconds` (event time the finished results
//!   trail the inputs' watermark), `eddy_generator_lag_seconds`,
//!   `eddy_records_in_flight`, `eddy_resident_memory_bytes`, and per `worker`
//!   `eddy_worker_watermark_seconds`; the counter `eddy_worker_records_ingested`;
//! - `eddy_sink_rows_total{sink}`, `eddy_sink_retries_total{sink}`: database
//!   sinks' committed rows and retries after their database went away.
//! - `eddy_ingest_refused_total{reason}`: TCP ingest connections refused or
//!   dropped (`tls`, `token`, `hello`, `connections`, `line_too_long`,
//!   `idle`, `error`); present with `--listen` once one was.
//! - `eddy_input_log_bytes{stream}`: bytes of the TCP input log on disk
//!   (with `--listen`; trimmed behind the checkpoints).
//! - `eddy_kafka_consumer_lag{topic,partition}`: messages a Kafka source's
//!   partition has that its worker has not read yet;
//! - `eddy_cpu_seconds` (counter) and `eddy_finished` (0 or 1).

use crate::metrics::{Metrics, Snapshot};
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::sync::Arc;

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry that `/metrics` encodes.
pub fn registry(metrics: Arc<Metrics>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(EngineCollector { metrics }));
    registry
}

/// The exposition text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

struct EngineCollector {
    metrics: Arc<Metrics>,
}

impl fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EngineCollector")
    }
}

/// One labelled value of a family.
type Labelled<V> = (Vec<(&'static str, String)>, V);

fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = Labelled<u64>>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in values {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: impl IntoIterator<Item = Labelled<f64>>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in values {
        if labels.is_empty() {
            family.encode_gauge(&v)?;
        } else {
            family.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

fn unlabelled<V>(v: V) -> [Labelled<V>; 1] {
    [(Vec::new(), v)]
}

/// A µs histogram as Prometheus buckets in seconds.
fn latency_histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &Histogram<u64>,
) -> fmt::Result {
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_S
        .iter()
        .map(|b| (*b, 0))
        .chain([(f64::INFINITY, 0)])
        .collect();
    let mut sum_s = 0.0;
    for v in h.iter_recorded() {
        let seconds = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
        sum_s += seconds * v.count_at_value() as f64;
        let last = buckets.len() - 1;
        let i = buckets.partition_point(|(bound, _)| *bound < seconds);
        buckets[i.min(last)].1 += v.count_at_value();
    }
    let mut metric =
        e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(sum_s, h.len(), &buckets, None)
}

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s: Snapshot = self.metrics.snapshot();
        encode_counts(&mut e, &s)?;
        encode_gauges(&mut e, &s)
    }
}

/// Records per stream and per query.
fn encode_counts(e: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let per_stream = |f: fn(&crate::metrics::StreamSummary) -> u64| {
        s.streams
            .iter()
            .map(move |(name, c)| (vec![("stream", name.to_string())], f(c)))
            .collect::<Vec<_>>()
    };
    counters(
        e,
        "eddy_records_generated",
        "Records taken from the sources.",
        per_stream(|c| c.generated),
    )?;
    counters(
        e,
        "eddy_records_ingested",
        "On-time records sent into the dataflow.",
        per_stream(|c| c.ingested),
    )?;
    counters(
        e,
        "eddy_records_late",
        "Records behind the watermark (written to late.csv).",
        per_stream(|c| c.late),
    )?;
    counters(
        e,
        "eddy_records_malformed",
        "Rows that did not parse (written to malformed.csv).",
        per_stream(|c| c.malformed),
    )?;
    let per_query = |f: fn(&crate::metrics::QuerySummary) -> u64| {
        s.queries
            .iter()
            .map(move |q| (vec![("query", q.name.clone())], f(q)))
            .collect::<Vec<_>>()
    };
    counters(
        e,
        "eddy_query_records_consumed",
        "Records each query consumed.",
        per_query(|q| q.consumed),
    )?;
    counters(
        e,
        "eddy_query_rows",
        "Result rows each query emitted.",
        per_query(|q| q.rows),
    )?;
    Ok(())
}

/// Latencies, lags, memory, workers, CPU.
fn encode_gauges(e: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    latency_histogram(
        e,
        "eddy_window_latency",
        "Window rows: emission minus the moment the window became due.",
        &s.latency_us,
    )?;
    latency_histogram(
        e,
        "eddy_record_latency",
        "Per-record rows (ewma): emission minus the moment ts + max_delay was reached.",
        &s.record_latency_us,
    )?;
    let seconds = Some(&Unit::Seconds);
    gauge(
        e,
        "eddy_watermark_lag",
        "Event time the finished results trail the inputs' watermark.",
        seconds,
        unlabelled(s.watermark_lag_ms() as f64 / 1e3),
    )?;
    gauge(
        e,
        "eddy_generator_lag",
        "How far the generators are behind their real-time schedule.",
        seconds,
        unlabelled(s.generator_lag_ms / 1e3),
    )?;
    gauge(
        e,
        "eddy_records_in_flight",
        "Records ingested that some query has not consumed yet.",
        None,
        unlabelled(s.in_flight as f64),
    )?;
    gauge(
        e,
        "eddy_resident_memory",
        "Resident set size of the process.",
        Some(&Unit::Bytes),
        unlabelled(s.rss_bytes as f64),
    )?;
    let worker = |i: usize| vec![("worker", i.to_string())];
    gauge(
        e,
        "eddy_worker_watermark",
        "Each worker's input time (its watermark), epoch seconds.",
        seconds,
        s.workers
            .iter()
            .enumerate()
            .map(|(i, w)| (worker(i), w.watermark_ms as f64 / 1e3)),
    )?;
    counters(
        e,
        "eddy_worker_records_ingested",
        "Records each worker sent into the dataflow.",
        s.workers
            .iter()
            .enumerate()
            .map(|(i, w)| (worker(i), w.ingested)),
    )?;
    let mut cpu = e.encode_descriptor(
        "eddy_cpu",
        "CPU time of the process (user + system).",
        seconds,
        MetricType::Counter,
    )?;
    cpu.encode_counter::<NoLabelSet, _, f64>(&s.cpu_s, None)?;
    if !s.kafka_lag.is_empty() {
        gauge(
            e,
            "eddy_kafka_consumer_lag",
            "Kafka sources: messages between each partition's log end and the next offset read.",
            None,
            s.kafka_lag.iter().map(|(key, lag)| {
                let (topic, partition) = key.rsplit_once('/').unwrap_or((key, ""));
                (
                    vec![
                        ("topic", topic.to_string()),
                        ("partition", partition.to_string()),
                    ],
                    *lag as f64,
                )
            }),
        )?;
    }
    encode_sinks(e, s)?;
    encode_ingest(e, s)?;
    gauge(
        e,
        "eddy_finished",
        "1 once the run has ended.",
        None,
        unlabelled(if s.finished { 1.0 } else { 0.0 }),
    )
}

/// The TCP ingest's refusals and input log size (none without --listen).
fn encode_ingest(e: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    if !s.ingest_refused.is_empty() {
        counters(
            e,
            "eddy_ingest_refused",
            "TCP ingest connections refused or dropped, by reason.",
            s.ingest_refused
                .iter()
                .map(|(reason, n)| (vec![("reason", reason.clone())], *n))
                .collect::<Vec<_>>(),
        )?;
    }
    if !s.input_log_bytes.is_empty() {
        gauge(
            e,
            "eddy_input_log_bytes",
            "Bytes of the TCP input log on disk, by stream.",
            None,
            s.input_log_bytes
                .iter()
                .map(|(stream, n)| (vec![("stream", stream.clone())], *n as f64)),
        )?;
    }
    Ok(())
}

/// Database sinks' rows and retries, by `sink` (none without database sinks).
fn encode_sinks(e: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    if s.sinks.is_empty() {
        return Ok(());
    }
    let per_sink = |f: fn(&crate::metrics::SinkCounts) -> u64| {
        s.sinks
            .iter()
            .map(|(sink, c)| (vec![("sink", sink.clone())], f(c)))
            .collect::<Vec<_>>()
    };
    counters(
        e,
        "eddy_sink_rows",
        "Database sinks: result rows committed.",
        per_sink(|c| c.rows),
    )?;
    counters(
        e,
        "eddy_sink_retries",
        "Database sinks: transactions retried after the database went away or was busy.",
        per_sink(|c| c.retries),
    )?;
    Ok(())
}
