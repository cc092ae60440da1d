//! When a generator emits: in real time (event time follows the wall clock,
//! open loop) or as fast as possible (simulated event time).
//!
//! Real time is an open-loop schedule: a record whose arrival is at event time
//! `a` is due at wall time `start + (a - start_event) / speed`, whether or not
//! the engine kept up. A stall therefore shows as generator lag and as latency
//! rather than as a lower offered rate (no coordinated omission).
//! As fast as possible, event time advances by one batch span per step:
//! `batch_size / rate` seconds, so a batch holds `batch_size` records on average
//! over all workers, and batch boundaries are the same for every worker count.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How a generator's event time relates to the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// Event time follows the wall clock (times `speed`).
    RealTime,
    /// Simulated event time, as fast as the engine takes it.
    AsFast,
}

/// The event-time position of one generator on one worker.
pub struct Schedule {
    timing: Timing,
    speed: f64,
    start_event_us: u64,
    start_wall: Instant,
    batch_span_us: u64,
    /// Every arrival at or before this has been emitted.
    position_us: u64,
}

impl Schedule {
    pub fn new(
        timing: Timing,
        speed: f64,
        start_event_ms: u64,
        start_wall: Instant,
        batch_span_us: u64,
    ) -> Self {
        Schedule {
            timing,
            speed: if speed > 0.0 { speed } else { 1.0 },
            start_event_us: start_event_ms * 1000,
            start_wall,
            batch_span_us: batch_span_us.max(1),
            position_us: start_event_ms * 1000,
        }
    }

    /// Everything at or before this event time (µs) has been emitted.
    pub fn position_us(&self) -> u64 {
        self.position_us
    }

    /// The event time up to which records are due now, or how long to wait.
    pub fn due_until(&self) -> Result<u64, Duration> {
        match self.timing {
            Timing::AsFast => Ok(self.position_us + self.batch_span_us),
            Timing::RealTime => {
                let elapsed_us = self.start_wall.elapsed().as_micros() as f64;
                let target = self.start_event_us + (elapsed_us * self.speed) as u64;
                if target > self.position_us {
                    Ok(target)
                } else {
                    Err(Duration::from_micros(200))
                }
            }
        }
    }

    /// Goes on from a checkpointed position: as fast as possible, from there;
    /// in real time, with that event time due now.
    pub fn resume_at(&mut self, position_us: u64) {
        self.position_us = position_us;
        if self.timing == Timing::RealTime {
            self.start_event_us = position_us;
            self.start_wall = Instant::now();
        }
    }

    /// Marks everything up to `target_us` as emitted.
    pub fn advance_to(&mut self, target_us: u64) {
        self.position_us = self.position_us.max(target_us);
    }

    /// How far behind its schedule (ms of wall time) a record due at `arrival_us` is
    /// when emitted now; none as fast as possible.
    pub fn lag_ms(&self, arrival_us: u64) -> Option<f64> {
        match self.timing {
            Timing::AsFast => None,
            Timing::RealTime => {
                let due_us = arrival_us.saturating_sub(self.start_event_us) as f64 / self.speed;
                let now_us = self.start_wall.elapsed().as_micros() as f64;
                Some(((now_us - due_us) / 1000.0).max(0.0))
            }
        }
    }
}
