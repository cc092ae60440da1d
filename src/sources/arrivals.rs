//! Poisson arrivals for one key of a generator, with exact ties and bounded
//! disorder, and the merge of a worker's keys into one stream in arrival order.
//!
//! Each key (a symbol, a user) is an independent Poisson process at
//! `rate / keys`, so their union is a Poisson process at the total rate, and a
//! worker can generate exactly the keys it owns: the union over workers is the
//! same stream whatever the worker count. Arrival times are integer
//! microseconds so that merging is exact and deterministic.
//!
//! Disorder displaces a record's `ts_ms` backwards from its arrival by
//! 1..=`disorder_ms` (with probability `disorder_prob`), so no record is ever
//! more than `disorder_ms` behind any record that arrived before it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Arrival and disorder settings shared by both generators.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArrivalConfig {
    /// Total records per second of event time, over all keys.
    pub rate: f64,
    /// Total records to generate over all keys; none means unbounded.
    pub count: Option<u64>,
    /// Seed: the same seed gives the same stream.
    pub seed: u64,
    /// Event time of the first arrival, ms since the epoch; none means now (real time) or 1.7e12.
    pub start_ms: Option<u64>,
    /// Largest backwards displacement of a record's ts_ms.
    pub disorder_ms: u64,
    /// Fraction of records displaced (when disorder_ms > 0).
    pub disorder_prob: f64,
    /// Probability that a record has exactly the same arrival time as its key's previous one.
    pub tie_prob: f64,
}

impl Default for ArrivalConfig {
    fn default() -> Self {
        ArrivalConfig {
            rate: 2_000.0,
            count: None,
            seed: 42,
            start_ms: None,
            disorder_ms: 0,
            disorder_prob: 0.3,
            tie_prob: 0.02,
        }
    }
}

impl ArrivalConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!("rate must be a positive number, got {}", self.rate));
        }
        for (name, p) in [
            ("disorder_prob", self.disorder_prob),
            ("tie_prob", self.tie_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be between 0 and 1, got {p}"));
            }
        }
        Ok(())
    }

    /// How many of `count` records key `key` of `keys` produces (none: unbounded).
    pub fn share_of(&self, key: u64, keys: u64) -> Option<u64> {
        self.count.map(|c| c / keys + u64::from(key < c % keys))
    }
}

/// The arrival process of one key.
pub struct Arrivals {
    /// Mean gap between this key's arrivals, in µs.
    mean_gap_us: f64,
    next_us: u64,
    remaining: Option<u64>,
    tie_prob: f64,
    disorder_ms: u64,
    disorder_prob: f64,
}

impl Arrivals {
    pub fn new(
        config: &ArrivalConfig,
        keys: u64,
        key: u64,
        start_us: u64,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mean_gap_us = 1e6 * keys as f64 / config.rate;
        let mut arrivals = Arrivals {
            mean_gap_us,
            next_us: start_us,
            remaining: config.share_of(key, keys),
            tie_prob: config.tie_prob,
            disorder_ms: config.disorder_ms,
            disorder_prob: config.disorder_prob,
        };
        // The first arrival is itself a gap after the start, so keys don't all fire at once.
        arrivals.next_us += arrivals.gap(rng);
        arrivals
    }

    fn gap(&self, rng: &mut ChaCha8Rng) -> u64 {
        if rng.gen::<f64>() < self.tie_prob {
            return 0;
        }
        let u: f64 = rng.gen::<f64>();
        (-(1.0 - u).ln() * self.mean_gap_us).round() as u64
    }

    /// The next arrival in µs, or `None` when this key is exhausted.
    pub fn peek_us(&self) -> Option<u64> {
        (self.remaining != Some(0)).then_some(self.next_us)
    }

    /// Takes the next arrival: returns `(arrival_us, ts_ms)` and draws the one after.
    pub fn take(&mut self, rng: &mut ChaCha8Rng) -> (u64, u64) {
        let arrival_us = self.next_us;
        let arrival_ms = arrival_us / 1000;
        let displaced = self.disorder_ms > 0 && rng.gen::<f64>() < self.disorder_prob;
        let ts_ms = if displaced {
            arrival_ms.saturating_sub(rng.gen_range(1..=self.disorder_ms))
        } else {
            arrival_ms
        };
        if let Some(r) = self.remaining.as_mut() {
            *r -= 1;
        }
        self.next_us += self.gap(rng);
        (arrival_us, ts_ms)
    }
}

/// A worker's keys, merged into one stream in arrival order (ties by key index).
pub struct KeyMerge {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// Records taken so far: with the seed, the generator's position.
    pub taken: u64,
}

impl KeyMerge {
    pub fn new() -> Self {
        KeyMerge {
            heap: BinaryHeap::new(),
            taken: 0,
        }
    }

    /// Registers (or re-registers after a take) a key by its position in the worker's key list.
    pub fn push(&mut self, arrival_us: Option<u64>, slot: usize) {
        if let Some(t) = arrival_us {
            self.heap.push(Reverse((t, slot)));
        }
    }

    /// The slot with the earliest arrival at or before `until_us`, removed from the merge.
    pub fn pop_due(&mut self, until_us: u64) -> Option<usize> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= until_us => {
                self.taken += 1;
                self.heap.pop().map(|Reverse((_, s))| s)
            }
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn earliest_us(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }
}

impl Default for KeyMerge {
    fn default() -> Self {
        Self::new()
    }
}

/// A per-key random stream: the same for a key whatever worker generates it.
pub fn key_rng(seed: u64, stream: u64, key: u64) -> ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream.wrapping_mul(1 << 32) ^ key);
    rng
}
