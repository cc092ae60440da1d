//! I1 `item_counts_60s`: per-item interaction counts by kind over tumbling
//! windows (default 60 000 ms).
//! Output: `item_id,window_start_ms,views,clicks,purchases,total`.
//! Its aggregate, counts by kind per key, also makes the one-second item
//! panes of the models and, keyed by user, the bot detector's user panes.

use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::framework::pane_window::{WindowAggregate, WindowSpec};
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

impl QueryConfig for ItemCountsConfig {
    const ID: &'static str = "item_counts_60s";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(self.spec().pane_ms())
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        self.spec().validate()
    }
    fn reads(&self) -> &[Input] {
        &[Input::Interactions]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<ItemCount>().identified_by(&["item_id", "window_start_ms"])
    }
    /// The windows are shared with the alerts ([`Build::item_counts`]).
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let counts = b.item_counts(Self::ID, self.spec())?;
        b.emit(counts);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{interaction, run};

    const T: u64 = 1_700_000_040_000;

    #[test]
    fn counts_by_kind_per_item_and_window_with_empty_windows_silent() {
        let records = [
            interaction(T + 10, 0, 1, 7, "view"),
            interaction(T + 5, 1, 2, 7, "purchase"),
            interaction(T + 20, 2, 1, 8, "click"),
            interaction(T + 59_999, 3, 3, 7, "view"),
            // Nothing in [T+60 s, T+120 s).
            interaction(T + 120_000, 4, 1, 7, "click"),
        ];
        let mut rows = run::<ItemCount, _>(ItemCountsConfig::default(), &records, 100).rows;
        rows.sort_by_key(|r| (r.window_start_ms, r.item_id));
        let got: Vec<(u64, u64, u64, u64, u64, u64)> = rows
            .iter()
            .map(|r| (r.item_id, r.window_start_ms, r.views, r.clicks, r.purchases, r.total))
            .collect();
        assert_eq!(
            got,
            [
                (7, T, 2, 0, 1, 3),
                (8, T, 0, 1, 0, 1),
                (7, T + 120_000, 0, 1, 0, 1)
            ]
        );
    }

    #[test]
    fn merging_counts_equals_adding_one_by_one() {
        let kinds = [InteractionKind::View, InteractionKind::Purchase, InteractionKind::View, InteractionKind::Click];
        let mut one = KindCounts::default();
        kinds.iter().for_each(|k| one.add(*k, 1));
        let mut left = KindCounts::of(kinds[0]);
        left.add(kinds[1], 1);
        let mut right = KindCounts::of(kinds[2]);
        right.add(kinds[3], 1);
        left.merge(&right);
        assert_eq!(left, one);
        assert_eq!(one.total(), 4);
    }
}
