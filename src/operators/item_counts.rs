//! I1 `item_counts_60s`: per-item interaction counts by kind over tumbling
//! windows (default 60 000 ms).
//! Output: `item_id,window_start_ms,views,clicks,purchases,total`.
//! Its aggregate, counts by kind per key, also makes the one-second item
//! panes of the models and, keyed by user, the bot detector's user panes.

use super::pane_window::{WindowAggregate, WindowSpec};
use crate::record::{Interaction, InteractionKind};
use serde::{Deserialize, Serialize};

/// Pipeline `[queries.item_counts_60s]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ItemCountsConfig {
    pub enabled: bool,
    pub size_ms: u64,
}

impl Default for ItemCountsConfig {
    fn default() -> Self {
        ItemCountsConfig {
            enabled: true,
            size_ms: 60_000,
        }
    }
}

impl ItemCountsConfig {
    pub fn spec(&self) -> WindowSpec {
        WindowSpec::tumbling(self.size_ms)
    }
}

/// Counts of one item, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    pub views: u64,
    pub clicks: u64,
    pub purchases: u64,
}

impl KindCounts {
    pub fn of(kind: InteractionKind) -> Self {
        let mut c = KindCounts::default();
        c.add(kind, 1);
        c
    }

    pub fn add(&mut self, kind: InteractionKind, n: u64) {
        match kind {
            InteractionKind::View => self.views += n,
            InteractionKind::Click => self.clicks += n,
            InteractionKind::Purchase => self.purchases += n,
        }
    }

    pub fn merge(&mut self, other: &KindCounts) {
        self.views += other.views;
        self.clicks += other.clicks;
        self.purchases += other.purchases;
    }

    pub fn total(&self) -> u64 {
        self.views + self.clicks + self.purchases
    }
}

/// A row of `item_counts_60s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemCount {
    pub item_id: u64,
    pub window_start_ms: u64,
    pub views: u64,
    pub clicks: u64,
    pub purchases: u64,
    pub total: u64,
}

impl ItemCount {
    fn new(item_id: u64, window_start_ms: u64, c: &KindCounts) -> Self {
        ItemCount {
            item_id,
            window_start_ms,
            views: c.views,
            clicks: c.clicks,
            purchases: c.purchases,
            total: c.total(),
        }
    }
}

/// Interactions counted by kind per key — the item here (I1, and the item
/// panes of the models), the user for the bot detector — made into rows by `row`.
pub struct KindCountsBy<Out> {
    key: fn(&Interaction) -> u64,
    row: fn(u64, u64, &KindCounts) -> Out,
}

impl<Out> KindCountsBy<Out> {
    pub fn new(key: fn(&Interaction) -> u64, row: fn(u64, u64, &KindCounts) -> Out) -> Self {
        KindCountsBy { key, row }
    }
}

impl KindCountsBy<ItemCount> {
    /// Per item: the rows of `item_counts_60s.csv`.
    pub fn items() -> Self {
        KindCountsBy::new(|r| r.item, ItemCount::new)
    }
}

impl<Out: Clone + 'static> WindowAggregate for KindCountsBy<Out> {
    type In = Interaction;
    type Key = u64;
    type State = KindCounts;
    const ORDER_SENSITIVE: bool = false;
    type Out = Out;

    fn key(&self, r: &Interaction) -> u64 {
        (self.key)(r)
    }
    fn ts_ms(&self, r: &Interaction) -> u64 {
        r.ts_ms
    }
    fn seq(&self, r: &Interaction) -> u64 {
        r.seq
    }
    fn init(&self, r: &Interaction) -> KindCounts {
        KindCounts::of(r.kind)
    }
    fn add(&self, c: &mut KindCounts, r: &Interaction) {
        c.add(r.kind, 1);
    }
    fn merge(&self, c: &mut KindCounts, o: &KindCounts) {
        c.merge(o);
    }
    fn finish(&self, key: u64, window_start_ms: u64, c: &KindCounts) -> Option<Out> {
        Some((self.row)(key, window_start_ms, c))
    }
}
