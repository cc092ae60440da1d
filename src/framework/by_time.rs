//! Records buffered by the time they travelled at, released in their exact
//! order once the frontier has passed them: what the ordered operators
//! (`ordered.rs`) and the order-sensitive windows (`pane_window.rs`) share.
//!
//! A record travels at a time at or before its `ts_ms` (its coarsened event
//! time). Once the input frontier is past `f`, every record still to come
//! has `ts_ms >= f`, so the buffered records with `ts_ms < f` are final: they
//! are released sorted stably by the caller's key. On several workers they
//! are a sequence of sorted runs (one per sending worker and batch), which a
//! stable sort merges. A buffer that travelled below the frontier may still
//! hold records at or after it: those wait, at the frontier's time.

use std::collections::BTreeMap;

/// Buffered records by the time they travelled at.
pub struct ByTime<T> {
    pending: BTreeMap<u64, Vec<T>>,
    spare: SpareBuffers<T>,
    ready: Vec<T>,
}

impl<T> Default for ByTime<T> {
    fn default() -> Self {
        ByTime {
            pending: BTreeMap::new(),
            spare: SpareBuffers::default(),
            ready: Vec::new(),
        }
    }
}

impl<T> ByTime<T> {
    /// The buffer of the records that travelled at `time`.
    pub fn at(&mut self, time: u64) -> &mut Vec<T> {
        let spare = &mut self.spare;
        self.pending.entry(time).or_insert_with(|| spare.take())
    }

    /// The least time a buffered record travelled at.
    pub fn least_time(&self) -> Option<u64> {
        self.pending.first_key_value().map(|(t, _)| *t)
    }

    /// The records with `ts(record) < frontier`, in the stable order of
    /// `key`; the others stay buffered.
    pub fn release<K: Ord>(
        &mut self,
        frontier: u64,
        ts: impl Fn(&T) -> u64,
        key: impl Fn(&T) -> K,
    ) -> std::vec::Drain<'_, T> {
        if self
            .pending
            .first_key_value()
            .is_some_and(|(t, _)| *t < frontier)
        {
            let later = self.pending.split_off(&frontier);
            let mut not_yet = Vec::new();
            for (_, mut batch) in std::mem::replace(&mut self.pending, later) {
                if batch.iter().all(|r| ts(r) < frontier) {
                    self.ready.append(&mut batch);
                } else {
                    for record in batch.drain(..) {
                        if ts(&record) < frontier {
                            self.ready.push(record);
                        } else {
                            not_yet.push(record);
                        }
                    }
                }
                self.spare.give(batch);
            }
            if !not_yet.is_empty() {
                self.at(frontier).extend(not_yet);
            }
            super::sort_unless_sorted(&mut self.ready, key);
        }
        self.ready.drain(..)
    }
}

/// Emptied record buffers, kept with their capacity for the records of the
/// next time: a buffer grown from nothing, record by record, copied every
/// record about twice (4 % of a replay's instructions in the operators that
/// buffer by time). At most [`SpareBuffers::KEPT`] are kept.
struct SpareBuffers<T>(Vec<Vec<T>>);

impl<T> Default for SpareBuffers<T> {
    fn default() -> Self {
        SpareBuffers(Vec::new())
    }
}

impl<T> SpareBuffers<T> {
    const KEPT: usize = 4;

    /// An empty buffer, with capacity when one was given back.
    fn take(&mut self) -> Vec<T> {
        self.0.pop().unwrap_or_default()
    }

    /// Gives a buffer back (emptied here).
    fn give(&mut self, mut buffer: Vec<T>) {
        if self.0.len() < Self::KEPT {
            buffer.clear();
            self.0.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (time travelled at, ts, seq)
    type R = (u64, u64, u64);

    fn release(b: &mut ByTime<R>, frontier: u64) -> Vec<R> {
        b.release(frontier, |r| r.1, |r| (r.1, r.2)).collect()
    }

    #[test]
    fn final_records_leave_in_order_and_the_rest_wait_at_the_frontier() {
        let mut b = ByTime::default();
        // Two sorted runs at time 0 (as from two workers), one at 10, and a
        // record that travelled early: at 0 with ts 12.
        b.at(0).extend([(0, 1, 1), (0, 5, 4), (0, 12, 9)]);
        b.at(0).extend([(0, 2, 2), (0, 3, 3)]);
        b.at(10).extend([(10, 10, 5), (10, 11, 6)]);
        assert_eq!(release(&mut b, 0), vec![]);
        assert_eq!(b.least_time(), Some(0));
        let out = release(&mut b, 10);
        assert_eq!(out, vec![(0, 1, 1), (0, 2, 2), (0, 3, 3), (0, 5, 4)]);
        // The early record waits at the frontier's time, with those at 10.
        assert_eq!(b.least_time(), Some(10));
        let out = release(&mut b, 12);
        assert_eq!(out, vec![(10, 10, 5), (10, 11, 6)]);
        assert_eq!(release(&mut b, u64::MAX), vec![(0, 12, 9)]);
        assert_eq!(b.least_time(), None);
    }

    #[test]
    fn buffers_come_back_with_their_capacity() {
        let mut b: ByTime<R> = ByTime::default();
        b.at(0).extend((0..1_000).map(|i| (0, i, i)));
        release(&mut b, 2_000);
        assert!(b.at(5).capacity() >= 1_000, "an emptied buffer is reused");
    }
}
