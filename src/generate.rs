//! `eddy generate`: writes a generator's stream to a CSV file in the WORKLOAD.md
//! format, in arrival order, so other tools and engines read the very input
//! eddy processes.

use crate::record::Event;
use crate::sources::anomalies::TRUTH_HEADER;
use crate::sources::interactions::{InteractionConfig, InteractionGenerator};
use crate::sources::market::{MarketConfig, MarketGenerator};
use crate::sources::schedule::{Schedule, Timing};
use crate::sources::{Batch, Poll, Source};
use crate::time::Watermark;
use anyhow::{bail, Context};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

const START_MS: u64 = crate::engine::DEFAULT_START_MS;
const BATCH: usize = 4_096;

/// Writes `config.arrivals.count` trades to `path`, and the labels of the
/// injected anomalies to `truth` if given; returns the numbers written.
pub fn write_trades(
    config: &MarketConfig,
    path: &Path,
    truth: Option<&Path>,
) -> anyhow::Result<(u64, u64)> {
    write_all(market_source(config)?, config.arrivals.count, path, truth)
}

/// Writes `config.arrivals.count` interactions (plus injected ones) to
/// `path`, and the labels to `truth` if given; returns the numbers written.
pub fn write_interactions(
    config: &InteractionConfig,
    path: &Path,
    truth: Option<&Path>,
) -> anyhow::Result<(u64, u64)> {
    write_all(
        interaction_source(config)?,
        config.arrivals.count,
        path,
        truth,
    )
}

/// The whole market stream of `config` (one generator, as fast as possible).
pub fn market_source(config: &MarketConfig) -> anyhow::Result<MarketGenerator> {
    config.validate().map_err(anyhow::Error::msg)?;
    let schedule = schedule(config.arrivals.start_ms, config.arrivals.rate);
    Ok(MarketGenerator::new(
        config,
        schedule,
        BATCH,
        crate::rescale::groups::WorkerShare::whole(),
    ))
}

/// The whole interaction stream of `config` (one generator, as fast as possible).
pub fn interaction_source(config: &InteractionConfig) -> anyhow::Result<InteractionGenerator> {
    config.validate().map_err(anyhow::Error::msg)?;
    let schedule = schedule(config.arrivals.start_ms, config.arrivals.rate);
    Ok(InteractionGenerator::new(
        config,
        schedule,
        BATCH,
        crate::rescale::groups::WorkerShare::whole(),
    ))
}

fn schedule(start_ms: Option<u64>, rate: f64) -> Schedule {
    let span_us = (BATCH as f64 / rate * 1e6) as u64;
    Schedule::new(
        Timing::AsFast,
        1.0,
        start_ms.unwrap_or(START_MS),
        Instant::now(),
        span_us,
    )
}

fn write_all<E: Event>(
    mut source: impl Source<E>,
    count: Option<u64>,
    path: &Path,
    truth: Option<&Path>,
) -> anyhow::Result<(u64, u64)> {
    if count.is_none() {
        bail!("generate needs a record count (--count)");
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    writeln!(out, "{}", E::CSV_HEADER)?;
    // No watermark applies when writing a file: every record is written as generated.
    let mut watermark = Watermark::new(u64::MAX);
    let mut batch = Batch::default();
    let mut labels = match truth {
        Some(t) => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_path(t)
                .with_context(|| format!("cannot create {}", t.display()))?;
            w.write_record(TRUTH_HEADER)?;
            Some(w)
        }
        None => None,
    };
    let (mut written, mut labelled) = (0, 0);
    loop {
        batch.clear();
        let poll = source.next_batch(&mut batch, &mut watermark)?;
        for record in &batch.on_time {
            writeln!(out, "{}", record.to_csv_line())?;
        }
        written += batch.on_time.len() as u64;
        if let Some(w) = labels.as_mut() {
            for row in &batch.truth {
                w.serialize(row)?;
            }
            labelled += batch.truth.len() as u64;
        }
        if poll == Poll::Done {
            break;
        }
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(mut w) = labels {
        w.flush()?;
    }
    Ok((written, labelled))
}
