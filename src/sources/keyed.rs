//! What both generators share: a stream made of independent keys (symbols,
//! users), merged in arrival order and cut into batches by the schedule.
//!
//! The watermark of a generator follows its schedule position: every record
//! still to come arrives after it, so its `ts_ms` is at least
//! `position - disorder_ms`. With `max_delay >= disorder_ms` nothing is late;
//! with a smaller bound, a record is late when displaced further back than the
//! bound from the batch start, the same for every worker count (as fast as
//! possible, batch boundaries are global).

use super::anomalies::TruthRow;
use super::arrivals::KeyMerge;
use super::schedule::Schedule;
use super::{Batch, Poll};
use crate::record::Event;
use crate::rescale::groups::WorkerShare;
use crate::time::Watermark;

/// A generator of independent keys, as the batching needs to see it.
pub(crate) trait KeyedGenerator<E> {
    fn parts(&mut self) -> (&mut Schedule, &mut KeyMerge);
    fn batch_limit(&self) -> usize;
    /// The keys this worker generates (of the layout it runs in).
    fn share(&self) -> WorkerShare;
    /// The key (as [`WorkerShare::owns`] sees it) of merge slot `slot`.
    fn slot_key(&self, slot: usize) -> u64;
    /// The record of key `slot` due next: `(arrival_us, record, the key's next arrival)`.
    fn produce(&mut self, slot: usize) -> (u64, E, Option<u64>);
    /// Moves the labels of anomalies injected so far into `out`.
    fn drain_truth(&mut self, _out: &mut Vec<TruthRow>) {}
}

/// One batch: the records due by the schedule now, at most four batch sizes of them.
pub(crate) fn next_batch<E: Event, G: KeyedGenerator<E>>(
    generator: &mut G,
    batch: &mut Batch<E>,
    watermark: &mut Watermark,
) -> anyhow::Result<Poll> {
    let limit = generator.batch_limit() * 4;
    let (schedule, merge) = generator.parts();
    if merge.is_empty() {
        return Ok(Poll::Done);
    }
    let until = match schedule.due_until() {
        Ok(until) => until,
        Err(wait) => return Ok(Poll::Wait(wait)),
    };
    watermark.observe(schedule.position_us() / 1000);
    let first_due = merge.earliest_us().filter(|&f| f <= until);
    let lag_ms = first_due.and_then(|first| schedule.lag_ms(first));
    let mut emitted = 0;
    let mut last_arrival = None;
    // Up to the limit, then the records sharing the last arrival too, so
    // that a position always means "every arrival at or before it, none
    // after": what a rescaled restore relies on.
    loop {
        let due_by = match last_arrival {
            Some(last) if emitted >= limit => last,
            _ => until,
        };
        let Some(slot) = generator.parts().1.pop_due(due_by) else {
            break;
        };
        let (arrival, record, next) = generator.produce(slot);
        generator.parts().1.push(next, slot);
        last_arrival = Some(arrival);
        let ts = record.ts_ms();
        batch.admit(record, ts, watermark);
        emitted += 1;
    }
    batch.generated += emitted as u64;
    batch.lag_ms = lag_ms;
    generator.drain_truth(&mut batch.truth);
    let reached = match last_arrival {
        Some(last) if emitted >= limit => last,
        _ => until,
    };
    let schedule = generator.parts().0;
    schedule.advance_to(reached);
    // The watermark for the next batch (and the inputs' time now): every
    // record still to come arrives after the position.
    watermark.observe(schedule.position_us() / 1000);
    Ok(Poll::Ready)
}

/// A generator's position: its schedule's and the records it took.
#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    position_us: u64,
    taken: u64,
}

/// The generator's position, for a checkpoint.
pub(crate) fn save(schedule: &Schedule, merge: &KeyMerge) -> anyhow::Result<Vec<u8>> {
    Ok(bincode::serialize(&Position {
        position_us: schedule.position_us(),
        taken: merge.taken,
    })?)
}

/// Brings a fresh generator to a saved position: it draws (and drops) the
/// records taken before, in the same order, so every key's random stream
/// is where it was; then its schedule goes on from the saved event time.
pub(crate) fn restore<E, G: KeyedGenerator<E>>(
    generator: &mut G,
    saved: &[u8],
) -> anyhow::Result<()> {
    let p: Position = bincode::deserialize(saved)?;
    anyhow::ensure!(
        generator.parts().1.taken == 0,
        "a generator is restored before it runs"
    );
    while generator.parts().1.taken < p.taken {
        let Some(slot) = generator.parts().1.pop_due(u64::MAX) else {
            anyhow::bail!("the generator ends before its checkpointed position");
        };
        let (_, _, next) = generator.produce(slot);
        generator.parts().1.push(next, slot);
    }
    // Those anomalies were labelled before the checkpoint.
    generator.drain_truth(&mut Vec::new());
    generator.parts().0.resume_at(p.position_us);
    Ok(())
}

/// Brings a fresh generator to where the workers of another layout left the
/// stream, from all their positions (in worker order). Old worker `q` had
/// taken every arrival of its keys at or before its position and none after
/// (none at all before its first batch), so each key this worker owns now is
/// drawn up to its old owner's position, in arrival order (the market factor
/// is walked forward only). The schedule goes on from the earliest old
/// position: every record not yet taken arrives after it.
pub(crate) fn restore_rescaled<E, G: KeyedGenerator<E>>(
    generator: &mut G,
    all: &[Vec<u8>],
) -> anyhow::Result<()> {
    let old: Vec<Position> = all
        .iter()
        .map(|b| bincode::deserialize(b))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!old.is_empty(), "no saved generator positions");
    anyhow::ensure!(
        generator.parts().1.taken == 0,
        "a generator is restored before it runs"
    );
    let groups = generator.share().groups;
    let drawn_up_to = |key: u64| {
        let p = &old[groups.owner_of(key, old.len())];
        (p.taken > 0).then_some(p.position_us)
    };
    let mut set_aside = Vec::new();
    let mut taken = 0;
    while let Some(arrival) = generator.parts().1.earliest_us() {
        let slot = generator.parts().1.pop_due(arrival).expect("a due slot");
        if drawn_up_to(generator.slot_key(slot)).is_some_and(|limit| arrival <= limit) {
            let (_, _, next) = generator.produce(slot);
            generator.parts().1.push(next, slot);
            taken += 1;
        } else {
            set_aside.push((arrival, slot));
        }
    }
    let merge = generator.parts().1;
    for (arrival, slot) in set_aside {
        merge.push(Some(arrival), slot);
    }
    merge.taken = taken;
    generator.drain_truth(&mut Vec::new());
    let earliest = old.iter().map(|p| p.position_us).min().unwrap_or_default();
    generator.parts().0.resume_at(earliest);
    Ok(())
}
