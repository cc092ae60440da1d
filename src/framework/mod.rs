//! The framework the queries are built from: event-time windows over panes,
//! order-exact per-key buffering (records released by time, in order), the
//! end of an input, mergeable moments, exponentially weighted means, burst
//! tests, arrangements in place and capability helpers, an exchange in large
//! messages, per-period partial counts. It names no query; queries
//! (`src/queries/`) are built on it.

pub mod arrange_in_place;
pub mod burst;
pub mod by_time;
pub mod ew;
pub mod input_end;
pub mod large_exchange;
pub mod moments;
pub mod ordered;
pub mod pane_window;
pub mod period_counts;

use timely::dataflow::operators::Capability;

/// The single capability an operator holds: at the least time it may still
/// emit. Holding one capability, not one per window, keeps progress tracking
/// cheap; holding none once nothing is owed lets frontiers move on.
#[derive(Default)]
pub struct HeldCapability(Option<Capability<u64>>);

impl HeldCapability {
    /// Keeps `cap` if nothing is held or it is earlier than what is.
    pub fn hold(&mut self, cap: Capability<u64>) {
        if self.0.as_ref().is_none_or(|h| cap.time() < h.time()) {
            self.0 = Some(cap);
        }
    }

    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }

    /// A capability for emitting at `time`, or as soon after it as held.
    pub fn at(&self, time: u64) -> Capability<u64> {
        let held = self
            .0
            .as_ref()
            .expect("an operator that owes rows holds a capability");
        held.delayed(&time.max(*held.time()))
    }

    /// The capability itself, for rows emitted at the held time.
    pub fn get(&self) -> Option<&Capability<u64>> {
        self.0.as_ref()
    }

    /// Moves up to the earliest time still owed (never down), or releases the
    /// capability when nothing is owed.
    pub fn settle(&mut self, owed: Option<u64>) {
        match owed {
            None => self.0 = None,
            Some(t) => {
                if let Some(cap) = self.0.as_mut() {
                    if *cap.time() < t {
                        cap.downgrade(&t);
                    }
                }
            }
        }
    }
}

/// Sorts `records` stably by `key`, unless they are in order already. Records
/// mostly arrive in order (a file in time order, one worker; else a few sorted
/// runs), and the standard sort takes a scratch buffer as large as the input
/// before it finds that out: a check is one pass and no allocation.
pub fn sort_unless_sorted<T, K: Ord>(records: &mut [T], key: impl Fn(&T) -> K) {
    if !records.is_sorted_by_key(&key) {
        records.sort_by_key(key);
    }
}

/// Counts the records a query consumes, once per batch rather than once per
/// record: the counter is shared by every worker of the process, and a shared
/// atomic touched per record costs each worker a cache miss in the hot path.
pub fn count_consumed<'scope, D: Clone + 'static>(
    stream: timely::dataflow::Stream<'scope, u64, Vec<D>>,
    counters: std::sync::Arc<crate::probes::QueryCounters>,
) -> timely::dataflow::Stream<'scope, u64, Vec<D>> {
    use timely::dataflow::operators::core::Inspect;
    stream.inspect_core(move |event| {
        if let Ok((_, batch)) = event {
            counters.add_consumed(batch.len() as u64);
        }
    })
}
