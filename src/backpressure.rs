//! Backpressure: how much a worker may have sent into the dataflow that its
//! probe has not yet seen through.
//!
//! Two bounds, both per worker. `max_inflight_ms` bounds event time: the
//! inputs may run at most that far ahead of the probe's frontier. That alone
//! does not bound memory, since a fast source puts more records into the same
//! span of event time; `max_inflight_records` bounds the records themselves.
//! When either bound is reached the driver steps the dataflow instead of
//! reading its sources, so a generator falls behind its schedule (reported as
//! generator lag) and a file or socket is simply read later: memory stays
//! bounded and the overload shows up as lag.

use std::collections::VecDeque;

/// Records sent by one worker, by the latest event time each send reached.
#[derive(Debug, Default)]
pub struct InFlight {
    sent: u64,
    /// Records whose times the frontier has passed.
    completed: u64,
    /// (largest timely time in a batch, records sent up to and including it),
    /// oldest first.
    marks: VecDeque<(u64, u64)>,
}

impl InFlight {
    /// Notes `records` just sent, the largest at timely time `latest`.
    pub fn sent(&mut self, records: u64, latest: u64) {
        if records == 0 {
            return;
        }
        self.sent += records;
        match self.marks.back_mut() {
            // A batch no later than the newest mark completes with it.
            Some((time, upto)) if latest <= *time => *upto = self.sent,
            _ => self.marks.push_back((latest, self.sent)),
        }
    }

    /// Records sent whose times the probe's frontier has not passed
    /// (`None`: the dataflow is done).
    pub fn outstanding(&mut self, frontier: Option<u64>) -> u64 {
        while let Some(&(time, upto)) = self.marks.front() {
            if frontier.is_some_and(|f| time >= f) {
                break;
            }
            self.completed = upto;
            self.marks.pop_front();
        }
        self.sent - self.completed
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn records_complete_when_the_frontier_passes_their_batch() {
        let mut f = InFlight::default();
        f.sent(10, 5);
        f.sent(20, 8);
        f.sent(5, 7); // no later than the newest mark: completes with it
        assert_eq!(f.outstanding(Some(0)), 35);
        assert_eq!(f.outstanding(Some(6)), 25);
        assert_eq!(f.outstanding(Some(8)), 25);
        assert_eq!(f.outstanding(Some(9)), 0);
        f.sent(3, 20);
        assert_eq!(f.outstanding(Some(9)), 3);
        assert_eq!(f.outstanding(None), 0);
    }
}
