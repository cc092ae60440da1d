//! Sinks: result rows, late records and malformed rows written as CSV files.
//!
//! One writer per file and process, shared by the workers (rows arrive at a
//! few per window and key, so a lock per batch costs nothing measurable).
//! Rows keep their WORKLOAD.md headers; floats are written in their shortest
//! exact form, so pandas reads back the very same numbers.

pub mod row_sink;

use crate::record::Event;
use crate::sources::{Late, Malformed};
use anyhow::Context;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A CSV file of rows of type `T`, written by every worker of the process.
/// Rows are formatted by the calling worker; only the finished bytes are
/// written under the lock, so workers do not queue behind each other's formatting.
pub struct CsvSink<T> {
    name: String,
    file: Mutex<BufWriter<File>>,
    _rows: PhantomData<fn(T)>,
}

impl<T: Serialize> CsvSink<T> {
    /// Creates `dir/name`, writing `header` at once so that a run without rows still
    /// leaves a well-formed file. Resuming (`resume`), opens the file a
    /// checkpointed run wrote, to be cut back to its committed length.
    pub fn create(
        dir: &Path,
        name: &str,
        header: &[&str],
        resume: bool,
    ) -> anyhow::Result<Arc<Self>> {
        let path = dir.join(name);
        if resume {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot reopen {} to resume", path.display()))?;
            file.seek(SeekFrom::End(0))?;
            return Ok(Arc::new(CsvSink {
                name: name.to_string(),
                file: Mutex::new(BufWriter::with_capacity(1 << 16, file)),
                _rows: PhantomData,
            }));
        }
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut file = BufWriter::with_capacity(1 << 16, file);
        let mut line = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        line.write_record(header)?;
        file.write_all(&line.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        Ok(Arc::new(CsvSink {
            name: name.to_string(),
            file: Mutex::new(file),
            _rows: PhantomData,
        }))
    }

    pub fn write_all<'a>(&self, rows: impl IntoIterator<Item = &'a T>) -> anyhow::Result<()>
    where
        T: 'a,
    {
        let mut formatted = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::with_capacity(4096));
        for row in rows {
            formatted.serialize(row)?;
        }
        let bytes = formatted.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        self.file.lock().expect("sink lock").write_all(&bytes)?;
        Ok(())
    }
}

/// Writes the rows of a dataflow event (from `inspect_core`) to `sink`, if
/// any; a write error is logged (the run goes on and the summary tells).
pub fn write_event<T: Serialize>(
    sink: &Option<Arc<CsvSink<T>>>,
    event: Result<(&timely::dataflow::channels::Stamp<u64>, &Vec<T>), &[u64]>,
) {
    if let (Some(sink), Ok((_, rows))) = (sink, event) {
        if let Err(e) = sink.write_all(rows.iter()) {
            tracing::error!("cannot write results: {e}");
        }
    }
}

/// A sink that can be flushed, committed and cut back whatever its row type.
pub trait Flush: Send + Sync {
    fn flush(&self) -> anyhow::Result<()>;
    /// The file's name in the output folder.
    fn name(&self) -> &str;
    /// Flushes and returns the length written so far: what a checkpoint commits.
    fn committed_len(&self) -> anyhow::Result<u64>;
    /// Cuts the file back to a checkpoint's committed length (resuming), so
    /// that rows written after it are not doubled when written again.
    fn truncate_to(&self, len: u64) -> anyhow::Result<()>;
}

impl<T> Flush for CsvSink<T> {
    fn flush(&self) -> anyhow::Result<()> {
        self.file.lock().expect("sink lock").flush()?;
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn committed_len(&self) -> anyhow::Result<u64> {
        let mut file = self.file.lock().expect("sink lock");
        file.flush()?;
        Ok(file.get_mut().stream_position()?)
    }

    fn truncate_to(&self, len: u64) -> anyhow::Result<()> {
        let mut file = self.file.lock().expect("sink lock");
        file.flush()?;
        let f = file.get_mut();
        let now = f.metadata()?.len();
        if now < len {
            anyhow::bail!(
                "{} has {now} bytes, fewer than the {len} the checkpoint committed: \
                 the result files were changed since; start afresh without --resume",
                self.name
            );
        }
        f.set_len(len)?;
        f.seek(SeekFrom::Start(len))?;
        Ok(())
    }
}

/// `late.csv`: `stream,seq,ts_ms,watermark_ms,record`.
#[derive(Serialize)]
pub struct LateRow {
    pub stream: &'static str,
    pub seq: u64,
    pub ts_ms: u64,
    pub watermark_ms: u64,
    pub record: String,
}

impl LateRow {
    pub fn of<E: Event>(late: &Late<E>) -> Self {
        LateRow {
            stream: E::STREAM,
            seq: late.record.seq(),
            ts_ms: late.record.ts_ms(),
            watermark_ms: late.watermark_ms,
            record: late.record.to_csv_line(),
        }
    }
}

/// `malformed.csv`: `stream,line,error,raw`.
#[derive(Serialize)]
pub struct MalformedRow {
    pub stream: &'static str,
    pub line: u64,
    pub error: String,
    pub raw: String,
}

impl MalformedRow {
    pub fn of(stream: &'static str, m: &Malformed) -> Self {
        MalformedRow {
            stream,
            line: m.line,
            error: m.error.clone(),
            raw: m.raw.clone(),
        }
    }
}

pub const ANOMALIES_HEADER: &[&str] = &["stream", "key", "ts_ms", "kind", "score"];
pub const FORECASTS_HEADER: &[&str] = &[
    "stream",
    "key",
    "target",
    "window_start_ms",
    "forecast",
    "naive",
    "actual",
    "mae",
    "naive_mae",
];
pub const LATE_HEADER: &[&str] = &["stream", "seq", "ts_ms", "watermark_ms", "record"];
pub const MALFORMED_HEADER: &[&str] = &["stream", "line", "error", "raw"];
pub const BARS_HEADER: &[&str] = &[
    "symbol",
    "window_start_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "vwap",
];
pub const STATS_HEADER: &[&str] = &["symbol", "window_start_ms", "count", "mean", "std"];
pub const VOL_HEADER: &[&str] = &["symbol", "window_start_ms", "returns", "volatility"];
pub const CORR_HEADER: &[&str] = &["symbol_a", "symbol_b", "window_start_ms", "n", "corr"];
pub const EWMA_HEADER: &[&str] = &["symbol", "ts_ms", "price", "ewma", "ewm_vol"];
pub const ITEM_COUNTS_HEADER: &[&str] = &[
    "item_id",
    "window_start_ms",
    "views",
    "clicks",
    "purchases",
    "total",
];
pub const ACTIVITY_HEADER: &[&str] = &[
    "window_start_ms",
    "users",
    "interactions",
    "avg_per_user",
    "max_item",
    "max_count",
    "min_item",
    "min_count",
];
pub const ALERTS_HEADER: &[&str] = &["item_id", "window_start_ms", "total", "threshold"];
pub const ITEM_TOTALS_HEADER: &[&str] = &["item_id", "views", "clicks", "purchases", "total"];
