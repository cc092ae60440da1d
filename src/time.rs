//! Event time: watermarks, late-record decisions and timestamp coarsening.
//!
//! A source's watermark is `max event time seen - max_delay`. A record whose
//! `ts_ms` is at or above the watermark is on time and enters the dataflow at
//! `coarsen(ts_ms)`; one below it is late: it is counted and written to the
//! late-records file, never sent and never silently lost.
//!
//! The input capability of each worker is held at `coarsen(watermark)`, so the
//! dataflow frontier is the minimum watermark over all workers (rounded down
//! to a tick) and a window closes exactly when that frontier passes its end.
//!
//! To make the late decision the same for every worker count, a watermark is
//! defined over the whole input in arrival order: a file source observes the
//! `ts_ms` of every row (also the rows other workers own); a generator observes
//! its schedule position, which bounds every record it will still produce.

/// Tracks the watermark of one input on one worker.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    max_delay_ms: u64,
    max_seen_ms: Option<u64>,
}

impl Watermark {
    pub fn new(max_delay_ms: u64) -> Self {
        Watermark {
            max_delay_ms,
            max_seen_ms: None,
        }
    }

    /// Notes an event time seen in the input (or a position the input has passed).
    #[inline]
    pub fn observe(&mut self, ts_ms: u64) {
        if self.max_seen_ms.is_none_or(|m| ts_ms > m) {
            self.max_seen_ms = Some(ts_ms);
        }
    }

    /// The greatest event time seen, if any.
    pub fn max_seen(&self) -> Option<u64> {
        self.max_seen_ms
    }

    /// The current watermark; 0 before anything was seen.
    #[inline]
    pub fn current(&self) -> u64 {
        self.max_seen_ms
            .map_or(0, |m| m.saturating_sub(self.max_delay_ms))
    }

    /// Whether a record at `ts_ms` is late against the current watermark.
    #[inline]
    pub fn is_late(&self, ts_ms: u64) -> bool {
        ts_ms < self.current()
    }
}

/// Rounds event times down to a tick, so that progress tracking handles one
/// timestamp per tick instead of one per millisecond.
#[derive(Clone, Copy, Debug)]
pub struct Tick(u64);

impl Tick {
    pub fn new(tick_ms: u64) -> Self {
        Tick(tick_ms.max(1))
    }

    /// The event time one tick spans.
    pub fn ms(self) -> u64 {
        self.0
    }

    #[inline]
    pub fn coarsen(self, ts_ms: u64) -> u64 {
        ts_ms - ts_ms % self.0
    }
}

/// The greatest common divisor (`gcd(a, 0) = a`).
pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_trails_the_maximum_by_the_delay() {
        let mut w = Watermark::new(200);
        assert_eq!(w.current(), 0);
        w.observe(1_000);
        w.observe(900);
        assert_eq!(w.current(), 800);
        assert!(!w.is_late(800));
        assert!(w.is_late(799));
        w.observe(1_500);
        assert_eq!(w.current(), 1_300);
    }

    #[test]
    fn coarsening_never_moves_a_time_forward() {
        let t = Tick::new(10);
        assert_eq!(t.coarsen(1_234), 1_230);
        assert_eq!(t.coarsen(1_230), 1_230);
        assert_eq!(Tick::new(0).coarsen(7), 7);
    }
}
