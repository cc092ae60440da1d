//! A rate-burst test over recent panes, for one key (an item, a user): what
//! `item_bursts.rs` and `bot_users.rs` share.
//!
//! The key's panes (fixed event-time slices, `pane_ms`) arrive in order, with
//! their counts; panes without records are skipped and count as 0. The test
//! keeps the last `window_panes` counts and a baseline: the exponentially
//! weighted mean count per pane (half-life `baseline_half_life_panes`, over
//! every pane since the key was first seen, frozen while the key is in alarm
//! so that a burst does not become its own baseline). With `recent` the sum
//! of the window and `expected = baseline * window_panes`, a pane *alarms* when
//! the key has been seen for `warmup_panes`, `recent >= min_count`,
//! `recent >= ratio * expected` and, as for a Poisson count,
//! `(recent - expected) / sqrt(expected) >= min_z`, and whatever the caller
//! adds holds (the bot test's kind share). Only the pane that enters
//! the alarm is reported; the alarm ends once `recent < ratio * expected / 2`.

use super::ew::{weight_of_half_life, EwMean};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The test's settings (part of `[queries.anomalies.items]` and `.bots`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BurstConfig {
    pub pane_ms: u64,
    pub window_panes: usize,
    pub baseline_half_life_panes: f64,
    pub warmup_panes: u64,
    pub ratio: f64,
    pub min_z: f64,
    pub min_count: u64,
}

impl Default for BurstConfig {
    fn default() -> Self {
        BurstConfig {
            pane_ms: 1_000,
            window_panes: 10,
            baseline_half_life_panes: 120.0,
            warmup_panes: 30,
            ratio: 2.5,
            min_z: 6.0,
            min_count: 10,
        }
    }
}

impl BurstConfig {
    pub fn validate(&self, table: &str) -> Result<(), String> {
        if self.pane_ms == 0 || self.window_panes == 0 || self.window_panes > 10_000 {
            return Err(format!(
                "anomalies.{table}: pane_ms must be positive and window_panes between 1 and 10000"
            ));
        }
        let positive = [
            ("baseline_half_life_panes", self.baseline_half_life_panes),
            ("ratio", self.ratio),
            ("min_z", self.min_z),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(format!(
                "anomalies.{table}.{name} must be positive, got {v}"
            ));
        }
        Ok(())
    }
}

/// The test's state for one key (constant size: `window_panes` counts).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BurstTest {
    /// The latest pane's index (`start / pane_ms`).
    pane: u64,
    /// Counts of the panes up to `pane`, newest last.
    recent: VecDeque<u64>,
    baseline: EwMean,
    /// Panes seen since the key first was (empty ones included).
    age: u64,
    alarm: bool,
}

/// What a pane showed.
pub struct Verdict {
    /// The pane starts an alarm: `recent / expected`.
    pub alarm: Option<f64>,
}

impl BurstTest {
    pub fn new(pane: u64) -> Self {
        BurstTest {
            pane,
            recent: VecDeque::new(),
            baseline: EwMean::default(),
            age: 0,
            alarm: false,
        }
    }

    /// Takes pane `pane` (not before the latest one) with `count` records;
    /// `confirmed`: what else the caller requires of an alarm holds.
    pub fn pane(&mut self, c: &BurstConfig, pane: u64, count: u64, confirmed: bool) -> Verdict {
        let weight = weight_of_half_life(c.baseline_half_life_panes);
        if self.age > 0 || !self.recent.is_empty() {
            // The latest pane is complete, and the ones between were empty.
            let gap = pane.saturating_sub(self.pane);
            if gap > 0 && !self.alarm {
                let latest = self.recent.back().copied().unwrap_or(0) as f64;
                self.baseline.add(latest, weight);
                self.baseline.add_zeros(gap - 1, weight);
            }
            for _ in 1..gap.min(c.window_panes as u64 + 1) {
                self.recent.push_back(0);
            }
            if gap > 0 {
                self.recent.push_back(0);
            }
            self.age += gap;
        } else {
            self.recent.push_back(0);
        }
        self.pane = pane.max(self.pane);
        *self.recent.back_mut().expect("pushed above") += count;
        while self.recent.len() > c.window_panes {
            self.recent.pop_front();
        }
        let recent: u64 = self.recent.iter().sum();
        let expected = self.baseline.mean * c.window_panes as f64;
        let r = recent as f64;
        if self.alarm {
            if r < c.ratio * expected / 2.0 {
                self.alarm = false;
            }
            return Verdict { alarm: None };
        }
        let surprising = confirmed
            && self.age >= c.warmup_panes
            && recent >= c.min_count
            && r >= c.ratio * expected
            && (r - expected) >= c.min_z * expected.max(1.0).sqrt();
        if surprising {
            self.alarm = true;
            return Verdict {
                alarm: Some(r / expected.max(1e-9)),
            };
        }
        Verdict { alarm: None }
    }

    /// The counts of the window, oldest first (for tests and the bot test's share).
    pub fn window(&self) -> &VecDeque<u64> {
        &self.recent
    }
}
