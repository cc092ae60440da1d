//! Replay of a recorded CSV file (`trades.csv` or `interactions.csv`).
//!
//! Every worker reads the whole file; worker `w` of `n` owns the data rows
//! whose index `i` has `i % n == w` and parses them fully, and reads only the
//! `ts_ms` of the others. So each worker's watermark is the watermark of the
//! whole file in arrival (row) order, and the late decision for a row is the
//! same whatever the number of workers. A row's `seq` is its data row index,
//! so ties in `ts_ms` are broken by file order. Rows that do not parse are
//! returned as malformed with their line number; a row whose `ts_ms` does not
//! parse does not move the watermark.

use super::parse::ParseRow;
use super::{take_shared_row, Batch, Malformed, Poll, Source, Taken};
use crate::record::Event;
use crate::time::Watermark;
use anyhow::{bail, Context};
use csv::ByteRecord;
use std::fs::File;
use std::io::BufReader;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// This worker's share of a CSV file.
pub struct CsvReplay<E> {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    row: ByteRecord,
    next_row_index: u64,
    index: u64,
    peers: u64,
    batch_rows: usize,
    total_bytes: u64,
    done: bool,
    _record: PhantomData<E>,
}

impl<E: Event + ParseRow> CsvReplay<E> {
    /// Opens `path` and checks its header against the stream's format.
    pub fn open(
        path: &Path,
        batch_rows: usize,
        index: usize,
        peers: usize,
    ) -> anyhow::Result<Self> {
        let file = File::open(path)
            .with_context(|| format!("cannot open {} file {}", E::STREAM, path.display()))?;
        let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            // The formats have no quoting: a stray quote must not join lines.
            .quoting(false)
            .buffer_capacity(1 << 16)
            .from_reader(BufReader::with_capacity(1 << 16, file));
        let mut header = ByteRecord::new();
        let has_header = reader
            .read_byte_record(&mut header)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let found: Vec<String> = header
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect();
        if !has_header || found.join(",") != E::CSV_HEADER {
            bail!(
                "{}: line 1 must be the header `{}`, found `{}`",
                path.display(),
                E::CSV_HEADER,
                found.join(",")
            );
        }
        Ok(CsvReplay {
            path: path.to_path_buf(),
            reader,
            row: ByteRecord::new(),
            next_row_index: 0,
            index: index as u64,
            peers: peers as u64,
            batch_rows: batch_rows.max(1),
            total_bytes,
            done: false,
            _record: PhantomData,
        })
    }
}

impl<E: Event + ParseRow> Source<E> for CsvReplay<E> {
    fn next_batch(
        &mut self,
        batch: &mut Batch<E>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll> {
        if self.done {
            return Ok(Poll::Done);
        }
        // Read about `batch_rows` owned rows: `batch_rows * peers` rows of the file.
        let rows = self.batch_rows as u64 * self.peers;
        for _ in 0..rows {
            let more = self
                .reader
                .read_byte_record(&mut self.row)
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            if !more {
                self.done = true;
                break;
            }
            let row_index = self.next_row_index;
            self.next_row_index += 1;
            let share = (self.index, self.peers);
            if let Taken::Malformed(error) =
                take_shared_row(&self.row, row_index, share, batch, watermark)
            {
                batch.malformed.push(Malformed {
                    line: self.row.position().map_or(0, |p| p.line()),
                    error,
                    raw: self
                        .row
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect::<Vec<_>>()
                        .join(","),
                });
            }
        }
        Ok(if self.done { Poll::Done } else { Poll::Ready })
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.reader.position().byte(), self.total_bytes))
    }

    fn save(&self) -> anyhow::Result<Vec<u8>> {
        let p = self.reader.position();
        Ok(bincode::serialize(&ReplayPosition {
            byte: p.byte(),
            line: p.line(),
            record: p.record(),
            next_row_index: self.next_row_index,
            done: self.done,
        })?)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let r: ReplayPosition = bincode::deserialize(saved)?;
        if r.byte > self.total_bytes {
            bail!(
                "{} is shorter ({} bytes) than where the checkpoint left it ({} bytes)",
                self.path.display(),
                self.total_bytes,
                r.byte
            );
        }
        let mut p = csv::Position::new();
        p.set_byte(r.byte).set_line(r.line).set_record(r.record);
        self.reader
            .seek(p)
            .with_context(|| format!("cannot seek in {}", self.path.display()))?;
        self.next_row_index = r.next_row_index;
        self.done = r.done;
        Ok(())
    }
}

/// Where a replay stands: the reader's position and the next row's index.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReplayPosition {
    byte: u64,
    line: u64,
    record: u64,
    next_row_index: u64,
    done: bool,
}
