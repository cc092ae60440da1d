//! Extending the engine from a program that embeds it, without touching the
//! crate: registered on a [`Job`](crate::engine::Job) before it runs.
//!
//! - **sources** of one's own (any [`Source`](crate::sources::Source)), one
//!   instance per worker (`Job::with_trade_source`, `with_interaction_source`);
//! - **row sinks** ([`RowSink`](crate::sinks::row_sink::RowSink)) that receive
//!   the result rows as they are computed (`Job::with_sink`);
//! - **queries** (`Job::with_query`): any [`Query`], on the same path as the
//!   built-in ones — its rows go to `ID.csv` in the output folder, its
//!   counters to `metrics.json`, its state into checkpoints, and the run's
//!   probe waits for it. Two ready-made shapes cover most queries:
//!   [`WindowQuery`], a mergeable aggregate over event-time windows per key
//!   (see `examples/windowed_query.rs`), and [`OrderedQuery`], a per-key
//!   computation that sees its records in (`ts_ms`, `seq`) order (see
//!   `examples/rsi_operator.rs`).

use crate::framework::input_end::InputEnd;
use crate::framework::ordered::{ordered, OrderedLogic};
use crate::framework::pane_window::{window, WindowAggregate, WindowSpec};
use crate::queries::{Build, Input, Query, RowFile};
use crate::record::{Interaction, Trade};
use crate::sinks::Row;
use timely::dataflow::Stream;

/// A stream a query added in code can read, with its type.
pub trait QueryInput: Clone + Send + 'static {
    /// The stream, as [`Input`] names it.
    const INPUT: Input;
    /// The stream on this worker, keyed as the stream is (trades by symbol,
    /// interactions by item), and the end of its source.
    fn stream<'s>(
        b: &mut Build<'s, '_>,
    ) -> anyhow::Result<(Stream<'s, u64, Vec<Self>>, InputEnd<'s>)>;
}

impl QueryInput for Trade {
    const INPUT: Input = Input::Trades;
    fn stream<'s>(
        b: &mut Build<'s, '_>,
    ) -> anyhow::Result<(Stream<'s, u64, Vec<Self>>, InputEnd<'s>)> {
        Ok((b.trades(), b.trades_end().clone()))
    }
}

impl QueryInput for Interaction {
    const INPUT: Input = Input::Interactions;
    fn stream<'s>(
        b: &mut Build<'s, '_>,
    ) -> anyhow::Result<(Stream<'s, u64, Vec<Self>>, InputEnd<'s>)> {
        Ok((b.interactions_by_item(), b.interactions_end().clone()))
    }
}

impl QueryInput for crate::queries::bars_1s::Bar {
    const INPUT: Input = Input::Bars;
    fn stream<'s>(
        b: &mut Build<'s, '_>,
    ) -> anyhow::Result<(Stream<'s, u64, Vec<Self>>, InputEnd<'s>)> {
        Ok((b.bars()?, b.trades_end().clone()))
    }
}

/// A windowed aggregate per key as a query: `aggregate` over windows of
/// `spec` of the stream its input type names. The aggregate must key its
/// records as the stream is keyed (trades and bars by symbol, interactions
/// by item), since each worker sees only its keys.
pub struct WindowQuery<A> {
    id: String,
    reads: [Input; 1],
    spec: WindowSpec,
    make: Box<dyn Fn() -> A + Send + Sync>,
}

impl<A> WindowQuery<A>
where
    A: WindowAggregate,
    A::In: QueryInput,
    A::Out: Row,
{
    /// The query `id` (its file is `ID.csv`): `make()` gives each worker its aggregate.
    pub fn new(
        id: &str,
        spec: WindowSpec,
        make: impl Fn() -> A + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        spec.validate()
            .map_err(|e| anyhow::anyhow!("query {id}: {e}"))?;
        Ok(WindowQuery {
            id: id.to_string(),
            reads: [A::In::INPUT],
            spec,
            make: Box::new(make),
        })
    }
}

impl<A> Query for WindowQuery<A>
where
    A: WindowAggregate,
    A::In: QueryInput,
    A::Out: Row,
{
    fn id(&self) -> &str {
        &self.id
    }
    fn reads(&self) -> &[Input] {
        &self.reads
    }
    fn output(&self) -> RowFile {
        RowFile::of::<A::Out>()
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let (input, _end) = A::In::stream(b)?;
        let rows = window(
            input,
            &self.id,
            self.spec,
            (self.make)(),
            b.query_counters(),
            b.latency.clone(),
            b.states,
        )?;
        b.emit(rows);
        Ok(())
    }
}

/// An order-sensitive per-key computation as a query (see `ordered.rs`).
pub struct OrderedQuery<L> {
    id: String,
    reads: [Input; 1],
    make: Box<dyn Fn() -> L + Send + Sync>,
}

impl<L> OrderedQuery<L>
where
    L: OrderedLogic,
    L::In: QueryInput,
    L::Out: Row,
{
    /// The query `id` (its file is `ID.csv`): `make()` gives each worker a fresh logic.
    pub fn new(id: &str, make: impl Fn() -> L + Send + Sync + 'static) -> Self {
        OrderedQuery {
            id: id.to_string(),
            reads: [L::In::INPUT],
            make: Box::new(make),
        }
    }
}

impl<L> Query for OrderedQuery<L>
where
    L: OrderedLogic,
    L::In: QueryInput,
    L::Out: Row,
{
    fn id(&self) -> &str {
        &self.id
    }
    fn reads(&self) -> &[Input] {
        &self.reads
    }
    fn output(&self) -> RowFile {
        RowFile::of::<L::Out>()
    }
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let (input, end) = L::In::stream(b)?;
        let rows = ordered(
            input,
            &end,
            &self.id,
            (self.make)(),
            b.query_counters(),
            b.states,
        )?;
        b.emit(rows);
        Ok(())
    }
}
