//! Operator state cut into key groups, so that any layout can restore it.
//!
//! A checkpointed state is saved as [`SavedParts`]: its keyed entries,
//! bucketed by the key group of each entry's key, and a *rest* that belongs
//! to no key (settings, the progress of a frontier). A resumed worker gets
//! the entries of the groups it owns now, from whichever worker had them, and
//! the rests of every old worker; each state type says in its [`Grouped`]
//! implementation how rests join (the first one, the greatest, ...). Under
//! the same layout a worker gets back exactly its own state.

use super::groups::KeyGroups;
use anyhow::Context;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hash;

/// A state as a checkpoint keeps it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedParts {
    /// What belongs to no key (bincode; empty when there is nothing).
    pub rest: Vec<u8>,
    /// The entries of each group that has any (bincode of a `Vec` of entries), by group.
    pub groups: Vec<(u32, Vec<u8>)>,
}

impl SavedParts {
    /// Bytes of the state.
    pub fn len(&self) -> usize {
        self.rest.len() + self.groups.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a resumed worker restores one state from.
#[derive(Clone, Debug, Default)]
pub struct RestoredParts {
    /// Every old worker's rest, in the old workers' order (empty rests left out).
    pub rests: Vec<Vec<u8>>,
    /// The entries of the groups this worker owns now.
    pub groups: Vec<Vec<u8>>,
}

/// A state that can be saved in key groups and restored from any layout's.
pub trait Grouped: 'static {
    /// The state, cut into key groups and a rest.
    fn save_parts(&mut self, groups: KeyGroups) -> anyhow::Result<SavedParts>;
    /// Restores a fresh state from parts (see [`RestoredParts`]).
    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()>;
}

/// The `u64` a state's key is routed by (the key the exchange hashes).
pub trait RouteKey {
    fn route_key(&self) -> u64;
}

impl RouteKey for u64 {
    fn route_key(&self) -> u64 {
        *self
    }
}

impl RouteKey for crate::record::Symbol {
    fn route_key(&self) -> u64 {
        self.0
    }
}

impl<T> RouteKey for (u64, T) {
    fn route_key(&self) -> u64 {
        self.0
    }
}

impl<A, B> RouteKey for (u64, A, B) {
    fn route_key(&self) -> u64 {
        self.0
    }
}

/// Serializes `entries`, each with the key it is routed by, into one
/// `Vec` per key group.
pub fn save_by_group<T: Serialize>(
    entries: impl Iterator<Item = (u64, T)>,
    groups: KeyGroups,
) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    let mut buckets: BTreeMap<u32, Vec<T>> = BTreeMap::new();
    for (key, entry) in entries {
        buckets.entry(groups.group(key)).or_default().push(entry);
    }
    buckets
        .into_iter()
        .map(|(g, bucket)| Ok((g, bincode::serialize(&bucket)?)))
        .collect()
}

/// The entries of every restored group.
pub fn restored_entries<T: DeserializeOwned>(parts: &RestoredParts) -> anyhow::Result<Vec<T>> {
    let mut all = Vec::new();
    for bytes in &parts.groups {
        let bucket: Vec<T> =
            bincode::deserialize(bytes).context("a key group of the checkpoint does not decode")?;
        all.extend(bucket);
    }
    Ok(all)
}

/// Adds the restored entries to a keyed map (any hasher).
pub fn restore_map<K, V, S>(
    map: &mut std::collections::HashMap<K, V, S>,
    parts: &RestoredParts,
) -> anyhow::Result<()>
where
    K: Eq + Hash + DeserializeOwned,
    V: DeserializeOwned,
    S: std::hash::BuildHasher,
{
    map.extend(restored_entries::<(K, V)>(parts)?);
    Ok(())
}

/// Every old worker's rest, decoded.
pub fn restored_rests<T: DeserializeOwned>(parts: &RestoredParts) -> anyhow::Result<Vec<T>> {
    parts
        .rests
        .iter()
        .map(|b| bincode::deserialize(b).context("the unkeyed part of a state does not decode"))
        .collect()
}

/// A keyed map: every entry goes with its key; nothing else.
impl<K, V> Grouped for FxHashMap<K, V>
where
    K: RouteKey + Eq + Hash + Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn save_parts(&mut self, groups: KeyGroups) -> anyhow::Result<SavedParts> {
        Ok(SavedParts {
            rest: Vec::new(),
            groups: save_by_group(self.iter().map(|e| (e.0.route_key(), e)), groups)?,
        })
    }

    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()> {
        self.extend(restored_entries::<(K, V)>(parts)?);
        Ok(())
    }
}

/// Keyed maps by period (per-period counts): each (period, key) entry goes
/// with its key.
impl<K, V> Grouped for BTreeMap<u64, FxHashMap<K, V>>
where
    K: RouteKey + Eq + Hash + Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn save_parts(&mut self, groups: KeyGroups) -> anyhow::Result<SavedParts> {
        let entries = self
            .iter()
            .flat_map(|(p, m)| m.iter().map(move |(k, v)| (k.route_key(), (p, k, v))));
        Ok(SavedParts {
            rest: Vec::new(),
            groups: save_by_group(entries, groups)?,
        })
    }

    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()> {
        for (period, key, value) in restored_entries::<(u64, K, V)>(parts)? {
            self.entry(period).or_default().insert(key, value);
        }
        Ok(())
    }
}

/// An ordered map keyed by a tuple whose first field is the routed key.
impl<A, B, V> Grouped for BTreeMap<(u64, A, B), V>
where
    A: Ord + Serialize + DeserializeOwned + 'static,
    B: Ord + Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn save_parts(&mut self, groups: KeyGroups) -> anyhow::Result<SavedParts> {
        Ok(SavedParts {
            rest: Vec::new(),
            groups: save_by_group(self.iter().map(|e| (e.0 .0, e)), groups)?,
        })
    }

    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()> {
        self.extend(restored_entries::<((u64, A, B), V)>(parts)?);
        Ok(())
    }
}

/// A state every worker holds alike (what a broadcast delivered): saved
/// whole by each worker, restored from the first old worker's.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Replicated<T>(pub T);

impl<T: Serialize + DeserializeOwned + 'static> Grouped for Replicated<T> {
    fn save_parts(&mut self, _groups: KeyGroups) -> anyhow::Result<SavedParts> {
        Ok(SavedParts {
            rest: bincode::serialize(&self.0)?,
            groups: Vec::new(),
        })
    }

    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()> {
        if let Some(first) = restored_rests::<T>(parts)?.into_iter().next() {
            self.0 = first;
        }
        Ok(())
    }
}

/// The greatest value any worker saw (the end of an input): restored as the
/// greatest of the old workers' values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Greatest(pub Option<u64>);

impl Grouped for Greatest {
    fn save_parts(&mut self, _groups: KeyGroups) -> anyhow::Result<SavedParts> {
        Ok(SavedParts {
            rest: bincode::serialize(&self.0)?,
            groups: Vec::new(),
        })
    }

    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()> {
        for v in restored_rests::<Option<u64>>(parts)? {
            self.0 = self.0.max(v);
        }
        Ok(())
    }
}

/// Implements [`Grouped`] for a struct whose keyed state is one map field
/// (`FxHashMap<K, V>` with `K: RouteKey`): the entries go with their keys,
/// the struct without them is the rest, and rests join by `join(first,
/// other)` (by default the first old worker's is kept: settings, alike on
/// every worker).
#[macro_export]
macro_rules! grouped_by_map {
    ($ty:ty, $field:ident) => {
        $crate::grouped_by_map!($ty, $field, |_first: &mut $ty, _other: $ty| {});
    };
    // A logic that closes windows as the frontier passes them
    // (`closed_before`, `ended`): every old worker with keys had closed the
    // same windows at the cut (it owed the next one), so the greatest
    // `closed_before` is the one to go on from.
    ($ty:ty, $field:ident, closes_windows) => {
        $crate::grouped_by_map!($ty, $field, |a: &mut $ty, b: $ty| {
            a.closed_before = a.closed_before.max(b.closed_before);
            a.ended |= b.ended;
        });
    };
    ($ty:ty, $field:ident, $join:expr) => {
        impl $crate::rescale::parts::Grouped for $ty {
            fn save_parts(
                &mut self,
                groups: $crate::rescale::groups::KeyGroups,
            ) -> anyhow::Result<$crate::rescale::parts::SavedParts> {
                use $crate::rescale::parts::RouteKey;
                let map = std::mem::take(&mut self.$field);
                let rest = bincode::serialize(&*self);
                let entries = $crate::rescale::parts::save_by_group(
                    map.iter().map(|e| (e.0.route_key(), e)),
                    groups,
                );
                self.$field = map;
                Ok($crate::rescale::parts::SavedParts {
                    rest: rest?,
                    groups: entries?,
                })
            }

            fn restore_parts(
                &mut self,
                parts: &$crate::rescale::parts::RestoredParts,
            ) -> anyhow::Result<()> {
                let join: fn(&mut $ty, $ty) = $join;
                let mut rests = $crate::rescale::parts::restored_rests::<$ty>(parts)?.into_iter();
                if let Some(mut first) = rests.next() {
                    for other in rests {
                        join(&mut first, other);
                    }
                    first.$field = std::mem::take(&mut self.$field);
                    *self = first;
                }
                $crate::rescale::parts::restore_map(&mut self.$field, parts)
            }
        }
    };
}

/// Cuts `states` (one per old worker) into groups, then hands each of
/// `peers` new workers the groups it owns and every rest: what a resume
/// does, for the tests of state types.
pub fn redistribute(saved: &[SavedParts], groups: KeyGroups, peers: usize) -> Vec<RestoredParts> {
    let mut out = vec![RestoredParts::default(); peers];
    for s in saved {
        for r in out.iter_mut() {
            if !s.rest.is_empty() {
                r.rests.push(s.rest.clone());
            }
        }
        for (g, bytes) in &s.groups {
            out[groups.owner(*g, peers)].groups.push(bytes.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A state with a keyed map and a frontier's progress, joined by the greatest.
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Counts {
        setting: u32,
        closed_before: u64,
        counts: FxHashMap<u64, u64>,
    }
    crate::grouped_by_map!(Counts, counts, |a: &mut Counts, b: Counts| {
        a.closed_before = a.closed_before.max(b.closed_before)
    });

    /// Splits one state among `from` workers by key owner, saves them,
    /// restores on `to` workers, and joins those back.
    fn round_trip(whole: &Counts, groups: KeyGroups, from: usize, to: usize) -> Counts {
        let mut parts: Vec<Counts> = (0..from)
            .map(|_| Counts {
                counts: FxHashMap::default(),
                ..whole.clone()
            })
            .collect();
        for (k, v) in &whole.counts {
            parts[groups.owner_of(*k, from)].counts.insert(*k, *v);
        }
        let saved: Vec<SavedParts> = parts
            .iter_mut()
            .map(|p| p.save_parts(groups).unwrap())
            .collect();
        let mut joined = Counts::default();
        for (w, r) in redistribute(&saved, groups, to).iter().enumerate() {
            let mut restored = Counts::default();
            restored.restore_parts(r).unwrap();
            // Each restored key sits on the worker its records go to now.
            for k in restored.counts.keys() {
                assert_eq!(groups.owner_of(*k, to), w);
            }
            joined.setting = restored.setting;
            joined.closed_before = joined.closed_before.max(restored.closed_before);
            joined.counts.extend(restored.counts);
        }
        joined
    }

    proptest! {
        #[test]
        fn state_split_into_groups_and_reassembled_under_any_layout_is_the_original(
            counts in proptest::collection::hash_map(any::<u64>(), any::<u64>(), 0..300),
            setting: u32,
            closed_before: u64,
            g in 1u32..300,
            from in 1usize..6,
            to in 1usize..6,
        ) {
            prop_assume!(from as u32 <= g && to as u32 <= g);
            let groups = KeyGroups::new(g).unwrap();
            let whole = Counts { setting, closed_before, counts: counts.into_iter().collect() };
            prop_assert_eq!(round_trip(&whole, groups, from, to), whole);
        }
    }

    #[test]
    fn nested_and_ordered_maps_keep_every_entry() {
        let groups = KeyGroups::new(16).unwrap();
        let mut periods: BTreeMap<u64, FxHashMap<(u64, u8), u64>> = BTreeMap::new();
        for k in 0..100u64 {
            periods.entry(k % 3 * 60_000).or_default().insert((k, 1), k);
        }
        let saved = periods.clone().save_parts(groups).unwrap();
        let mut back = BTreeMap::new();
        for r in redistribute(&[saved], groups, 3) {
            let mut part: BTreeMap<u64, FxHashMap<(u64, u8), u64>> = BTreeMap::new();
            part.restore_parts(&r).unwrap();
            for (p, m) in part {
                back.entry(p).or_insert_with(FxHashMap::default).extend(m);
            }
        }
        assert_eq!(back, periods);

        let mut greatest = Greatest(None);
        let saved: Vec<SavedParts> = [Some(5), None, Some(9)]
            .into_iter()
            .map(|v| Greatest(v).save_parts(groups).unwrap())
            .collect();
        greatest
            .restore_parts(&redistribute(&saved, groups, 1)[0])
            .unwrap();
        assert_eq!(greatest, Greatest(Some(9)));
    }
}
