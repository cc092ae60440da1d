//! The synthetic interaction log: users acting on items (view, click, purchase).
//!
//! Each user is a Poisson process at `rate / users`; each interaction picks an
//! item by Zipf-like popularity (item 0 most popular, exponent `zipf_s`) and a
//! kind with the configured probabilities (`purchase_prob`, `click_prob`, the
//! rest views). A worker generates the users it owns, so the union over workers
//! is the same stream whatever their number.

use super::arrivals::{key_rng, ArrivalConfig, Arrivals, KeyMerge};
use super::keyed::{self, KeyedGenerator};
use super::schedule::Schedule;
use super::{Batch, Poll, Source};
use crate::record::{owner_of, Interaction, InteractionKind};
use crate::time::Watermark;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

/// Parameters of the interaction generator (pipeline `[sources.interactions]`, `kind = "interactions"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InteractionConfig {
    pub users: u64,
    pub items: u64,
    /// Zipf exponent of item popularity.
    pub zipf_s: f64,
    pub click_prob: f64,
    pub purchase_prob: f64,
    #[serde(flatten)]
    pub arrivals: ArrivalConfig,
}

impl Default for InteractionConfig {
    fn default() -> Self {
        InteractionConfig {
            users: 1_000,
            items: 500,
            zipf_s: 1.0,
            click_prob: 0.15,
            purchase_prob: 0.03,
            arrivals: ArrivalConfig::default(),
        }
    }
}

impl InteractionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.users == 0 || self.items == 0 {
            return Err("users and items must be at least 1".into());
        }
        if !(self.zipf_s.is_finite() && self.zipf_s > 0.0) {
            return Err(format!("zipf_s must be positive, got {}", self.zipf_s));
        }
        let p = self.click_prob + self.purchase_prob;
        if self.click_prob < 0.0 || self.purchase_prob < 0.0 || p > 1.0 {
            return Err(format!(
                "click_prob and purchase_prob must be non-negative and sum to at most 1, got {p}"
            ));
        }
        self.arrivals.validate()
    }
}

struct UserState {
    user: u64,
    rng: ChaCha8Rng,
    arrivals: Arrivals,
    emitted: u64,
}

/// Generates this worker's users of the interaction stream.
pub struct InteractionGenerator {
    users: Vec<UserState>,
    items: Zipf<f64>,
    click_prob: f64,
    purchase_prob: f64,
    merge: KeyMerge,
    schedule: Schedule,
    batch_limit: usize,
}

impl InteractionGenerator {
    pub fn new(
        config: &InteractionConfig,
        schedule: Schedule,
        batch_limit: usize,
        index: usize,
        peers: usize,
    ) -> Self {
        let start_us = schedule.position_us();
        let mut users = Vec::new();
        for user in (0..config.users).filter(|&u| owner_of(u, peers) == index) {
            let mut rng = key_rng(config.arrivals.seed, 3, user);
            let arrivals = Arrivals::new(&config.arrivals, config.users, user, start_us, &mut rng);
            users.push(UserState {
                user,
                rng,
                arrivals,
                emitted: 0,
            });
        }
        let mut merge = KeyMerge::new();
        for (slot, u) in users.iter().enumerate() {
            merge.push(u.arrivals.peek_us(), slot);
        }
        InteractionGenerator {
            users,
            items: Zipf::new(config.items, config.zipf_s).expect("validated zipf parameters"),
            click_prob: config.click_prob,
            purchase_prob: config.purchase_prob,
            merge,
            schedule,
            batch_limit: batch_limit.max(1),
        }
    }

    fn interaction(&mut self, slot: usize) -> (u64, Interaction) {
        let u = &mut self.users[slot];
        let (arrival_us, ts_ms) = u.arrivals.take(&mut u.rng);
        let item = self.items.sample(&mut u.rng) as u64 - 1;
        let roll: f64 = u.rng.gen();
        let kind = if roll < self.purchase_prob {
            InteractionKind::Purchase
        } else if roll < self.purchase_prob + self.click_prob {
            InteractionKind::Click
        } else {
            InteractionKind::View
        };
        let record = Interaction {
            ts_ms,
            seq: u.emitted * 1_000_003 + u.user % 1_000_003,
            user: u.user,
            item,
            kind,
        };
        u.emitted += 1;
        (arrival_us, record)
    }
}

impl KeyedGenerator<Interaction> for InteractionGenerator {
    fn parts(&mut self) -> (&mut Schedule, &mut KeyMerge) {
        (&mut self.schedule, &mut self.merge)
    }
    fn batch_limit(&self) -> usize {
        self.batch_limit
    }
    fn produce(&mut self, slot: usize) -> (u64, Interaction, Option<u64>) {
        let (arrival, record) = self.interaction(slot);
        (arrival, record, self.users[slot].arrivals.peek_us())
    }
}

impl Source<Interaction> for InteractionGenerator {
    fn next_batch(
        &mut self,
        batch: &mut Batch<Interaction>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll> {
        keyed::next_batch(self, batch, watermark)
    }

    fn save(&self) -> anyhow::Result<Vec<u8>> {
        keyed::save(&self.schedule, &self.merge)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        keyed::restore(self, saved)
    }
}
