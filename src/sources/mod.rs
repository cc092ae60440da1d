//! Sources feed one worker's share of an input stream into the dataflow.
//!
//! Every source yields batches in arrival order and decides, record by record,
//! whether a record is on time or late against the input's [`Watermark`]
//! (see `time.rs`). File rows that do not parse are handed back as
//! [`Malformed`] with their line number; nothing is dropped silently.

pub mod anomalies;
pub mod arrivals;
pub mod csv_replay;
pub mod interactions;
mod keyed;
pub mod market;
pub mod parse;
pub mod schedule;
pub mod split;
pub mod tcp_log;

use crate::record::Event;
use crate::time::Watermark;
use std::time::Duration;

/// A row of an input file that could not be read as a record.
#[derive(Clone, Debug, PartialEq)]
pub struct Malformed {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// What is wrong, naming the field.
    pub error: String,
    /// The row as it was read, fields joined by commas.
    pub raw: String,
}

/// A late record and the watermark it missed.
#[derive(Clone, Debug)]
pub struct Late<E> {
    pub record: E,
    pub watermark_ms: u64,
}

/// What one call to [`Source::next_batch`] produced.
pub struct Batch<E> {
    pub on_time: Vec<E>,
    pub late: Vec<Late<E>>,
    pub malformed: Vec<Malformed>,
    /// Records this worker took from its source in this batch (on time + late + malformed).
    pub generated: u64,
    /// How far the generator is behind its real-time schedule, in ms of wall time.
    pub lag_ms: Option<f64>,
    /// Labels of the anomalies a generator injected into this batch.
    pub truth: Vec<anomalies::TruthRow>,
    /// A partitioned source's consumer lag, when it measured it: `topic/partition` → messages.
    pub partition_lag: Vec<(String, i64)>,
}

impl<E> Default for Batch<E> {
    fn default() -> Self {
        Batch {
            on_time: Vec::new(),
            late: Vec::new(),
            malformed: Vec::new(),
            generated: 0,
            lag_ms: None,
            truth: Vec::new(),
            partition_lag: Vec::new(),
        }
    }
}

impl<E> Batch<E> {
    pub fn clear(&mut self) {
        self.on_time.clear();
        self.late.clear();
        self.malformed.clear();
        self.generated = 0;
        self.lag_ms = None;
        self.truth.clear();
        self.partition_lag.clear();
    }

    /// Files a record as on time or late against the watermark.
    #[inline]
    pub fn admit(&mut self, record: E, ts_ms: u64, watermark: &Watermark) {
        if watermark.is_late(ts_ms) {
            self.late.push(Late {
                record,
                watermark_ms: watermark.current(),
            });
        } else {
            self.on_time.push(record);
        }
    }
}

/// What became of a row of an input every worker reads (a file, a TCP log).
pub enum Taken {
    /// Another worker's row: it only moved the watermark.
    Elsewhere,
    /// This worker's row, filed on time or late.
    Admitted,
    /// This worker's row, which does not parse: what is wrong.
    Malformed(String),
}

/// Takes row `row_index` of an input every worker reads whole: the row moves
/// the watermark (so late decisions follow the input's order whatever the
/// number of workers); the worker that owns it (`mine`) parses and admits it.
pub fn take_shared_row<E: Event + parse::ParseRow>(
    row: &csv::ByteRecord,
    row_index: u64,
    mine: bool,
    batch: &mut Batch<E>,
    watermark: &mut Watermark,
) -> Taken {
    if let Some(ts) = parse::row_ts(row) {
        watermark.observe(ts);
    }
    if !mine {
        return Taken::Elsewhere;
    }
    batch.generated += 1;
    match E::parse_row(row, row_index) {
        Ok(record) => {
            let ts = record.ts_ms();
            batch.admit(record, ts, watermark);
            Taken::Admitted
        }
        Err(error) => Taken::Malformed(error),
    }
}

/// What a source says after a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Poll {
    /// More may follow at once.
    Ready,
    /// Nothing is due yet (real time); ask again after about this long.
    Wait(Duration),
    /// The source is exhausted.
    Done,
}

/// One worker's share of an input stream.
pub trait Source<E: Event> {
    /// Appends the next records to `batch` and advances `watermark`.
    fn next_batch(
        &mut self,
        batch: &mut Batch<E>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll>;

    /// Progress through the input, for the status line: (done, total) when known.
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }

    /// What this worker's source tells every worker's before any reads (a
    /// replay: the stats of its blocks); none for a source that needs nothing.
    /// Every worker's source of a stream answers alike (some or none).
    fn share(&self) -> Option<Vec<u8>> {
        None
    }

    /// What every worker's source shared (in worker order), before any reads.
    fn shared(&mut self, _all: &[Vec<u8>]) -> anyhow::Result<()> {
        Ok(())
    }

    /// The source's position, for a checkpoint: what [`Source::restore`]
    /// needs to go on from exactly the next record.
    fn save(&self) -> anyhow::Result<Vec<u8>>;

    /// Moves a freshly opened source to a saved position.
    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()>;

    /// Moves a freshly opened source to where a checkpoint of another
    /// layout left the input: `all` holds every old worker's saved position
    /// (in worker order), and this worker (`index` of `peers`) takes its
    /// share of what remains, so that the workers together go on from
    /// exactly the next record. A source that cannot says so.
    fn restore_rescaled(
        &mut self,
        all: &[Vec<u8>],
        index: usize,
        peers: usize,
    ) -> anyhow::Result<()> {
        let _ = (all, index);
        anyhow::bail!(
            "this source cannot resume on another number of workers ({peers} now); \
             resume with the layout that wrote the checkpoint"
        )
    }
}
