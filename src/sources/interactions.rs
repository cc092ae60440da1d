//! The synthetic interaction log: users acting on items (view, click, purchase).
//!
//! Each user is a Poisson process at `rate / users`; each interaction picks an
//! item by Zipf-like popularity (item 0 most popular, exponent `zipf_s`) and a
//! kind with the configured probabilities (`purchase_prob`, `click_prob`, the
//! rest views). A worker generates the users it owns, so the union over workers
//! is the same stream whatever their number.

use super::anomalies::{AnomalyKind, EpisodeDriver, InteractionAnomalies, TruthRow};
use super::arrivals::{key_rng, ArrivalConfig, Arrivals, KeyMerge};
use super::keyed::{self, KeyedGenerator};
use super::schedule::Schedule;
use super::{Batch, Poll, Source};
use crate::record::{Interaction, InteractionKind};
use crate::rescale::groups::WorkerShare;
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
    /// Labelled anomalies to inject (`[sources.interactions.anomalies]`); none without the table.
    pub anomalies: Option<InteractionAnomalies>,
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
            anomalies: None,
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
        if let Some(a) = &self.anomalies {
            a.validate()?;
            if self.users > MAX_USERS_WITH_ANOMALIES {
                return Err(format!(
                    "anomalies need at most {MAX_USERS_WITH_ANOMALIES} users (their records' seq), got {}",
                    self.users
                ));
            }
        }
        self.arrivals.validate()
    }
}

/// An interaction kind with the configured probabilities.
fn draw_kind(purchase_prob: f64, click_prob: f64, rng: &mut ChaCha8Rng) -> InteractionKind {
    let roll: f64 = rng.gen();
    if roll < purchase_prob {
        InteractionKind::Purchase
    } else if roll < purchase_prob + click_prob {
        InteractionKind::Click
    } else {
        InteractionKind::View
    }
}

/// Injected records take seq slots above the users' (see `produce`).
const MAX_USERS_WITH_ANOMALIES: u64 = 1_000_000;
const SEQ_STRIDE: u64 = 1_000_003;

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
    /// The episode drivers this worker owns; their slots follow the users'.
    drivers: Vec<EpisodeDriver>,
    /// What a driver needs to start episodes.
    episode_setup: EpisodeSetup,
    share: WorkerShare,
    /// Labels of anomalies injected since the last batch.
    truth: Vec<TruthRow>,
}

/// The generator's parameters an episode's draw needs.
struct EpisodeSetup {
    arrivals: ArrivalConfig,
    users: u64,
    items: u64,
    /// Item popularity: P(item i) = (i + 1)^-s / norm.
    zipf_s: f64,
    zipf_norm: f64,
    item_burst_factor: f64,
    bot_rate_factor: f64,
}

impl EpisodeSetup {
    /// An episode's key, bot kind and extra rate per second.
    fn choose(&self, kind: AnomalyKind, rng: &mut ChaCha8Rng) -> (u64, InteractionKind, f64) {
        let rate = self.arrivals.rate;
        match kind {
            AnomalyKind::ItemBurst => {
                let item = rng.gen_range(0..self.items);
                let share = ((item + 1) as f64).powf(-self.zipf_s) / self.zipf_norm;
                let extra = (self.item_burst_factor - 1.0) * rate * share;
                (item, InteractionKind::View, extra.max(1e-9))
            }
            _ => {
                let user = rng.gen_range(0..self.users);
                let kind = [
                    InteractionKind::View,
                    InteractionKind::Click,
                    InteractionKind::Purchase,
                ][rng.gen_range(0..3)];
                (user, kind, self.bot_rate_factor * rate / self.users as f64)
            }
        }
    }
}

impl InteractionGenerator {
    pub fn new(
        config: &InteractionConfig,
        schedule: Schedule,
        batch_limit: usize,
        share: WorkerShare,
    ) -> Self {
        let start_us = schedule.position_us();
        let mut users = Vec::new();
        for user in (0..config.users).filter(|&u| share.owns(u)) {
            let mut rng = key_rng(config.arrivals.seed, 3, user);
            let arrivals = Arrivals::new(&config.arrivals, config.users, user, start_us, &mut rng);
            users.push(UserState {
                user,
                rng,
                arrivals,
                emitted: 0,
            });
        }
        let anomalies = config.anomalies.clone().unwrap_or(InteractionAnomalies {
            item_burst_every_s: 0.0,
            bot_every_s: 0.0,
            ..InteractionAnomalies::default()
        });
        let episode_setup = EpisodeSetup {
            arrivals: config.arrivals.clone(),
            users: config.users,
            items: config.items,
            zipf_s: config.zipf_s,
            zipf_norm: (1..=config.items)
                .map(|i| (i as f64).powf(-config.zipf_s))
                .sum(),
            item_burst_factor: anomalies.item_burst_factor,
            bot_rate_factor: anomalies.bot_rate_factor,
        };
        // A generator with a record count ends about when its users do.
        let horizon_us = config
            .arrivals
            .count
            .map(|c| start_us + (c as f64 / config.arrivals.rate * 1e6) as u64);
        let from_us = start_us + (anomalies.warmup_s * 1e6) as u64;
        let mut drivers = Vec::new();
        for (kind, every, length) in [
            (
                AnomalyKind::ItemBurst,
                anomalies.item_burst_every_s,
                anomalies.item_burst_s,
            ),
            (AnomalyKind::BotUser, anomalies.bot_every_s, anomalies.bot_s),
        ] {
            // One worker drives each kind, whatever their number.
            if !share.owns(SEQ_STRIDE + kind as u64) {
                continue;
            }
            let seed = config.arrivals.seed;
            if let Some(mut d) = EpisodeDriver::new(kind, seed, every, length, horizon_us) {
                d.next_episode(from_us, &config.arrivals, |rng| {
                    episode_setup.choose(kind, rng)
                });
                d.settle(&config.arrivals, |rng| episode_setup.choose(kind, rng));
                drivers.push(d);
            }
        }
        let mut merge = KeyMerge::new();
        for (slot, u) in users.iter().enumerate() {
            merge.push(u.arrivals.peek_us(), slot);
        }
        for (d, driver) in drivers.iter().enumerate() {
            merge.push(driver.peek_us(), users.len() + d);
        }
        InteractionGenerator {
            users,
            items: Zipf::new(config.items, config.zipf_s).expect("validated zipf parameters"),
            click_prob: config.click_prob,
            purchase_prob: config.purchase_prob,
            merge,
            schedule,
            batch_limit: batch_limit.max(1),
            drivers,
            episode_setup,
            share,
            truth: Vec::new(),
        }
    }

    /// The next record of episode driver `d`: `(arrival_us, record, the driver's next arrival)`.
    fn injected(&mut self, d: usize) -> (u64, Interaction, Option<u64>) {
        let setup = &self.episode_setup;
        let driver = &mut self.drivers[d];
        let kind = driver.kind;
        let e = driver
            .current
            .as_mut()
            .expect("a driver in the merge has an episode");
        let (arrival_us, ts_ms) = e.arrivals.take(&mut driver.rng);
        if !std::mem::replace(&mut e.labelled, true) {
            let factor = match kind {
                AnomalyKind::ItemBurst => setup.item_burst_factor,
                _ => setup.bot_rate_factor,
            };
            let (start, end) = (e.start_us / 1000, e.end_us / 1000);
            let row = TruthRow::new(kind, e.key.to_string(), start, end, factor);
            self.truth.push(row);
        }
        let rng = &mut driver.rng;
        let (user, item, interaction) = match kind {
            AnomalyKind::ItemBurst => {
                let user = rng.gen_range(0..setup.users);
                let kind = draw_kind(self.purchase_prob, self.click_prob, rng);
                (user, e.key, kind)
            }
            _ => (e.key, self.items.sample(rng) as u64 - 1, e.kind),
        };
        let record = Interaction {
            ts_ms,
            // Above every user's slot (users <= MAX_USERS_WITH_ANOMALIES).
            seq: driver.emitted * SEQ_STRIDE + MAX_USERS_WITH_ANOMALIES + 1 + kind as u64,
            user,
            item,
            kind: interaction,
        };
        driver.emitted += 1;
        driver.settle(&setup.arrivals, |rng| setup.choose(kind, rng));
        (arrival_us, record, driver.peek_us())
    }

    fn interaction(&mut self, slot: usize) -> (u64, Interaction) {
        let u = &mut self.users[slot];
        let (arrival_us, ts_ms) = u.arrivals.take(&mut u.rng);
        let item = self.items.sample(&mut u.rng) as u64 - 1;
        let kind = draw_kind(self.purchase_prob, self.click_prob, &mut u.rng);
        let record = Interaction {
            ts_ms,
            seq: u.emitted * SEQ_STRIDE + u.user % SEQ_STRIDE,
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
    fn share(&self) -> WorkerShare {
        self.share
    }
    fn slot_key(&self, slot: usize) -> u64 {
        match self.users.get(slot) {
            Some(u) => u.user,
            None => SEQ_STRIDE + self.drivers[slot - self.users.len()].kind as u64,
        }
    }
    fn produce(&mut self, slot: usize) -> (u64, Interaction, Option<u64>) {
        if slot >= self.users.len() {
            return self.injected(slot - self.users.len());
        }
        let (arrival, record) = self.interaction(slot);
        (arrival, record, self.users[slot].arrivals.peek_us())
    }
    fn drain_truth(&mut self, out: &mut Vec<TruthRow>) {
        out.append(&mut self.truth);
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

    fn restore_rescaled(&mut self, all: &[Vec<u8>], _: usize, _: usize) -> anyhow::Result<()> {
        keyed::restore_rescaled(self, all)
    }
}
