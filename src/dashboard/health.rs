//! The engine's health over time: a point every sampling interval (rates,
//! latency percentiles of the interval, lags, CPU, memory), kept in a bounded
//! log so that a page can ask for the points it has not seen yet.
//!
//! Rates and interval percentiles come from differences of two cumulative
//! [`Snapshot`]s, so sampling never resets anything the end-of-run report or
//! `/metrics` read.

use crate::metrics::{Snapshot, WorkerSnapshot};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;

/// Points kept: ten minutes at two a second.
pub const HEALTH_HISTORY: usize = 1200;

/// One sample of the engine's health.
#[derive(Clone, Debug, Serialize)]
pub struct HealthPoint {
    /// Position in the log: a page asks for points after the last it has.
    pub seq: u64,
    /// Seconds since the run started.
    pub t_s: f64,
    /// Records taken from the sources, per second.
    pub in_per_s: f64,
    /// Result rows written, per second.
    pub out_per_s: f64,
    /// Window latency of the interval's rows, ms (none when no window closed).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Per-record (ewma) latency p99 of the interval, ms.
    pub record_p99_ms: Option<f64>,
    pub watermark_lag_ms: u64,
    pub generator_lag_ms: f64,
    /// CPU time over wall time, in % of one core.
    pub cpu_percent: f64,
    pub rss_mib: f64,
}

/// The running totals a page shows as counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub elapsed_s: f64,
    pub generated: u64,
    pub ingested: u64,
    pub late: u64,
    pub malformed: u64,
    pub rows_out: u64,
    pub in_flight: u64,
    pub windows_closed: u64,
    pub latency_p99_ms: f64,
    pub workers: Vec<WorkerSnapshot>,
    /// Database sinks: rows committed and retries, by kind.
    pub sinks: std::collections::BTreeMap<String, crate::metrics::SinkCounts>,
    pub finished: bool,
}

/// The bounded log of health points and the latest totals.
#[derive(Default)]
pub struct HealthLog {
    points: VecDeque<HealthPoint>,
    next_seq: u64,
    previous: Option<Snapshot>,
    totals: Totals,
}

fn percentile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e3)
}

/// `now - before` for cumulative histograms (empty if they do not subtract).
fn interval(now: &Histogram<u64>, before: Option<&Histogram<u64>>) -> Histogram<u64> {
    let mut h = now.clone();
    if let Some(b) = before {
        if h.subtract(b).is_err() {
            h.reset();
        }
    }
    h
}

impl HealthLog {
    /// Adds the point between the previous snapshot and `now`.
    pub fn sample(&mut self, now: Snapshot) {
        let before = self.previous.as_ref();
        let dt = before
            .map_or(now.elapsed_s, |b| now.elapsed_s - b.elapsed_s)
            .max(1e-6);
        let rate =
            |f: fn(&Snapshot) -> u64| (f(&now) - before.map_or(0, f).min(f(&now))) as f64 / dt;
        let windows = interval(&now.latency_us, before.map(|b| &b.latency_us));
        let records = interval(&now.record_latency_us, before.map(|b| &b.record_latency_us));
        let cpu_before = before.map_or(0.0, |b| b.cpu_s);
        let point = HealthPoint {
            seq: self.next_seq,
            t_s: now.elapsed_s,
            in_per_s: rate(Snapshot::generated),
            out_per_s: rate(Snapshot::rows_out),
            latency_p50_ms: percentile_ms(&windows, 0.5),
            latency_p99_ms: percentile_ms(&windows, 0.99),
            record_p99_ms: percentile_ms(&records, 0.99),
            watermark_lag_ms: now.watermark_lag_ms(),
            generator_lag_ms: now.generator_lag_ms,
            cpu_percent: (now.cpu_s - cpu_before).max(0.0) / dt * 100.0,
            rss_mib: now.rss_bytes as f64 / (1 << 20) as f64,
        };
        self.next_seq += 1;
        self.points.push_back(point);
        while self.points.len() > HEALTH_HISTORY {
            self.points.pop_front();
        }
        let sum = |f: fn(&crate::metrics::StreamSummary) -> u64| {
            now.streams.iter().map(|(_, s)| f(s)).sum::<u64>()
        };
        self.totals = Totals {
            elapsed_s: now.elapsed_s,
            generated: sum(|s| s.generated),
            ingested: sum(|s| s.ingested),
            late: sum(|s| s.late),
            malformed: sum(|s| s.malformed),
            rows_out: now.rows_out(),
            in_flight: now.in_flight,
            windows_closed: now.latency_us.len(),
            latency_p99_ms: percentile_ms(&now.latency_us, 0.99).unwrap_or(0.0),
            workers: now.workers.clone(),
            sinks: now.sinks.clone(),
            finished: now.finished,
        };
        self.previous = Some(now);
    }

    /// The points after `seq` (all kept ones when `seq` is none).
    pub fn points_after(&self, seq: Option<u64>) -> Vec<HealthPoint> {
        let from = seq.map_or(0, |s| s + 1);
        self.points
            .iter()
            .filter(|p| p.seq >= from)
            .cloned()
            .collect()
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.points.back().map(|p| p.seq)
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Event time up to which every worker's results are out.
    pub fn complete_ms(&self) -> u64 {
        let live = self
            .totals
            .workers
            .iter()
            .filter(|w| w.state != crate::metrics::WorkerState::Done);
        live.map(|w| w.frontier_ms).min().unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{QuerySummary, StreamSummary, WorkerState};

    fn snapshot(t: f64, generated: u64, rows: u64, latencies_us: &[u64]) -> Snapshot {
        let mut latency = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for l in latencies_us {
            latency.record(*l).unwrap();
        }
        Snapshot {
            elapsed_s: t,
            streams: vec![(
                "trades",
                StreamSummary {
                    generated,
                    ingested: generated,
                    late: 0,
                    malformed: 0,
                },
            )],
            queries: vec![QuerySummary {
                name: "trades/bars_1s".into(),
                consumed: generated,
                rows,
            }],
            in_flight: 0,
            record_latency_us: latency.clone(),
            latency_us: latency,
            generator_lag_ms: 0.0,
            workers: vec![WorkerSnapshot {
                ingested: generated,
                watermark_ms: 5_000,
                frontier_ms: 4_000,
                state: WorkerState::Running,
                kafka_lag: None,
            }],
            cpu_s: t / 2.0,
            rss_bytes: 1 << 20,
            finished: false,
            kafka_lag: Default::default(),
            sinks: Default::default(),
            ingest_refused: Default::default(),
            input_log_bytes: Default::default(),
        }
    }

    #[test]
    fn points_are_interval_rates_and_percentiles() {
        let mut log = HealthLog::default();
        log.sample(snapshot(1.0, 1_000, 10, &[1_000; 10]));
        // The second interval: 500 more records in 0.5 s, ten 9 ms windows.
        let mut all = vec![1_000; 10];
        all.extend([9_000; 10]);
        log.sample(snapshot(1.5, 1_500, 30, &all));
        let p = &log.points_after(Some(0))[0];
        assert_eq!(p.seq, 1);
        assert!((p.in_per_s - 1_000.0).abs() < 1e-6);
        assert!((p.out_per_s - 40.0).abs() < 1e-6);
        let p50 = p.latency_p50_ms.unwrap();
        assert!(
            (8.9..9.1).contains(&p50),
            "the interval's windows only: {p50}"
        );
        assert!((p.cpu_percent - 50.0).abs() < 1e-6);
        assert_eq!(p.watermark_lag_ms, 1_000);
        assert_eq!(log.totals().generated, 1_500);
        assert_eq!(log.complete_ms(), 4_000);
        // No window closed in the next interval: no percentile, not zero.
        log.sample(snapshot(2.0, 1_600, 30, &all));
        assert!(log.points_after(Some(1))[0].latency_p99_ms.is_none());
    }

    #[test]
    fn the_log_keeps_a_bounded_history_and_answers_from_a_sequence_number() {
        let mut log = HealthLog::default();
        for i in 0..(HEALTH_HISTORY as u64 + 500) {
            log.sample(snapshot(i as f64, i * 10, i, &[]));
        }
        let all = log.points_after(None);
        assert_eq!(all.len(), HEALTH_HISTORY);
        assert_eq!(all[0].seq, 500);
        let last = log.last_seq().unwrap();
        assert_eq!(log.points_after(Some(last)).len(), 0);
        assert_eq!(log.points_after(Some(last - 3)).len(), 3);
    }
}
