//! An all-gather among the workers of every process, before the run: each
//! worker's bytes reach every worker, in worker order. The sources use it to
//! agree on how they split their input (`Source::share`).

use std::cell::RefCell;
use std::rc::Rc;
use timely::dataflow::operators::core::{Inspect, Probe};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Input;
use timely::dataflow::ProbeHandle;

/// Every worker's `mine`, on every worker, in worker order (a small dataflow
/// of its own: every worker must call it, in the same order as the others).
pub fn all_gather(worker: &mut timely::worker::Worker, mine: Vec<u8>) -> Vec<Vec<u8>> {
    let received = Rc::new(RefCell::new(Vec::new()));
    let probe = ProbeHandle::new();
    let sink = Rc::clone(&received);
    let mut input = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<(usize, Vec<u8>)>>();
        stream
            .broadcast()
            .inspect(move |part: &(usize, Vec<u8>)| sink.borrow_mut().push(part.clone()))
            .probe_with(&probe);
        input
    });
    input.send((worker.index(), mine));
    input.close();
    while !probe.done() {
        worker.step();
    }
    let mut parts = std::mem::take(&mut *received.borrow_mut());
    parts.sort_by_key(|(index, _)| *index);
    parts.into_iter().map(|(_, bytes)| bytes).collect()
}
