//! What the workers send each other (`--measure-traffic`), counted from
//! timely's own logging: records on the data channels (to the same worker or
//! to another), and progress-tracking messages and the pointstamp updates
//! they carry. The figures feed the scaling projection of results/REPORT.md.
//!
//! Off by default: the loggers see every message batch, which costs a little.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use timely::logging::{TimelyEvent, TimelyEventBuilder, TimelyProgressEventBuilder};

/// Counters shared by a process's workers.
#[derive(Default)]
pub struct Traffic {
    records_local: AtomicU64,
    records_remote: AtomicU64,
    messages_remote: AtomicU64,
    progress_messages: AtomicU64,
    progress_updates: AtomicU64,
    operators: AtomicU64,
    channels: AtomicU64,
}

/// The traffic of a run (`metrics.json` `traffic`), summed over workers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct TrafficSummary {
    /// Records sent on data channels to the sending worker itself.
    pub records_local: u64,
    /// Records sent to another worker (of this or another process), and in how many messages.
    pub records_remote: u64,
    pub messages_remote: u64,
    /// Progress-tracking messages a worker sent to the others, and the
    /// pointstamp updates (operator port, time, count change) in them.
    pub progress_messages: u64,
    pub progress_updates: u64,
    /// Operators and channels in the dataflows, summed over workers.
    pub operators: u64,
    pub channels: u64,
}

impl TrafficSummary {
    /// The traffic of a cluster: its processes' added up.
    pub fn merge<'a>(parts: impl Iterator<Item = &'a TrafficSummary>) -> TrafficSummary {
        parts.fold(TrafficSummary::default(), |a, p| TrafficSummary {
            records_local: a.records_local + p.records_local,
            records_remote: a.records_remote + p.records_remote,
            messages_remote: a.messages_remote + p.messages_remote,
            progress_messages: a.progress_messages + p.progress_messages,
            progress_updates: a.progress_updates + p.progress_updates,
            operators: a.operators + p.operators,
            channels: a.channels + p.channels,
        })
    }
}

impl Traffic {
    /// Counts `worker`'s messages from now on.
    pub fn register(self: &Arc<Self>, worker: &mut timely::worker::Worker) {
        let mut registry = worker.log_register().expect("a worker has a log registry");
        let t = Arc::clone(self);
        registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
            for (_, event) in data.iter().flat_map(|d| d.iter()) {
                match event {
                    TimelyEvent::Messages(m) if m.is_send => {
                        let n = m.record_count.max(0) as u64;
                        if m.source == m.target {
                            t.records_local.fetch_add(n, Relaxed);
                        } else {
                            t.records_remote.fetch_add(n, Relaxed);
                            t.messages_remote.fetch_add(1, Relaxed);
                        }
                    }
                    TimelyEvent::Operates(_) => {
                        t.operators.fetch_add(1, Relaxed);
                    }
                    TimelyEvent::Channels(_) => {
                        t.channels.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
        });
        let t = Arc::clone(self);
        registry.insert::<TimelyProgressEventBuilder<u64>, _>(
            "timely/progress/u64",
            move |_time, data| {
                for (_, event) in data.iter().flat_map(|d| d.iter()) {
                    if event.is_send {
                        t.progress_messages.fetch_add(1, Relaxed);
                        let updates = event.messages.len() + event.internal.len();
                        t.progress_updates.fetch_add(updates as u64, Relaxed);
                    }
                }
            },
        );
    }

    pub fn summary(&self) -> TrafficSummary {
        TrafficSummary {
            records_local: self.records_local.load(Relaxed),
            records_remote: self.records_remote.load(Relaxed),
            messages_remote: self.messages_remote.load(Relaxed),
            progress_messages: self.progress_messages.load(Relaxed),
            progress_updates: self.progress_updates.load(Relaxed),
            operators: self.operators.load(Relaxed),
            channels: self.channels.load(Relaxed),
        }
    }
}
