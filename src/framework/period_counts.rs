//! Per-worker partial counts per period of event time: the first phase of
//! a two-phase count.
//!
//! Semantics: records are counted per (period, key), a period being
//! `[k*P, k*P + P)` of event time (`ts_ms`). Once the input frontier passes a
//! period's last millisecond, every record of it has arrived (a record
//! travels at its coarsened event time, at or before its own), and its counts
//! leave as one update `((period_start, key), period_start + P - 1, count)`
//! per key, then are forgotten. A differential computation downstream thus
//! sees one update per key and period from each worker instead of one per
//! record, at one time per period: its arrangements compact to one batch per
//! period and its `reduce` runs once per period. A query whose result is read
//! only when a period closes (a tumbling window) loses no latency by it.
//!
//! The counts of the open periods are the operator's whole state: the
//! caller passes the cell (a checkpoint's state when checkpoints are on), and
//! a restored cell's counts are owed like any others. The operator holds a
//! single capability, at the end of the earliest open period.

use super::HeldCapability;
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::rc::Rc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

/// Counts per key of each open period, by period start.
pub type OpenCounts<K> = BTreeMap<u64, FxHashMap<K, u64>>;

/// Counts `records` per `period_ms` of `ts` and `key` (see the module doc).
pub fn period_counts<'scope, D, K>(
    records: Stream<'scope, u64, Vec<D>>,
    open: Rc<RefCell<OpenCounts<K>>>,
    name: &str,
    period_ms: u64,
    ts: fn(&D) -> u64,
    key: fn(&D) -> K,
) -> VecCollection<'scope, u64, (u64, K), isize>
where
    D: Clone + 'static,
    K: differential_dataflow::ExchangeData + Hash,
{
    let last_ms = move |start: u64| start + period_ms - 1;
    let counts = records.unary_frontier(Pipeline, name, move |initial, _info| {
        let mut held = HeldCapability::default();
        if let Some(&start) = open.borrow().keys().next() {
            held.hold(initial.delayed(&last_ms(start)));
        }
        move |(input, frontier), output| {
            let mut open = open.borrow_mut();
            input.for_each_stamp(|cap, batches| {
                let Some(&least) = cap.least() else {
                    return;
                };
                let mut earliest = u64::MAX;
                for batch in batches {
                    for r in batch.iter() {
                        let t = ts(r);
                        let start = t - t % period_ms;
                        earliest = earliest.min(start);
                        *open.entry(start).or_default().entry(key(r)).or_insert(0) += 1;
                    }
                }
                if earliest != u64::MAX {
                    // Never before the message's own time (a record is never
                    // later than its period, but a capability must not go back).
                    let owed = last_ms(earliest).max(least);
                    held.hold(cap.delayed(&owed, output.output_index()));
                }
            });
            while let Some((&start, _)) = open.first_key_value() {
                if frontier.less_equal(&last_ms(start)) {
                    break;
                }
                let counts = open.remove(&start).expect("first period");
                let at = last_ms(start);
                output.session(&held.at(at)).give_iterator(
                    counts
                        .into_iter()
                        .map(|(k, n)| ((start, k), at, n as isize)),
                );
            }
            held.settle(open.first_key_value().map(|(&start, _)| last_ms(start)));
        }
    });
    counts.as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::capture::{Capture, Extract};
    use timely::dataflow::operators::core::Input;

    /// (ts_ms, key) records sent at the given timely times, in order.
    fn run(
        batches: Vec<(u64, Vec<(u64, u64)>)>,
        restored: OpenCounts<u64>,
    ) -> Vec<((u64, u64), u64, isize)> {
        let captured = timely::execute_directly(move |worker| {
            let mut input = timely::dataflow::InputHandle::new();
            let open = Rc::new(RefCell::new(restored));
            let out = worker.dataflow::<u64, _, _>(|scope| {
                let records = scope.input_from(&mut input);
                period_counts(records, open, "test", 1_000, |r: &(u64, u64)| r.0, |r| r.1)
                    .inner
                    .capture()
            });
            for (time, records) in batches {
                input.advance_to(time);
                for r in records {
                    input.send(r);
                }
                worker.step();
            }
            drop(input);
            while worker.step() {}
            out
        });
        let mut updates: Vec<_> = captured
            .extract()
            .into_iter()
            .flat_map(|(time, data)| {
                data.into_iter().inspect(move |(_, t, _)| {
                    assert!(*t >= time, "an update before its capability")
                })
            })
            .collect();
        // Sorted, not consolidated: a key's period sent twice would show.
        updates.sort();
        updates
    }

    #[test]
    fn one_update_per_key_and_period_at_its_last_millisecond() {
        let got = run(
            vec![
                (0, vec![(10, 7), (20, 7), (999, 8)]),
                (500, vec![(900, 7), (1_500, 7)]),
                (1_000, vec![(1_999, 9)]),
            ],
            OpenCounts::new(),
        );
        assert_eq!(
            got,
            vec![
                ((0, 7), 999, 3),
                ((0, 8), 999, 1),
                ((1_000, 7), 1_999, 1),
                ((1_000, 9), 1_999, 1)
            ]
        );
    }

    #[test]
    fn restored_counts_are_owed_like_new_ones() {
        let mut restored = OpenCounts::new();
        restored.entry(2_000).or_default().insert(5, 4);
        let got = run(vec![(2_000, vec![(2_100, 5), (3_000, 6)])], restored);
        assert_eq!(got, vec![((2_000, 5), 2_999, 5), ((3_000, 6), 3_999, 1)]);
    }

    #[test]
    fn a_period_is_counted_once_however_its_records_are_split_across_times() {
        // Property-style: the same 200 records in one message or spread over
        // many timely times give the same counts, each key and period once.
        let records: Vec<(u64, u64)> = (0..200u64).map(|i| ((i * 37) % 5_000, i % 4)).collect();
        let mut sorted = records.clone();
        sorted.sort();
        let spread: Vec<(u64, Vec<(u64, u64)>)> = sorted
            .chunks(7)
            .map(|c| (c[0].0 - c[0].0 % 250, c.to_vec()))
            .collect();
        let one = run(vec![(0, records.clone())], OpenCounts::new());
        let many = run(spread, OpenCounts::new());
        assert_eq!(one, many);
        let mut expected: BTreeMap<(u64, u64), isize> = BTreeMap::new();
        for (ts, key) in &records {
            *expected.entry((ts - ts % 1_000, *key)).or_default() += 1;
        }
        let expected: Vec<_> = expected
            .into_iter()
            .map(|((p, k), n)| ((p, k), p + 999, n))
            .collect();
        assert_eq!(one, expected);
    }
}
