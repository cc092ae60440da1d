//! When a generator emits: in real time (event time follows the wall clock,
//! open loop) or as fast as possible (simulated event time).
//!
//! Real time is an open-loop schedule: a record whose arrival is at event time
//! `a` is due at wall time `start + (a - start_event) / speed`, whether or not
//! the engine kept up. A stall therefore shows as generator lag and as latency
//! rather than as a lower offered rate (no coordinated omission).
//! Records are taken at the *releases* of [`Schedule::released_every`]:
//! event times where the watermark crosses a multiple of the release step
//! (ticks, and every window end; see `EngineConfig::release_step_ms`).
//! Taking records as each falls due woke the worker thousands of times a
//! second to hold rows the frontier could not yet let out; a record due
//! between releases is taken at the next one, and its lag counts from there.
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
    /// Real time: records are released at event times `k * release_every_us
    /// + release_offset_us` (0: as each falls due).
    release_every_us: u64,
    release_offset_us: u64,
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
            release_every_us: 0,
            release_offset_us: 0,
        }
    }

    /// Real time: releases the records due at the event times where a
    /// watermark `max_delay_ms` behind the schedule crosses a multiple of
    /// `step_ms` (`k * step_ms + max_delay_ms`), not as each falls due.
    pub fn released_every(mut self, step_ms: u64, max_delay_ms: u64) -> Self {
        self.release_every_us = step_ms * 1000;
        self.release_offset_us = match step_ms {
            0 => 0,
            _ => (max_delay_ms % step_ms) * 1000,
        };
        self
    }

    /// The first release at or after event time `at_us` (`at_us` itself
    /// without releases).
    fn release_at_or_after(&self, at_us: u64) -> u64 {
        let (every, offset) = (self.release_every_us, self.release_offset_us);
        if every == 0 {
            return at_us;
        }
        at_us.saturating_sub(offset).div_ceil(every) * every + offset
    }

    /// The wall time event time `event_us` is due at (real time).
    fn wall_of(&self, event_us: u64) -> Instant {
        let after_us = event_us.saturating_sub(self.start_event_us) as f64 / self.speed;
        self.start_wall + Duration::from_micros(after_us as u64)
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
                let release = self.release_at_or_after(self.position_us + 1);
                if target >= release {
                    Ok(target)
                } else {
                    let wait = self
                        .wall_of(release)
                        .saturating_duration_since(Instant::now());
                    Err(wait.max(Duration::from_micros(50)))
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

    /// How far behind its schedule (ms of wall time) a record due at
    /// `arrival_us` is when emitted now, counted from its release; none as
    /// fast as possible.
    pub fn lag_ms(&self, arrival_us: u64) -> Option<f64> {
        match self.timing {
            Timing::AsFast => None,
            Timing::RealTime => {
                let due = self.wall_of(self.release_at_or_after(arrival_us));
                Some(Instant::now().saturating_duration_since(due).as_secs_f64() * 1000.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_MS: u64 = 1_700_000_000_000;

    fn real_time(started_ago: Duration) -> Schedule {
        Schedule::new(
            Timing::RealTime,
            1.0,
            START_MS,
            Instant::now() - started_ago,
            1,
        )
        .released_every(50, 210)
    }

    #[test]
    fn releases_are_where_the_watermark_crosses_a_step() {
        let s = real_time(Duration::ZERO);
        // Offset 210 mod 50 = 10 ms: the watermark (210 ms behind) crosses 50 ms steps.
        let at = |ms: u64| s.release_at_or_after((START_MS + ms) * 1000) / 1000 - START_MS;
        assert_eq!([at(0), at(1), at(10), at(11), at(60)], [10, 10, 10, 60, 60]);
        let every_tick = Schedule::new(Timing::RealTime, 1.0, START_MS, Instant::now(), 1);
        assert_eq!(every_tick.release_at_or_after(123_456), 123_456);
    }

    #[test]
    fn a_real_time_schedule_waits_for_its_next_release_and_counts_lag_from_it() {
        // Just started: nothing is released before the first step (10 ms in).
        let s = real_time(Duration::ZERO);
        let Err(wait) = s.due_until() else {
            panic!("nothing is due yet")
        };
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        // Started 120 ms ago: everything up to now is due; a record that
        // arrived 5 ms in was held for the release at 10 ms.
        let mut s = real_time(Duration::from_millis(120));
        let until = s.due_until().expect("due");
        assert!(until >= (START_MS + 120) * 1000, "{until}");
        let lag = s.lag_ms((START_MS + 5) * 1000).unwrap();
        assert!((110.0..1_000.0).contains(&lag), "{lag}");
        s.advance_to(until);
        // The next release is the next step after `until`.
        assert!(matches!(s.due_until(), Err(w) if w <= Duration::from_millis(50)));
    }
}
