//! What a run is made of before it starts: the pipeline, the cluster place
//! and what a program embedding eddy added (its sources, queries, sinks).

use crate::pipeline::{InteractionSource, Pipeline, TradeSource};
use crate::queries::Query;
use crate::record::{Interaction, Trade};
use crate::sinks::row_sink::RowSink;
use crate::sources::Source;
use anyhow::Context;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Makes worker `index` of `peers` its share of a stream.
pub type SourceFactory<E> =
    Arc<dyn Fn(usize, usize) -> anyhow::Result<Box<dyn Source<E>>> + Send + Sync>;

/// What a program embedding eddy added to a job.
#[derive(Default, Clone)]
pub struct Extensions {
    pub trade_source: Option<SourceFactory<Trade>>,
    pub interaction_source: Option<SourceFactory<Interaction>>,
    pub sinks: Vec<Arc<dyn RowSink>>,
    /// Queries beside the built-in ones, built on the same path.
    pub queries: Vec<Arc<dyn Query>>,
}

/// A pipeline ready to run, with what the command line added.
pub struct Job {
    pub pipeline: Pipeline,
    /// Set to stop the sources early (Ctrl-C); the run then drains and reports.
    pub stop: Arc<AtomicBool>,
    /// This process's place in a cluster; none for a single process.
    pub cluster: Option<ClusterPlace>,
    /// What a program embedding eddy added (see `extend.rs`).
    pub extensions: Extensions,
}

impl Job {
    /// A single-process job that runs until its sources end.
    pub fn new(pipeline: Pipeline) -> Self {
        Job {
            pipeline,
            stop: Arc::new(AtomicBool::new(false)),
            cluster: None,
            extensions: Extensions::default(),
        }
    }

    /// Feeds the trade stream from `make(index, peers)`, one source per worker,
    /// in place of the pipeline's `[sources.trades]`.
    pub fn with_trade_source(
        mut self,
        make: impl Fn(usize, usize) -> anyhow::Result<Box<dyn Source<Trade>>> + Send + Sync + 'static,
    ) -> Self {
        self.pipeline.sources.trades = Some(TradeSource::Custom {});
        self.extensions.trade_source = Some(Arc::new(make));
        self
    }

    /// Feeds the interaction stream from `make(index, peers)`, one source per
    /// worker, in place of the pipeline's `[sources.interactions]`.
    pub fn with_interaction_source(
        mut self,
        make: impl Fn(usize, usize) -> anyhow::Result<Box<dyn Source<Interaction>>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.pipeline.sources.interactions = Some(InteractionSource::Custom {});
        self.extensions.interaction_source = Some(Arc::new(make));
        self
    }

    /// Hands every result row to `sink` too, as it is computed.
    pub fn with_sink(mut self, sink: Arc<dyn RowSink>) -> Self {
        self.extensions.sinks.push(sink);
        self
    }

    /// Adds a query to every worker's dataflow, beside the built-in ones:
    /// its rows go to `ID.csv`, its counters to `metrics.json`, its state
    /// into checkpoints (see `queries/mod.rs` and `extend.rs`).
    pub fn with_query(mut self, query: impl Query) -> Self {
        self.extensions.queries.push(Arc::new(query));
        self
    }
}

/// One process of a timely cluster: the same command runs on every host,
/// each with its own index into the list of addresses.
#[derive(Clone, Debug)]
pub struct ClusterPlace {
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
    /// Wall-clock ms at which a real-time run starts, shared by all processes.
    pub origin_ms: Option<u64>,
    /// Peer timeout, wait for peers, shared secret.
    pub options: crate::cluster::ClusterOptions,
}

impl ClusterPlace {
    /// Reads a hostfile: one `host:port` a line (blank lines and `#` comments skipped).
    pub fn from_hostfile(
        process: usize,
        processes: usize,
        path: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read hostfile {}", path.display()))?;
        let addresses: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        if addresses.len() < processes {
            anyhow::bail!(
                "hostfile {} names {} processes, --processes asks for {processes}",
                path.display(),
                addresses.len()
            );
        }
        if process >= processes {
            anyhow::bail!("--process {process} must be below --processes {processes}");
        }
        Ok(ClusterPlace {
            process,
            addresses: addresses[..processes].to_vec(),
            origin_ms: None,
            options: Default::default(),
        })
    }
}
