//! Exchange in large messages: records routed to their key's worker, as
//! timely's `exchange`, but gathered per destination into containers of
//! [`BATCH_BYTES`] rather than timely's 8 KiB.
//!
//! Why: a replayed file sends every record to its key's worker. With 8 KiB
//! containers a batch of 1 024 trades left a worker as several messages per
//! peer, each one a channel push and often a wake-up of the peer (between
//! processes, of the send and receive threads and a serialization header).
//! A container still leaves when its input batch ends (timely flushes an
//! operator's outputs after every call), so nothing waits for a batch to fill.

use std::collections::VecDeque;
use timely::container::{ContainerBuilder, LengthPreservingContainerBuilder, PushInto};
use timely::dataflow::channels::pact::ExchangeCore;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::progress::Timestamp;
use timely::ExchangeData;

/// The bytes of records one exchanged container holds at most.
pub const BATCH_BYTES: usize = 64 << 10;

/// Records per container for records of type `T`.
fn batch_len<T>() -> usize {
    (BATCH_BYTES / std::mem::size_of::<T>().max(1)).max(1)
}

/// Builds `Vec<T>` containers of [`BATCH_BYTES`], in the order pushed.
pub struct LargeBatches<T> {
    current: Vec<T>,
    /// A sent container's allocation, to reuse.
    empty: Option<Vec<T>>,
    pending: VecDeque<Vec<T>>,
    /// A container filled up since the last flush.
    filled_this_round: bool,
    /// One did in the round before the last flush: the stream is busy (as
    /// fast as possible), and containers start at their full size. Grown
    /// from 8 KiB by doubling instead, each was copied most of once more on
    /// the way (8 + 16 + 32 KiB of every 64 KiB), through `realloc`.
    busy: bool,
}

impl<T> Default for LargeBatches<T> {
    fn default() -> Self {
        LargeBatches {
            current: Vec::new(),
            empty: None,
            pending: VecDeque::new(),
            filled_this_round: false,
            busy: false,
        }
    }
}

impl<T> PushInto<T> for LargeBatches<T> {
    #[inline]
    fn push_into(&mut self, item: T) {
        if self.current.capacity() == 0 {
            // A quiet stream starts at timely's 8 KiB and grows with the
            // batch: a container flushed with a few records (real time) holds
            // no 64 KiB while queued.
            self.current = self.empty.take().unwrap_or_default();
            self.current.clear();
            self.current.reserve(if self.busy {
                batch_len::<T>()
            } else {
                timely::container::buffer::default_capacity::<T>()
            });
        }
        self.current.push(item);
        if self.current.len() >= batch_len::<T>() {
            self.pending.push_back(std::mem::take(&mut self.current));
            self.filled_this_round = true;
            self.busy = true;
        }
    }
}

impl<T: 'static> ContainerBuilder for LargeBatches<T> {
    type Container = Vec<T>;

    fn extract(&mut self) -> Option<&mut Vec<T>> {
        let full = self.pending.pop_front()?;
        self.empty = Some(full);
        self.empty.as_mut()
    }

    fn finish(&mut self) -> Option<&mut Vec<T>> {
        if !self.current.is_empty() {
            self.pending.push_back(std::mem::take(&mut self.current));
            self.busy = std::mem::take(&mut self.filled_this_round);
        }
        self.empty = self.pending.pop_front();
        self.empty.as_mut()
    }
}

impl<T: 'static> LengthPreservingContainerBuilder for LargeBatches<T> {}

/// Sends every record of `stream` to the worker `route(record) % peers`, in
/// containers of up to [`BATCH_BYTES`].
pub fn exchange_in_large_batches<'s, T, D, F>(
    stream: Stream<'s, T, Vec<D>>,
    route: F,
) -> Stream<'s, T, Vec<D>>
where
    T: Timestamp,
    D: ExchangeData,
    F: FnMut(&D) -> u64 + 'static,
{
    let pact = ExchangeCore::<LargeBatches<D>, _>::new_core(route);
    stream.unary(pact, "ExchangeLarge", |_, _| {
        move |input, output| {
            input.for_each_stamp(|cap, data| {
                output.session(&cap).give_containers(data);
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::container::ContainerBuilder;

    #[test]
    fn a_busy_stream_starts_containers_at_full_size_a_quiet_one_small() {
        let mut builder = LargeBatches::<u64>::default();
        let small = timely::container::buffer::default_capacity::<u64>();
        let round = |builder: &mut LargeBatches<u64>, records: usize| {
            for i in 0..records as u64 {
                builder.push_into(i);
            }
            let mut first_capacity = None;
            while let Some(c) = builder.extract() {
                first_capacity.get_or_insert(c.capacity());
                c.clear();
            }
            let partial = builder.current.capacity();
            while builder.finish().is_some() {}
            (first_capacity, partial)
        };
        // Quiet: nothing fills, containers stay small.
        assert_eq!(round(&mut builder, 10), (None, small));
        // A busy round fills one, grown from small; the next round's start at full size.
        let len = batch_len::<u64>();
        let (first, _) = round(&mut builder, len + 3);
        assert!(first.unwrap() >= len);
        assert_eq!(round(&mut builder, len + 3), (Some(len), len));
        // Quiet again for a round: small once more.
        round(&mut builder, 10);
        assert_eq!(round(&mut builder, 10), (None, small));
    }

    #[test]
    fn containers_fill_to_the_batch_size_and_keep_the_order() {
        let mut builder = LargeBatches::<u64>::default();
        let len = batch_len::<u64>();
        assert_eq!(len, BATCH_BYTES / 8);
        for i in 0..(2 * len as u64 + 5) {
            builder.push_into(i);
        }
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while let Some(c) = builder.extract() {
            sizes.push(c.len());
            seen.append(c);
        }
        while let Some(c) = builder.finish() {
            sizes.push(c.len());
            seen.append(c);
        }
        assert_eq!(sizes, vec![len, len, 5]);
        assert_eq!(seen, (0..(2 * len as u64 + 5)).collect::<Vec<_>>());
    }
}
