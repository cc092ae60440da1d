//! Bot-like users (`anomalies.csv`, kind `bot_user`): per user, one-second
//! pane counts of their interactions by kind (a pane window keyed by user)
//! go through the burst test of `burst.rs` in pane order; a pane that starts
//! an alarm is a bot when, over the last `window_panes` panes, one
//! interaction kind makes at least `kind_share` of the user's interactions.
//! The row is at the pane's end, scored `recent / expected` (how many times
//! their own normal rate the user ran).
//! Output of the pane window: `user_id,window_start_ms,views,clicks,purchases`.

use super::anomalies::Anomaly;
use super::item_counts_60s::{KindCounts, KindCountsBy};
use crate::framework::burst::{BurstConfig, BurstTest};
use crate::framework::ordered::OrderedLogic;
use crate::sources::anomalies::AnomalyKind;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Pipeline `[queries.anomalies.bots]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BotConfig {
    #[serde(flatten)]
    pub burst: BurstConfig,
    /// The least share of one interaction kind in the window.
    pub kind_share: f64,
}

impl BotConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.burst.validate("bots")?;
        if !(0.0..=1.0).contains(&self.kind_share) {
            return Err(format!(
                "anomalies.bots.kind_share must be between 0 and 1, got {}",
                self.kind_share
            ));
        }
        Ok(())
    }
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            burst: BurstConfig {
                ratio: 5.0,
                warmup_panes: 10,
                min_count: 20,
                ..BurstConfig::default()
            },
            kind_share: 0.9,
        }
    }
}

/// One user's interactions in one pane, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserPane {
    pub user_id: u64,
    pub window_start_ms: u64,
    pub counts: KindCounts,
}

/// The pane window's aggregate: counts by kind per user.
pub fn user_kind_counts() -> KindCountsBy<UserPane> {
    KindCountsBy::new(
        |r| r.user,
        |user_id, window_start_ms, counts| UserPane {
            user_id,
            window_start_ms,
            counts: *counts,
        },
    )
}

#[derive(Serialize, Deserialize)]
struct UserState {
    test: BurstTest,
    /// The window's panes by kind, newest last (the test keeps the totals).
    kinds: VecDeque<(u64, KindCounts)>,
}

/// The detector: a burst test and a kind mix per user.
#[derive(Serialize, Deserialize)]
pub struct BotUsers {
    // Not the flattened BotConfig: checkpoints encode sizes ahead (bincode).
    burst: BurstConfig,
    kind_share: f64,
    users: FxHashMap<u64, UserState>,
}

impl BotUsers {
    pub fn new(config: &BotConfig) -> Self {
        BotUsers {
            burst: config.burst.clone(),
            kind_share: config.kind_share,
            users: FxHashMap::default(),
        }
    }
}

// Rescaled: each key's state goes with its key group; the rest is settings.
crate::grouped_by_map!(BotUsers, users);

impl OrderedLogic for BotUsers {
    type In = UserPane;
    type Out = Anomaly;

    fn order(&self, pane: &UserPane) -> (u64, u64) {
        (pane.window_start_ms, pane.user_id)
    }

    fn on_record(&mut self, p: &UserPane, out: &mut Vec<Anomaly>) {
        let c = &self.burst;
        let index = p.window_start_ms / c.pane_ms;
        let user = self.users.entry(p.user_id).or_insert_with(|| UserState {
            test: BurstTest::new(index),
            kinds: VecDeque::new(),
        });
        user.kinds.push_back((index, p.counts));
        while user
            .kinds
            .front()
            .is_some_and(|(i, _)| *i + c.window_panes as u64 <= index)
        {
            user.kinds.pop_front();
        }
        let mut sum = KindCounts::default();
        user.kinds.iter().for_each(|(_, k)| sum.merge(k));
        let top = sum.views.max(sum.clicks).max(sum.purchases);
        let one_kind = top as f64 >= self.kind_share * sum.total() as f64;
        let verdict = user.test.pane(c, index, p.counts.total(), one_kind);
        if let Some(score) = verdict.alarm {
            let at = p.window_start_ms + c.pane_ms;
            out.push(Anomaly::new(
                AnomalyKind::BotUser,
                p.user_id.to_string(),
                at,
                score,
            ));
        }
    }

    fn on_frontier(&mut self, _frontier_ms: Option<u64>, _out: &mut Vec<Anomaly>) {}

    fn owes_at(&self) -> Option<u64> {
        None
    }
}
