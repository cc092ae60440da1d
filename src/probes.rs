//! What queries measure as they run, shared by the workers of a process and
//! read by `metrics.rs`: the counters of each query (records consumed, rows
//! out) and the latency probes of windows and per-record rows.
//!
//! A leaf module: queries and the framework record here, and the engine's
//! metrics, the status line and the dashboard read it, so no query depends on
//! the engine.
//!
//! Latency, per window row: emission time minus the time the row became due.
//! In real time a window ending at `E` is due when event time reaches
//! `E + max_delay` by the generator's schedule (so generator stalls count);
//! otherwise it is due when this worker's input passed `E` (see [`AdvanceLog`]).

use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters of one query.
pub struct QueryCounters {
    pub name: String,
    pub(crate) consumed: AtomicU64,
    pub(crate) rows: AtomicU64,
}

impl QueryCounters {
    pub fn new(name: &str) -> Self {
        QueryCounters {
            name: name.to_string(),
            consumed: AtomicU64::new(0),
            rows: AtomicU64::new(0),
        }
    }

    pub fn add_consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Relaxed);
    }
    pub fn add_rows(&self, n: u64) {
        self.rows.fetch_add(n, Relaxed);
    }
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Relaxed)
    }
    pub fn rows(&self) -> u64 {
        self.rows.load(Relaxed)
    }
}

/// Latency histograms (µs) of a process: every window row's since the start,
/// the same since the status line last read it, and per-record rows'.
pub struct Latencies {
    pub window_us: Mutex<Histogram<u64>>,
    pub window_interval_us: Mutex<Histogram<u64>>,
    pub record_us: Mutex<Histogram<u64>>,
}

/// A histogram of µs from 1 µs to one hour, three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            window_us: Mutex::new(latency_histogram()),
            window_interval_us: Mutex::new(latency_histogram()),
            record_us: Mutex::new(latency_histogram()),
        }
    }
}

impl Latencies {
    pub fn record_window(&self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        self.window_us
            .lock()
            .expect("latency lock")
            .saturating_record(us);
        self.window_interval_us
            .lock()
            .expect("latency lock")
            .saturating_record(us);
    }
}

/// When this worker's input frontier passed which event time (as-fast runs and replays).
#[derive(Default)]
pub struct AdvanceLog {
    entries: VecDeque<(u64, Instant)>,
}

impl AdvanceLog {
    /// The worker's inputs are now all at or beyond `time`.
    pub fn advanced(&mut self, time: u64) {
        if self.entries.back().is_none_or(|(t, _)| *t < time) {
            self.entries.push_back((time, Instant::now()));
        }
    }

    /// When the inputs first reached `time` or beyond, with the times that
    /// share that answer: those after the entry before it, up to its entry's time.
    fn reached_span(&self, time: u64) -> (RangeInclusive<u64>, Option<Instant>) {
        let i = self.entries.partition_point(|(t, _)| *t < time);
        let after = match i.checked_sub(1) {
            Some(before) => self.entries[before].0 + 1,
            None => 0,
        };
        match self.entries.get(i) {
            Some(&(t, at)) => (after..=t, Some(at)),
            None => (after..=u64::MAX, None),
        }
    }

    /// Forgets what no open window can ask about: entries before the last one below `time`.
    pub fn forget_before(&mut self, time: u64) {
        while self.entries.len() > 1 && self.entries[1].0 <= time {
            self.entries.pop_front();
        }
    }
}

/// When a window's rows became due (see the module doc).
#[derive(Clone)]
pub enum Due {
    Schedule {
        start_wall: Instant,
        start_event_ms: u64,
        speed: f64,
        max_delay_ms: u64,
    },
    InputAdvance(Rc<RefCell<AdvanceLog>>),
}

/// How often a worker adds its per-record latencies to the shared histogram.
const MERGE_RECORDS_EVERY: Duration = Duration::from_millis(100);

/// Per-record latencies gathered on one worker, added to the shared histogram
/// at most every [`MERGE_RECORDS_EVERY`] and when the worker's probes go:
/// per-record rows come a thousand to a batch, and taking the shared lock for
/// every batch (the latencies computed under it) made workers queue there.
/// Kept as (latency µs, rows) runs, not a histogram of their own: a run is a
/// batch's rows that became due together, so there are few, and merging a
/// whole local histogram (and zeroing it) every 100 ms cost more than them.
struct LocalRecordLatencies {
    runs: Vec<(u64, u64)>,
    merged_at: Instant,
    latencies: Arc<Latencies>,
}

/// Runs kept before they are merged early (real time: every row its own run).
const RUNS_KEPT: usize = 4_096;

impl LocalRecordLatencies {
    fn record(&mut self, us: u64, rows: u64) {
        self.runs.push((us, rows));
        if self.runs.len() >= RUNS_KEPT {
            self.merge();
        }
    }

    fn merge(&mut self) {
        if !self.runs.is_empty() {
            let mut shared = self.latencies.record_us.lock().expect("latency lock");
            for (us, rows) in self.runs.drain(..) {
                shared.saturating_record_n(us, rows);
            }
        }
        self.merged_at = Instant::now();
    }
}

impl Drop for LocalRecordLatencies {
    fn drop(&mut self) {
        self.merge();
    }
}

/// Records window latencies for one worker.
#[derive(Clone)]
pub struct LatencyProbe {
    due: Due,
    latencies: Arc<Latencies>,
    records: Rc<RefCell<LocalRecordLatencies>>,
}

impl LatencyProbe {
    pub fn new(due: Due, latencies: Arc<Latencies>) -> Self {
        let records = LocalRecordLatencies {
            runs: Vec::new(),
            merged_at: Instant::now(),
            latencies: Arc::clone(&latencies),
        };
        LatencyProbe {
            due,
            latencies,
            records: Rc::new(RefCell::new(records)),
        }
    }

    /// A window ending (exclusive) at `end_ms` was emitted now.
    pub fn window_closed(&self, end_ms: u64) {
        let now = Instant::now();
        // A window closed before it was due was closed by the end of the input
        // (a stop or the end of a file), not by time: it has no latency.
        if let Some(due) = self.due_at(end_ms).filter(|d| *d <= now) {
            self.latencies.record_window(now - due);
        }
    }

    /// Rows answering one input record each, at these `ts_ms`, were emitted now.
    /// Rows come sorted by time, many sharing the instant they became due (the
    /// input passed them together): a run of them is looked up and recorded
    /// once, with its count (per row, this was 4 % of a replay's instructions).
    pub fn records_emitted(&self, ts_ms: impl Iterator<Item = u64>) {
        let now = Instant::now();
        let mut records = self.records.borrow_mut();
        // The ends sharing a due instant, the latency if due, and how many rows.
        type Run = (RangeInclusive<u64>, Option<u64>, u64);
        let mut run: Option<Run> = None;
        let mut record = |run: Option<Run>| {
            if let Some((_, Some(us), rows)) = run {
                records.record(us, rows);
            }
        };
        for ts in ts_ms {
            let end_ms = ts + 1;
            match &mut run {
                Some((ends, _, rows)) if ends.contains(&end_ms) => *rows += 1,
                _ => {
                    let (ends, due) = self.due_span(end_ms);
                    let us = due
                        .filter(|due| *due <= now)
                        .map(|due| ((now - due).as_micros() as u64).clamp(1, 3_600_000_000));
                    record(run.replace((ends, us, 1)));
                }
            }
        }
        record(run);
        if now.duration_since(records.merged_at) >= MERGE_RECORDS_EVERY {
            records.merge();
        }
    }

    /// When everything before event time `end_ms` could be final: in real
    /// time, when the schedule reached `end_ms + max_delay`; as fast as
    /// possible, when the input passed `end_ms`.
    fn due_at(&self, end_ms: u64) -> Option<Instant> {
        self.due_span(end_ms).1
    }

    /// As [`LatencyProbe::due_at`], with the ends around `end_ms` that became
    /// due at the same instant.
    fn due_span(&self, end_ms: u64) -> (RangeInclusive<u64>, Option<Instant>) {
        match &self.due {
            Due::Schedule {
                start_wall,
                start_event_ms,
                speed,
                max_delay_ms,
            } => {
                let event_ms = (end_ms + max_delay_ms).saturating_sub(*start_event_ms);
                let due = *start_wall + Duration::from_secs_f64(event_ms as f64 / 1e3 / speed);
                (end_ms..=end_ms, Some(due))
            }
            Due::InputAdvance(log) => log.borrow().reached_span(end_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_of_times_shares_the_instant_a_linear_scan_finds() {
        let mut log = AdvanceLog::default();
        for time in [5, 6, 20, 21, 40] {
            log.advanced(time);
        }
        log.forget_before(6);
        // The reference: the first entry at or after the time, by a scan.
        let scan = |time: u64| log.entries.iter().find(|(t, _)| *t >= time).map(|e| e.1);
        for time in 0..60 {
            let (span, at) = log.reached_span(time);
            assert!(span.contains(&time), "{time} outside {span:?}");
            assert_eq!(at, scan(time), "time {time}");
            for other in [*span.start(), *span.end().min(&100)] {
                assert_eq!(scan(other), at, "{other} in the span of {time}");
            }
            if *span.start() > 0 {
                assert_ne!(scan(span.start() - 1), at, "the span of {time} starts late");
            }
        }
    }

    #[test]
    fn runs_of_rows_record_one_latency_each_row() {
        let latencies = Arc::new(Latencies::default());
        let log = Rc::new(RefCell::new(AdvanceLog::default()));
        log.borrow_mut().advanced(100);
        std::thread::sleep(Duration::from_millis(5));
        log.borrow_mut().advanced(200);
        let probe = LatencyProbe::new(Due::InputAdvance(Rc::clone(&log)), Arc::clone(&latencies));
        // Out of order, runs interleaved, and 250 not due yet.
        probe.records_emitted([10, 150, 11, 99, 199, 250, 150, 0].into_iter());
        drop(probe);
        let shared = latencies.record_us.lock().unwrap();
        assert_eq!(shared.len(), 7, "every due row once, the row at 250 not");
        // The rows due at 100 waited at least 5 ms longer than those due at 200.
        assert!(
            shared.max() >= shared.min() + 4_000,
            "{} {}",
            shared.min(),
            shared.max()
        );
        assert_eq!(shared.count_between(shared.max() - 1_000, shared.max()), 4);
    }

    #[test]
    fn per_record_latencies_all_reach_the_shared_histogram() {
        let latencies = Arc::new(Latencies::default());
        let log = Rc::new(RefCell::new(AdvanceLog::default()));
        log.borrow_mut().advanced(1_000);
        let probe = LatencyProbe::new(Due::InputAdvance(Rc::clone(&log)), Arc::clone(&latencies));
        let clone = probe.clone();
        // Rows at 0..=999 were due when the input passed them; 5000 is not due yet.
        probe.records_emitted([0, 10, 999].into_iter());
        clone.records_emitted([5_000, 500].into_iter());
        let shared = || latencies.record_us.lock().unwrap().len();
        assert_eq!(shared(), 0, "kept on the worker until the next merge");
        std::thread::sleep(MERGE_RECORDS_EVERY);
        clone.records_emitted([1].into_iter());
        assert_eq!(shared(), 5);
        probe.records_emitted([2].into_iter());
        drop(probe);
        assert_eq!(shared(), 5, "one clone is still alive");
        drop(clone);
        assert_eq!(shared(), 6);
    }
}
