//! I5 `item_users_60s`: distinct users and distinct buyers per item over
//! tumbling windows (default 60 000 ms).
//!
//! users = the distinct users with any interaction on the item in the window;
//! buyers = the distinct users with at least one `purchase` on it. One row per
//! item and window with at least one interaction.
//! Output: `item_id,window_start_ms,users,buyers`.
//!
//! Worked example (60 s windows): item 7 viewed by users 1 and 2 at 1 000 ms,
//! bought by user 1 at 2 000 ms and by user 1 again at 3 000 ms, viewed by
//! user 3 at 61 000 ms gives `7,0,2,1` and `7,60000,1,0`.
//!
//! A pane-window aggregate keyed by item (`pane_window.rs`): a pane keeps the
//! set of its users and of its buyers, and panes merge by set union, so the
//! result is exact whatever the arrival order or worker count. State is the
//! distinct (item, user) pairs of the open windows.

use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::framework::pane_window::{window, WindowAggregate, WindowSpec};
use crate::record::{Interaction, InteractionKind};
use serde::{Deserialize, Serialize};
use rustc_hash::FxHashSet;

/// Pipeline `[queries.item_users_60s]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ItemUsersConfig {
    pub enabled: bool,
    pub size_ms: u64,
}

impl Default for ItemUsersConfig {
    fn default() -> Self {
        ItemUsersConfig {
            enabled: true,
            size_ms: 60_000,
        }
    }
}

impl QueryConfig for ItemUsersConfig {
    const ID: &'static str = "item_users_60s";
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(self.size_ms)
    }
    fn validate(&self, _: &QueryTables) -> Result<(), String> {
        WindowSpec::tumbling(self.size_ms).validate()
    }
    fn reads(&self) -> &[Input] {
        &[Input::Interactions]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<ItemUsers>().identified_by(&["item_id", "window_start_ms"])
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let rows = window(
            b.interactions_by_item(),
            Self::ID,
            WindowSpec::tumbling(self.size_ms),
            DistinctUsers,
            b.query_counters(),
            b.latency.clone(),
            b.states,
        )?;
        b.emit(rows);
        Ok(())
    }
}


/// A row of `item_users_60s.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ItemUsers {
    pub item_id: u64,
    pub window_start_ms: u64,
    pub users: u64,
    pub buyers: u64,
}

/// The users and buyers of one item in one pane. Hash sets: only their
/// sizes are read, and a `BTreeSet` insert was a tenth of the interaction
/// queries' time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSets {
    users: FxHashSet<u64>,
    buyers: FxHashSet<u64>,
}

/// The I5 aggregate.
pub struct DistinctUsers;

impl WindowAggregate for DistinctUsers {
    type In = Interaction;
    type Key = u64;
    type State = UserSets;
    const ORDER_SENSITIVE: bool = false;
    type Out = ItemUsers;

    fn key(&self, r: &Interaction) -> u64 {
        r.item
    }
    fn ts_ms(&self, r: &Interaction) -> u64 {
        r.ts_ms
    }
    fn seq(&self, r: &Interaction) -> u64 {
        r.seq
    }
    fn init(&self, r: &Interaction) -> UserSets {
        let mut sets = UserSets::default();
        self.add(&mut sets, r);
        sets
    }
    fn add(&self, sets: &mut UserSets, r: &Interaction) {
        sets.users.insert(r.user);
        if r.kind == InteractionKind::Purchase {
            sets.buyers.insert(r.user);
        }
    }
    fn merge(&self, into: &mut UserSets, other: &UserSets) {
        into.users.extend(&other.users);
        into.buyers.extend(&other.buyers);
    }
    fn finish(&self, item_id: u64, window_start_ms: u64, sets: &UserSets) -> Option<ItemUsers> {
        Some(ItemUsers {
            item_id,
            window_start_ms,
            users: sets.users.len() as u64,
            buyers: sets.buyers.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{interaction, run, Record};
    use proptest::prelude::*;

    fn rows(records: &[Record]) -> Vec<ItemUsers> {
        let mut rows = run::<ItemUsers, _>(ItemUsersConfig::default(), records, 1_000).rows;
        rows.sort();
        rows
    }

    #[test]
    fn the_module_docs_example() {
        let got = rows(&[
            interaction(1_000, 0, 1, 7, "view"),
            interaction(1_000, 1, 2, 7, "view"),
            interaction(2_000, 2, 1, 7, "purchase"),
            interaction(3_000, 3, 1, 7, "purchase"),
            interaction(61_000, 4, 3, 7, "view"),
        ]);
        let row = |window_start_ms, users, buyers| ItemUsers {
            item_id: 7,
            window_start_ms,
            users,
            buyers,
        };
        assert_eq!(got, [row(0, 2, 1), row(60_000, 1, 0)]);
    }

    #[test]
    fn a_buyer_is_a_user_and_an_empty_window_has_no_row() {
        let got = rows(&[
            interaction(10, 0, 5, 1, "purchase"),
            interaction(130_000, 1, 5, 1, "view"),
        ]);
        let windows: Vec<(u64, u64, u64)> = got.iter().map(|r| (r.window_start_ms, r.users, r.buyers)).collect();
        assert_eq!(windows, [(0, 1, 1), (120_000, 1, 0)]);
    }

    proptest! {
        /// Against a brute-force count of distinct (item, window, user) and
        /// (item, window, buyer), for records in any order within the bound.
        #[test]
        fn equals_brute_force_in_any_order_within_the_bound(
            raw in proptest::collection::vec((0u64..200_000, 0u64..6, 0u64..4, 0u8..3), 1..120),
            shuffle_seed in any::<u64>(),
        ) {
            let kinds = ["view", "click", "purchase"];
            let mut records: Vec<(u64, u64, u64, u64, u8)> = raw
                .iter()
                .enumerate()
                .map(|(i, &(ts, user, item, kind))| (ts, i as u64, user, item, kind))
                .collect();
            records.sort();
            // Disorder within 1 s: swap neighbours whose ts differ by less.
            let mut s = shuffle_seed;
            for i in 1..records.len() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if s >> 63 == 1 && records[i].0 - records[i - 1].0 < 1_000 {
                    records.swap(i, i - 1);
                }
            }
            let input: Vec<Record> = records
                .iter()
                .map(|&(ts, seq, user, item, kind)| interaction(ts, seq, user, item, kinds[kind as usize]))
                .collect();
            let ran = run::<ItemUsers, _>(ItemUsersConfig::default(), &input, 1_000);
            prop_assert_eq!(ran.late, 0);
            let mut got = ran.rows;
            got.sort();
            let mut sets: std::collections::BTreeMap<(u64, u64), (std::collections::BTreeSet<u64>, std::collections::BTreeSet<u64>)> = Default::default();
            for &(ts, _, user, item, kind) in &records {
                let e = sets.entry((item, ts - ts % 60_000)).or_default();
                e.0.insert(user);
                if kind == 2 {
                    e.1.insert(user);
                }
            }
            let expected: Vec<ItemUsers> = sets
                .into_iter()
                .map(|((item_id, window_start_ms), (u, b))| ItemUsers {
                    item_id,
                    window_start_ms,
                    users: u.len() as u64,
                    buyers: b.len() as u64,
                })
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
