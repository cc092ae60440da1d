//! A worker's dataflow: the two inputs, the end of each, and every query of
//! the run built on them, in a loop that names no query.

use super::worker::WorkerShared;
use crate::checkpoint::state::StateRegistry;
use crate::framework::input_end::input_end;
use crate::probes::LatencyProbe;
use crate::queries::{Build, Input, Outlets, SourceStreams};
use crate::record::{Interaction, Trade};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::UnorderedHandle;
use timely::dataflow::operators::core::{Probe, UnorderedInput};
use timely::dataflow::operators::ActivateCapability;
use timely::dataflow::{ProbeHandle, Scope};

/// One input of the dataflow: its handle and capability.
pub type InputPair<E> = (
    UnorderedHandle<u64, CapacityContainerBuilder<Vec<E>>>,
    ActivateCapability<u64>,
);

/// The inputs a worker's feeds send into.
pub struct Inputs {
    pub trades: InputPair<Trade>,
    pub interactions: InputPair<Interaction>,
}

/// Builds the run's queries on this worker's inputs. A query runs when a
/// source of a stream it reads is present.
pub fn build<'s>(
    scope: Scope<'s, u64>,
    shared: &WorkerShared,
    states: &StateRegistry,
    latency: &LatencyProbe,
    probe: &ProbeHandle<u64>,
) -> anyhow::Result<Inputs> {
    let pipeline = &shared.pipeline;
    let (trade_input, trades) = scope.new_unordered_input::<CapacityContainerBuilder<Vec<Trade>>>();
    let (ix_input, interactions) =
        scope.new_unordered_input::<CapacityContainerBuilder<Vec<Interaction>>>();
    let sources = SourceStreams {
        trades_end: input_end(trades.clone(), states)?,
        interactions_end: input_end(interactions.clone(), states)?,
        trades: trades.clone(),
        interactions: interactions.clone(),
    };
    let metrics = &shared.metrics;
    let counters = |name: &str| metrics.query(name);
    let outlets = Outlets {
        files: &shared.outputs.files,
        sinks: &shared.sinks,
        probe,
    };
    let mut b = Build::new(
        scope,
        sources,
        &pipeline.queries,
        states,
        latency,
        shared.tick,
        &counters,
        outlets,
    );
    b.key_groups = pipeline.engine.key_groups()?;
    for query in &shared.queries {
        b.add(query.as_ref())?;
    }
    // The run ends when the inputs are processed, whatever the queries.
    trades.probe_with(probe);
    interactions.probe_with(probe);
    Ok(Inputs {
        trades: trade_input,
        interactions: ix_input,
    })
}

/// Whether `query` runs in `pipeline`: a source of a stream it reads is present.
pub fn runs(query: &dyn crate::queries::Query, pipeline: &crate::pipeline::Pipeline) -> bool {
    query.reads().iter().any(|input: &Input| {
        if input.from_trades() {
            pipeline.sources.trades.is_some()
        } else {
            pipeline.sources.interactions.is_some()
        }
    })
}
