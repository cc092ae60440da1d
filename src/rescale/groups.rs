//! Key groups: the unit in which keyed state moves between layouts.
//!
//! A key (a symbol, an item, a user: a `u64`) falls into group
//! `route_hash(key) % G`; with `P` workers in all, group `g` belongs to
//! worker `g * P / G`, so each worker owns a contiguous range of groups
//! ([`KeyGroups::range`]). The exchanges of the dataflow, the generators
//! (which produce a key where it is processed) and the checkpoint all use
//! [`KeyGroups::owner_of`]: restored state sits where its key's records
//! arrive. `G` is fixed for the life of a checkpoint (Flink's "max
//! parallelism"); a run may have at most `G` workers.

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Spreads integer keys evenly over key groups (the splitmix64 finaliser:
/// cheap, and its low bits depend on every bit of the key).
pub fn route_hash(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The default number of key groups (`[engine] key_groups`).
pub const DEFAULT_KEY_GROUPS: u32 = 256;
/// The most key groups a pipeline may ask for.
pub const MAX_KEY_GROUPS: u32 = 32_768;

/// The fixed number of key groups of a run and its checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroups {
    count: u32,
}

impl Default for KeyGroups {
    fn default() -> Self {
        KeyGroups {
            count: DEFAULT_KEY_GROUPS,
        }
    }
}

impl KeyGroups {
    /// `count` groups; one line naming the bound when it is out of range.
    pub fn new(count: u32) -> Result<Self, String> {
        if count == 0 || count > MAX_KEY_GROUPS {
            return Err(format!(
                "key_groups must be between 1 and {MAX_KEY_GROUPS} (got {count})"
            ));
        }
        Ok(KeyGroups { count })
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// The group of `key`.
    #[inline]
    pub fn group(self, key: u64) -> u32 {
        (route_hash(key) % u64::from(self.count)) as u32
    }

    /// The worker (of `peers`) that owns `group`.
    #[inline]
    pub fn owner(self, group: u32, peers: usize) -> usize {
        (u64::from(group) * peers as u64 / u64::from(self.count)) as usize
    }

    /// The worker (of `peers`) that owns `key`: where its records are routed.
    #[inline]
    pub fn owner_of(self, key: u64, peers: usize) -> usize {
        self.owner(self.group(key), peers)
    }

    /// The groups worker `worker` of `peers` owns: those `g` with
    /// `g * peers / G == worker`.
    pub fn range(self, worker: usize, peers: usize) -> Range<u32> {
        let first = |w: usize| (w as u64 * u64::from(self.count)).div_ceil(peers as u64) as u32;
        first(worker)..first(worker + 1)
    }
}

/// One worker's place among `peers` and the run's key groups: which keys
/// it owns (a generator produces only those, so that a record is born on
/// the worker that processes it).
#[derive(Clone, Copy, Debug)]
pub struct WorkerShare {
    pub index: usize,
    pub peers: usize,
    pub groups: KeyGroups,
}

impl WorkerShare {
    /// The only worker: it owns every key.
    pub fn whole() -> Self {
        WorkerShare {
            index: 0,
            peers: 1,
            groups: KeyGroups::default(),
        }
    }

    #[inline]
    pub fn owns(&self, key: u64) -> bool {
        self.groups.owner_of(key, self.peers) == self.index
    }
}

/// The exchange's routing of keys over `peers` workers: to the owner of
/// the key's group (an exchange sends a record to `route % peers`, so the
/// owner's index is the route).
#[derive(Clone, Copy, Debug)]
pub struct Router {
    groups: KeyGroups,
    peers: usize,
}

impl Router {
    pub fn new(groups: KeyGroups, peers: usize) -> Self {
        Router { groups, peers }
    }

    #[inline]
    pub fn route(&self, key: u64) -> u64 {
        self.groups.owner_of(key, self.peers) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn each_group_has_one_owner_and_ranges_tile_the_groups(count in 1u32..2_000, peers in 1usize..64) {
            prop_assume!(peers as u32 <= count);
            let g = KeyGroups::new(count).unwrap();
            let mut next = 0;
            for w in 0..peers {
                let r = g.range(w, peers);
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty(), "worker {} owns no group", w);
                for group in r.clone() {
                    prop_assert_eq!(g.owner(group, peers), w);
                }
                next = r.end;
            }
            prop_assert_eq!(next, count);
        }

        #[test]
        fn a_key_is_routed_to_the_owner_of_its_group(key: u64, peers in 1usize..16) {
            let g = KeyGroups::default();
            let w = g.owner_of(key, peers);
            prop_assert!(g.range(w, peers).contains(&g.group(key)));
        }
    }

    #[test]
    fn out_of_range_counts_are_refused() {
        assert!(KeyGroups::new(0).is_err());
        assert!(KeyGroups::new(MAX_KEY_GROUPS + 1).is_err());
        assert_eq!(KeyGroups::new(7).unwrap().count(), 7);
    }
}
