//! A worker's feeds: one per input stream, each owning its source, its
//! watermark and its input capability.
//!
//! A batch from a source is split into on-time records, sent into the
//! dataflow at their own coarsened event time through an unordered input, and
//! late or malformed records, written to their files. The input capability
//! then moves up to the coarsened watermark. While a checkpoint epoch is
//! pending, records at or after it are held back and the capability stops at
//! it (see `checkpoint/mod.rs`).

use super::job::SourceFactory;
use super::outputs::Outputs;
use crate::backpressure::InFlight;
use crate::checkpoint::feed_state::FeedState;
use crate::ingest::{Ingest, StreamLog};
use crate::metrics::{Metrics, StreamCounters};
use crate::pipeline::{EngineConfig, InteractionSource, TradeSource};
use crate::record::{Event, Interaction, Trade};
use crate::rescale::groups::WorkerShare;
use crate::sinks::{LateRow, MalformedRow};
use crate::sources::csv_replay::CsvReplay;
use crate::sources::interactions::InteractionGenerator;
use crate::sources::market::MarketGenerator;
use crate::sources::parse::ParseRow;
use crate::sources::schedule::Schedule;
use crate::sources::tcp_log::TcpLog;
use crate::sources::{Batch, Poll, Source};
use crate::time::{Tick, Watermark};
use anyhow::Context;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::UnorderedHandle;
use timely::dataflow::operators::ActivateCapability;

/// How many malformed rows are reported on the terminal (all go to malformed.csv).
const MALFORMED_REPORTED: u64 = 5;

/// Where a stream's records come from, whatever the stream.
pub enum SourcePlan<'a, E> {
    /// A generator, made from its schedule at its rate.
    Generator {
        rate: f64,
        make: Box<dyn FnOnce(Schedule) -> Box<dyn Source<E>> + 'a>,
    },
    Csv(&'a Path),
    Kafka(&'a crate::kafka::KafkaSourceConfig),
    Tcp,
    Custom(Option<&'a SourceFactory<E>>),
}

/// A stream's `[sources.*]` table, as a [`SourcePlan`].
pub trait StreamSource<E> {
    fn plan<'a>(
        &'a self,
        engine: &'a EngineConfig,
        custom: Option<&'a SourceFactory<E>>,
        index: usize,
        peers: usize,
    ) -> SourcePlan<'a, E>;
}

impl StreamSource<Trade> for TradeSource {
    fn plan<'a>(
        &'a self,
        engine: &'a EngineConfig,
        custom: Option<&'a SourceFactory<Trade>>,
        index: usize,
        peers: usize,
    ) -> SourcePlan<'a, Trade> {
        match self {
            TradeSource::Market(m) => SourcePlan::Generator {
                rate: m.arrivals.rate,
                make: Box::new(move |schedule| {
                    Box::new(MarketGenerator::new(
                        m,
                        schedule,
                        engine.batch_records(),
                        WorkerShare {
                            index,
                            peers,
                            groups: engine.key_groups().unwrap_or_default(),
                        },
                    ))
                }),
            },
            TradeSource::Csv(c) => SourcePlan::Csv(&c.path),
            TradeSource::Kafka(k) => SourcePlan::Kafka(k),
            TradeSource::Tcp {} => SourcePlan::Tcp,
            TradeSource::Custom {} => SourcePlan::Custom(custom),
        }
    }
}

impl StreamSource<Interaction> for InteractionSource {
    fn plan<'a>(
        &'a self,
        engine: &'a EngineConfig,
        custom: Option<&'a SourceFactory<Interaction>>,
        index: usize,
        peers: usize,
    ) -> SourcePlan<'a, Interaction> {
        match self {
            InteractionSource::Generator(g) => SourcePlan::Generator {
                rate: g.arrivals.rate,
                make: Box::new(move |schedule| {
                    Box::new(InteractionGenerator::new(
                        g,
                        schedule,
                        engine.batch_records(),
                        WorkerShare {
                            index,
                            peers,
                            groups: engine.key_groups().unwrap_or_default(),
                        },
                    ))
                }),
            },
            InteractionSource::Csv(c) => SourcePlan::Csv(&c.path),
            InteractionSource::Kafka(k) => SourcePlan::Kafka(k),
            InteractionSource::Tcp {} => SourcePlan::Tcp,
            InteractionSource::Custom {} => SourcePlan::Custom(custom),
        }
    }
}

/// What opening a worker's sources needs.
pub struct SourceContext<'a> {
    pub engine: &'a EngineConfig,
    pub ingest: &'a Option<Arc<Ingest>>,
    pub index: usize,
    pub peers: usize,
    /// The schedule of a generator at `rate` records per second.
    pub schedule: &'a dyn Fn(f64) -> Schedule,
}

/// Opens this worker's share of stream `E` (the one path for every stream).
pub fn open_source<E: Event + ParseRow>(
    plan: SourcePlan<'_, E>,
    cx: &SourceContext,
) -> anyhow::Result<Box<dyn Source<E>>> {
    let (engine, index, peers) = (cx.engine, cx.index, cx.peers);
    Ok(match plan {
        SourcePlan::Generator { rate, make } => make((cx.schedule)(rate)),
        SourcePlan::Csv(path) => Box::new(CsvReplay::<E>::open(
            path,
            engine.batch_records(),
            index,
            peers,
        )?),
        SourcePlan::Kafka(k) => Box::new(crate::kafka::source::KafkaSource::<E>::open(
            k,
            engine.max_delay_ms,
            engine.batch_records(),
            index,
            peers,
        )?),
        SourcePlan::Tcp => Box::new(TcpLog::<E>::open(
            listened(cx.ingest, E::STREAM)?,
            engine.batch_records(),
            index % engine.workers,
            index,
            peers,
        )?),
        SourcePlan::Custom(make) => {
            let make = make.with_context(|| {
                format!(
                    "a custom {} source is made in code (Job::with_{}_source)",
                    E::STREAM,
                    E::STREAM.trim_end_matches('s')
                )
            })?;
            make(index, peers)?
        }
    })
}

/// The input log of a stream received over TCP.
fn listened(ingest: &Option<Arc<Ingest>>, stream: &str) -> anyhow::Result<Arc<StreamLog>> {
    ingest.as_ref().map(|i| i.log(stream)).with_context(|| {
        format!("the {stream} source is kind = \"tcp\" but [sources.listen] is missing")
    })
}

/// One input of one worker: its source, watermark and capability.
pub struct Feed<E: Event> {
    source: Box<dyn Source<E>>,
    handle: UnorderedHandle<u64, CapacityContainerBuilder<Vec<E>>>,
    cap: Option<ActivateCapability<u64>>,
    watermark: Watermark,
    batch: Batch<E>,
    tick: Tick,
    /// The pending checkpoint epoch (`u64::MAX` without checkpoints): records
    /// at or after it are held back and the capability stops at it.
    limit: u64,
    /// On-time records at or after `limit`, sent once the epoch is passed.
    held: Vec<E>,
    /// The source is exhausted (or stopped); the feed closes once nothing is held.
    source_done: bool,
    /// The source's last read found records ready (it is behind, not idle).
    busy: bool,
}

/// What a worker shares with its feeds.
pub struct FeedContext<'a> {
    pub metrics: &'a Metrics,
    pub outputs: &'a Outputs,
    pub reported: &'a AtomicU64,
    pub local_index: usize,
    pub report_progress: bool,
    /// How far (ms of event time) a feed may run ahead of a busy one.
    pub align_ms: u64,
}

impl<E: Event> Feed<E> {
    pub fn new(
        source: Box<dyn Source<E>>,
        handle: UnorderedHandle<u64, CapacityContainerBuilder<Vec<E>>>,
        cap: ActivateCapability<u64>,
        engine: &EngineConfig,
        tick: Tick,
        limit: u64,
    ) -> Self {
        Feed {
            source,
            handle,
            cap: Some(cap),
            watermark: Watermark::new(engine.max_delay_ms),
            batch: Batch::default(),
            tick,
            limit,
            held: Vec::new(),
            source_done: false,
            busy: false,
        }
    }

    /// The time this input can still send at; none once closed.
    pub fn time(&self) -> Option<u64> {
        self.cap.as_ref().map(|c| *c.time())
    }

    /// The feed's time, while its source is behind (had records ready).
    fn busy_time(&self) -> Option<u64> {
        self.time().filter(|_| self.busy)
    }

    /// Whether the feed waits for the pending epoch (or is closed): it reads no more.
    pub fn at_limit(&self) -> bool {
        self.cap.as_ref().is_none_or(|c| *c.time() >= self.limit)
    }

    /// What the source shares with every worker's before reading (see `Source::share`).
    pub fn share(&self) -> Option<Vec<u8>> {
        self.source.share()
    }

    /// What every worker's source shared.
    pub fn shared(&mut self, all: &[Vec<u8>]) -> anyhow::Result<()> {
        self.source.shared(all)
    }

    /// Stops reading the source (Ctrl-C, --duration); what is held is still sent.
    pub fn stop(&mut self) {
        self.source_done = true;
        self.settle_capability();
    }

    /// The event time this feed needs the next epoch to pass: its watermark,
    /// or never once its source is done.
    pub fn next_epoch_from(&self) -> u64 {
        if self.source_done || self.cap.is_none() {
            u64::MAX
        } else {
            self.watermark.current()
        }
    }

    pub fn save(&self) -> anyhow::Result<Vec<u8>> {
        Ok(bincode::serialize(&FeedState {
            source: self.source.save()?,
            watermark: self.watermark.clone(),
            held: self.held.clone(),
            source_done: self.source_done,
        })?)
    }

    pub fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let state: FeedState<E> = bincode::deserialize(saved)?;
        self.source
            .restore(&state.source)
            .with_context(|| format!("cannot resume the {} source", E::STREAM))?;
        self.watermark = state.watermark;
        self.held = state.held;
        self.source_done = state.source_done;
        self.settle_capability();
        Ok(())
    }

    /// Restores from every old worker's state (a checkpoint of another
    /// layout): the source takes its share of what remains, and the records
    /// old worker `q` held back go to new worker `q % peers`. The watermark
    /// starts afresh: the source's position sets it again (a replay's
    /// pieces carry the serial watermark; a generator's its schedule), but
    /// for a stream that had ended.
    pub fn restore_rescaled(
        &mut self,
        all: &[Vec<u8>],
        index: usize,
        peers: usize,
    ) -> anyhow::Result<()> {
        let states: Vec<FeedState<E>> = all
            .iter()
            .map(|b| bincode::deserialize(b))
            .collect::<Result<_, _>>()?;
        let positions: Vec<Vec<u8>> = states.iter().map(|s| s.source.clone()).collect();
        self.source
            .restore_rescaled(&positions, index, peers)
            .with_context(|| format!("cannot resume the {} source", E::STREAM))?;
        // A stream every old worker had read to its end is over here too,
        // at the watermark it ended with (no position will set it again).
        if states.iter().all(|s| s.source_done) {
            self.source_done = true;
            for s in &states {
                if let Some(ts) = s.watermark.max_seen() {
                    self.watermark.observe(ts);
                }
            }
        }
        self.held = states
            .into_iter()
            .enumerate()
            .filter(|(q, _)| q % peers == index)
            .flat_map(|(_, s)| s.held)
            .collect();
        self.settle_capability();
        Ok(())
    }

    /// Takes one batch from the source into the dataflow and notes what it
    /// sent in `in_flight`. Returns what the source said.
    pub fn pump(&mut self, ctx: &FeedContext, in_flight: &mut InFlight) -> anyhow::Result<Poll> {
        self.busy = false;
        if self.source_done || self.at_limit() {
            return Ok(Poll::Done);
        }
        self.batch.clear();
        let poll = self
            .source
            .next_batch(&mut self.batch, &mut self.watermark)?;
        self.busy = poll == Poll::Ready;
        let counters: &StreamCounters = ctx.metrics.stream(E::STREAM);
        let b = &mut self.batch;
        counters.generated.fetch_add(b.generated, Relaxed);
        counters.ingested.fetch_add(b.on_time.len() as u64, Relaxed);
        ctx.metrics
            .add_worker_ingested(ctx.local_index, b.on_time.len() as u64);
        if !b.late.is_empty() {
            counters.late.fetch_add(b.late.len() as u64, Relaxed);
            if let Some(sink) = &ctx.outputs.late {
                let rows: Vec<LateRow> = b.late.iter().map(LateRow::of).collect();
                sink.write_all(&rows)?;
            }
        }
        if !b.malformed.is_empty() {
            counters
                .malformed
                .fetch_add(b.malformed.len() as u64, Relaxed);
            for m in &b.malformed {
                if ctx.reported.fetch_add(1, Relaxed) < MALFORMED_REPORTED {
                    tracing::warn!(
                        "{}: malformed row at line {}: {}",
                        E::STREAM,
                        m.line,
                        m.error
                    );
                }
            }
            if let Some(sink) = &ctx.outputs.malformed {
                let rows: Vec<MalformedRow> = b
                    .malformed
                    .iter()
                    .map(|m| MalformedRow::of(E::STREAM, m))
                    .collect();
                sink.write_all(&rows)?;
            }
        }
        if !b.partition_lag.is_empty() {
            ctx.metrics.set_kafka_lag(ctx.local_index, &b.partition_lag);
        }
        if let Some(lag) = b.lag_ms {
            ctx.metrics.record_lag(lag);
        }
        if let (Some(sink), false) = (&ctx.outputs.truth, b.truth.is_empty()) {
            sink.write_all(&b.truth)?;
        }
        if ctx.report_progress {
            if let Some((done, total)) = self.source.progress() {
                counters.progress_done.store(done, Relaxed);
                counters.progress_total.store(total, Relaxed);
            }
        }
        let mut records = std::mem::take(&mut self.batch.on_time);
        if self.limit != u64::MAX {
            let (tick, limit) = (self.tick, self.limit);
            let (now, later): (Vec<E>, Vec<E>) = records
                .drain(..)
                .partition(|r| tick.coarsen(r.ts_ms()) < limit);
            self.held.extend(later);
            records = now;
        }
        self.send(&mut records, in_flight);
        self.batch.on_time = records;
        if poll == Poll::Done {
            self.source_done = true;
        }
        self.settle_capability();
        Ok(poll)
    }

    /// Moves to the next epoch: sends the held records before it.
    pub fn release(&mut self, limit: u64, in_flight: &mut InFlight) {
        self.limit = limit;
        if self.cap.is_none() {
            return;
        }
        let tick = self.tick;
        let (mut now, later): (Vec<E>, Vec<E>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|r| tick.coarsen(r.ts_ms()) < limit);
        self.held = later;
        self.send(&mut now, in_flight);
        self.settle_capability();
    }

    /// Sends records at their coarsened event times (all at or after the capability).
    fn send(&mut self, records: &mut Vec<E>, in_flight: &mut InFlight) {
        if records.is_empty() {
            return;
        }
        let cap = self.cap.as_mut().expect("open feed");
        let tick = self.tick;
        crate::framework::sort_unless_sorted(records, |r| tick.coarsen(r.ts_ms()));
        let mut activated = self.handle.activate();
        let mut rest = &mut records[..];
        while let Some(first) = rest.first() {
            let time = tick.coarsen(first.ts_ms());
            let run = rest
                .iter()
                .take_while(|r| tick.coarsen(r.ts_ms()) == time)
                .count();
            let (now, later) = rest.split_at_mut(run);
            let at = cap.delayed(&time);
            activated.session(&at).give_iterator(now.iter().cloned());
            rest = later;
        }
        // Sorted by time: the last record has the latest.
        let latest = tick.coarsen(records[records.len() - 1].ts_ms());
        in_flight.sent(records.len() as u64, latest);
        records.clear();
    }

    /// Whether the source is done and nothing is held: the feed has nothing more to send.
    pub fn finished(&self) -> bool {
        self.source_done && self.held.is_empty()
    }

    /// Moves the capability up to the coarsened watermark, but not past the
    /// pending epoch; closes the feed once it is finished and no epoch is
    /// pending (with checkpoints, a finished feed waits at the pending epoch
    /// until the workers agree that no more are taken: see `Checkpointer::take`).
    fn settle_capability(&mut self) {
        if self.finished() && self.limit == u64::MAX {
            self.cap = None;
        }
        let Some(cap) = self.cap.as_mut() else {
            return;
        };
        let target = if self.source_done {
            self.limit
        } else {
            self.tick.coarsen(self.watermark.current()).min(self.limit)
        };
        if target > *cap.time() {
            cap.downgrade(&target);
        }
    }
}

/// A worker's feeds, one per stream (none where the stream has no source),
/// and what they have sent into the dataflow but not yet seen processed.
pub struct Feeds {
    pub trades: Option<Feed<Trade>>,
    pub interactions: Option<Feed<Interaction>>,
    pub in_flight: InFlight,
}

/// What a pump of every feed found.
pub struct Pumped {
    /// Some source had records ready at once.
    pub ready: bool,
    /// The soonest a source will have more (real-time generators).
    pub wait: Option<std::time::Duration>,
}

impl Feeds {
    /// Lets the sources of every worker agree on how they split their input
    /// (a replay's blocks), before any reads: one all-gather when any shares.
    pub fn agree(&mut self, worker: &mut timely::worker::Worker) -> anyhow::Result<()> {
        let mine = (
            self.trades.as_ref().and_then(Feed::share),
            self.interactions.as_ref().and_then(Feed::share),
        );
        if mine.0.is_none() && mine.1.is_none() {
            return Ok(());
        }
        let all = super::gather::all_gather(worker, bincode::serialize(&mine)?);
        let mut trades = Vec::with_capacity(all.len());
        let mut interactions = Vec::with_capacity(all.len());
        for part in &all {
            let (t, i): (Option<Vec<u8>>, Option<Vec<u8>>) = bincode::deserialize(part)?;
            trades.extend(t);
            interactions.extend(i);
        }
        if let (Some(f), false) = (self.trades.as_mut(), trades.is_empty()) {
            f.shared(&trades)?;
        }
        if let (Some(f), false) = (self.interactions.as_mut(), interactions.is_empty()) {
            f.shared(&interactions)?;
        }
        Ok(())
    }

    /// Stops reading every source (Ctrl-C, --duration).
    pub fn stop(&mut self) {
        self.trades.iter_mut().for_each(Feed::stop);
        self.interactions.iter_mut().for_each(Feed::stop);
    }

    /// Takes one batch from each source into the dataflow, but from a feed
    /// more than `ctx.align_ms` ahead of a busy one (watermark alignment):
    /// the operators of the stream ahead would hold its records until the
    /// slower stream's time lets them go, so under overload the faster
    /// generator would fill memory with panes of the future. An idle feed
    /// (a socket with nothing to read) holds nobody back.
    pub fn pump(&mut self, ctx: &FeedContext) -> anyhow::Result<Pumped> {
        let trades_busy = self.trades.as_ref().and_then(Feed::busy_time);
        let interactions_busy = self.interactions.as_ref().and_then(Feed::busy_time);
        let ahead_of = |time: Option<u64>, other: Option<u64>| matches!((time, other), (Some(t), Some(o)) if t > o.saturating_add(ctx.align_ms));
        let mut pumped = Pumped {
            ready: false,
            wait: None,
        };
        let mut note = |poll: Poll| match poll {
            Poll::Ready => pumped.ready = true,
            Poll::Wait(d) => pumped.wait = Some(pumped.wait.map_or(d, |w| w.min(d))),
            Poll::Done => {}
        };
        if let Some(f) = self.trades.as_mut() {
            if !ahead_of(f.time(), interactions_busy) {
                note(f.pump(ctx, &mut self.in_flight)?);
            }
        }
        if let Some(f) = self.interactions.as_mut() {
            if !ahead_of(f.time(), trades_busy) {
                note(f.pump(ctx, &mut self.in_flight)?);
            }
        }
        Ok(pumped)
    }

    /// The least time the inputs can still send at; none once all are closed.
    pub fn input_time(&self) -> Option<u64> {
        [
            self.trades.as_ref().and_then(Feed::time),
            self.interactions.as_ref().and_then(Feed::time),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether every feed waits for the pending epoch (or is closed).
    pub fn at_limit(&self) -> bool {
        self.trades.as_ref().is_none_or(Feed::at_limit)
            && self.interactions.as_ref().is_none_or(Feed::at_limit)
    }

    /// Per stream (trades, interactions), whether this worker's feed has
    /// nothing more to send (false for a stream without a source).
    pub fn finished(&self) -> [bool; 2] {
        [
            self.trades.as_ref().is_some_and(Feed::finished),
            self.interactions.as_ref().is_some_and(Feed::finished),
        ]
    }

    /// The event time the next epoch must pass for every feed.
    pub fn next_epoch_from(&self) -> u64 {
        [
            self.trades.as_ref().map(Feed::next_epoch_from),
            self.interactions.as_ref().map(Feed::next_epoch_from),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX)
    }

    /// Moves every feed to the epoch `limit`, sending what it held before it.
    pub fn release(&mut self, limit: u64) {
        if let Some(f) = self.trades.as_mut() {
            f.release(limit, &mut self.in_flight);
        }
        if let Some(f) = self.interactions.as_mut() {
            f.release(limit, &mut self.in_flight);
        }
    }

    /// The feeds' states, for a checkpoint, by name.
    pub fn save(&self) -> anyhow::Result<std::collections::BTreeMap<String, Vec<u8>>> {
        let mut saved = std::collections::BTreeMap::new();
        if let Some(f) = &self.trades {
            saved.insert(feed_state_name::<Trade>(), f.save()?);
        }
        if let Some(f) = &self.interactions {
            saved.insert(feed_state_name::<Interaction>(), f.save()?);
        }
        Ok(saved)
    }

    /// Restores the feeds from a checkpoint (worker `index` of `peers`).
    pub fn restore(&mut self, saved: SavedFeeds, index: usize, peers: usize) -> anyhow::Result<()> {
        if let Some(f) = self.trades.as_mut() {
            saved.restore_into(f, &saved.trades, index, peers)?;
        }
        if let Some(f) = self.interactions.as_mut() {
            saved.restore_into(f, &saved.interactions, index, peers)?;
        }
        Ok(())
    }
}

/// The saved feeds a worker resumes from: its own under the same layout,
/// every old worker's (in order) under another.
pub struct SavedFeeds {
    pub same_layout: bool,
    pub trades: Vec<Vec<u8>>,
    pub interactions: Vec<Vec<u8>>,
}

impl SavedFeeds {
    fn restore_into<E: Event>(
        &self,
        feed: &mut Feed<E>,
        saved: &[Vec<u8>],
        index: usize,
        peers: usize,
    ) -> anyhow::Result<()> {
        match (self.same_layout, saved) {
            (_, []) => Ok(()),
            (true, [own]) => feed.restore(own),
            (true, _) => anyhow::bail!("a worker has several saved {} feeds", E::STREAM),
            (false, all) => feed.restore_rescaled(all, index, peers),
        }
    }
}

/// The name under which a checkpoint keeps a feed of stream `E`.
pub fn feed_state_name<E: Event>() -> String {
    format!("feed/{}", E::STREAM)
}
