//! A stream received over TCP, read back from its input log (see
//! `ingest/mod.rs`): only lines already on disk enter the dataflow.
//!
//! As with a CSV replay, every worker reads the whole log; worker `w` of `n`
//! owns the lines whose index `i` in the log has `i % n == w` and reads only
//! the `ts_ms` of the others, so the watermark and the late decisions follow
//! the log's order whatever the number of workers. A line's `seq` is its index
//! in the log. Fields are split at commas (the WORKLOAD.md formats have no
//! quoting). A malformed line is reported with its sender and its line number
//! among that sender's lines.

use super::parse::ParseRow;
use super::{take_shared_row, Batch, Malformed, Poll, Source, Taken};
use crate::ingest::log::{Entry, LogReader};
use crate::ingest::StreamLog;
use crate::record::Event;
use crate::time::Watermark;
use csv::ByteRecord;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// This worker's share of a stream's input log.
pub struct TcpLog<E> {
    log: Arc<StreamLog>,
    reader: LogReader,
    /// Index in the log of the next line.
    next_line: u64,
    local_worker: usize,
    index: u64,
    peers: u64,
    batch_lines: usize,
    done: bool,
    row: ByteRecord,
    _record: PhantomData<E>,
}

/// Where a reader of the log stands, for checkpoints.
#[derive(serde::Serialize, serde::Deserialize)]
struct LogPosition {
    offset: u64,
    next_line: u64,
    done: bool,
}

impl<E: Event + ParseRow> TcpLog<E> {
    pub fn open(
        log: Arc<StreamLog>,
        batch_lines: usize,
        local_worker: usize,
        index: usize,
        peers: usize,
    ) -> anyhow::Result<Self> {
        let reader = LogReader::open(&log.path, 0)?;
        Ok(TcpLog {
            log,
            reader,
            next_line: 0,
            local_worker,
            index: index as u64,
            peers: peers as u64,
            batch_lines: batch_lines.max(1),
            done: false,
            row: ByteRecord::new(),
            _record: PhantomData,
        })
    }

    fn take_lines(&mut self, batch: &mut Batch<E>, watermark: &mut Watermark, entry: Entry) {
        let Entry::Lines {
            source,
            first,
            lines,
        } = entry
        else {
            self.done = true;
            return;
        };
        for (k, line) in lines.iter().enumerate() {
            let line_index = self.next_line;
            self.next_line += 1;
            self.row.clear();
            for field in line.split(',') {
                self.row.push_field(field.as_bytes());
            }
            let share = (self.index, self.peers);
            if let Taken::Malformed(error) =
                take_shared_row(&self.row, line_index, share, batch, watermark)
            {
                batch.malformed.push(Malformed {
                    line: first + k as u64 + 1,
                    error: if source.is_empty() {
                        error
                    } else {
                        format!("sender {source}: {error}")
                    },
                    raw: line.clone(),
                });
            }
        }
    }
}

impl<E: Event + ParseRow> Source<E> for TcpLog<E> {
    fn next_batch(
        &mut self,
        batch: &mut Batch<E>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll> {
        let wanted = self.batch_lines as u64 * self.peers;
        let start = self.next_line;
        while !self.done && self.next_line - start < wanted {
            match self.reader.next(self.log.durable())? {
                Some(entry) => self.take_lines(batch, watermark, entry),
                None => break,
            }
        }
        self.log.set_read(self.local_worker, self.reader.offset());
        Ok(if self.done {
            Poll::Done
        } else if self.next_line == start {
            Poll::Wait(Duration::from_millis(2))
        } else {
            Poll::Ready
        })
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.reader.offset(), self.log.durable()))
    }

    fn save(&self) -> anyhow::Result<Vec<u8>> {
        Ok(bincode::serialize(&LogPosition {
            offset: self.reader.offset(),
            next_line: self.next_line,
            done: self.done,
        })?)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let p: LogPosition = bincode::deserialize(saved)?;
        if p.offset > self.log.durable() {
            anyhow::bail!(
                "input log {} is shorter ({} bytes) than where the checkpoint left it ({} bytes)",
                self.log.path.display(),
                self.log.durable(),
                p.offset
            );
        }
        self.reader = LogReader::open(&self.log.path, p.offset)?;
        self.next_line = p.next_line;
        self.done = p.done;
        self.log.set_read(self.local_worker, p.offset);
        Ok(())
    }
}
