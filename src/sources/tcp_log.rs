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
//!
//! Resumed on another number of workers, the new workers start reading at
//! the old worker that was furthest behind, with its watermark (every worker
//! sees every line, so that is the serial watermark there); a line already
//! taken by its old owner ([`TakenEarlier`]) only moves the watermark again.

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
    /// The greatest event time of the lines read so far (what a rescaled
    /// restore starts the watermark at).
    max_ts: Option<u64>,
    taken_earlier: TakenEarlier,
    row: ByteRecord,
    _record: PhantomData<E>,
}

/// Where a reader of the log stands, for checkpoints.
#[derive(serde::Serialize, serde::Deserialize)]
struct LogPosition {
    offset: u64,
    next_line: u64,
    done: bool,
    max_ts: Option<u64>,
    taken_earlier: TakenEarlier,
}

/// Lines ahead of a reader that the workers of an earlier layout had
/// already taken when the run was rescaled.
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct TakenEarlier {
    /// Per earlier layout, the next line each of its workers had not taken:
    /// line `i` was taken under that layout iff `i < next[i % next.len()]`.
    layouts: Vec<Vec<u64>>,
}

impl TakenEarlier {
    fn taken(&self, line: u64) -> bool {
        self.layouts
            .iter()
            .any(|next| line < next[(line % next.len() as u64) as usize])
    }

    /// Forgets the layouts that took nothing at or after line `from`.
    fn prune(&mut self, from: u64) {
        self.layouts.retain(|next| next.iter().any(|&n| n > from));
    }
}

impl<E: Event + ParseRow> TcpLog<E> {
    pub fn open(
        log: Arc<StreamLog>,
        batch_lines: usize,
        local_worker: usize,
        index: usize,
        peers: usize,
    ) -> anyhow::Result<Self> {
        let reader = LogReader::open_oldest(&log.path)?;
        Ok(TcpLog {
            log,
            reader,
            next_line: 0,
            local_worker,
            index: index as u64,
            peers: peers as u64,
            batch_lines: batch_lines.max(1),
            done: false,
            max_ts: None,
            taken_earlier: TakenEarlier::default(),
            row: ByteRecord::new(),
            _record: PhantomData,
        })
    }

    fn take_lines(&mut self, batch: &mut Batch<E>, watermark: &mut Watermark, entry: Entry) {
        let (source, first, lines) = match entry {
            Entry::Lines {
                source,
                first,
                lines,
            } => (source, first, lines),
            Entry::Senders { .. } => return,
            Entry::End => {
                self.done = true;
                return;
            }
        };
        for (k, line) in lines.iter().enumerate() {
            let line_index = self.next_line;
            self.next_line += 1;
            self.row.clear();
            for field in line.split(',') {
                self.row.push_field(field.as_bytes());
            }
            let mine =
                line_index % self.peers == self.index && !self.taken_earlier.taken(line_index);
            if let Taken::Malformed(error) =
                take_shared_row(&self.row, line_index, mine, batch, watermark)
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
        if let Some(ts) = self.max_ts {
            watermark.observe(ts);
        }
        let wanted = self.batch_lines as u64 * self.peers;
        let start = self.next_line;
        while !self.done && self.next_line - start < wanted {
            match self.reader.next(self.log.durable())? {
                Some(entry) => self.take_lines(batch, watermark, entry),
                None => break,
            }
        }
        self.log.set_read(self.local_worker, self.reader.offset());
        self.max_ts = watermark.max_seen();
        self.taken_earlier.prune(self.next_line);
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
        self.log.saved_at(self.local_worker, self.reader.offset());
        Ok(bincode::serialize(&LogPosition {
            offset: self.reader.offset(),
            next_line: self.next_line,
            done: self.done,
            max_ts: self.max_ts,
            taken_earlier: self.taken_earlier.clone(),
        })?)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let p: LogPosition = bincode::deserialize(saved)?;
        self.resume_at(p)
    }

    fn restore_rescaled(&mut self, all: &[Vec<u8>], _: usize, _: usize) -> anyhow::Result<()> {
        let old: Vec<LogPosition> = all
            .iter()
            .map(|b| bincode::deserialize(b))
            .collect::<Result<_, _>>()?;
        let Some(start) = LogPosition::rescaled(old) else {
            anyhow::bail!("no saved input log positions");
        };
        self.resume_at(start)
    }
}

impl LogPosition {
    /// Where every worker of a new layout starts from the old workers'
    /// positions: the one furthest behind, knowing what all had taken.
    fn rescaled(old: Vec<LogPosition>) -> Option<LogPosition> {
        let mut taken_earlier = TakenEarlier::default();
        for layout in old.iter().flat_map(|p| &p.taken_earlier.layouts) {
            if !taken_earlier.layouts.contains(layout) {
                taken_earlier.layouts.push(layout.clone());
            }
        }
        taken_earlier
            .layouts
            .push(old.iter().map(|p| p.next_line).collect());
        let behind = old.into_iter().min_by_key(|p| p.next_line)?;
        taken_earlier.prune(behind.next_line);
        Some(LogPosition {
            taken_earlier,
            ..behind
        })
    }
}

impl<E> TcpLog<E> {
    fn resume_at(&mut self, p: LogPosition) -> anyhow::Result<()> {
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
        self.max_ts = p.max_ts;
        self.taken_earlier = p.taken_earlier;
        self.log.set_read(self.local_worker, p.offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worker `index` of `peers` reads lines up to `until` from `p` (the
    /// ownership rule of `take_lines`): the lines it takes.
    fn read(p: &mut LogPosition, index: u64, peers: u64, until: u64) -> Vec<u64> {
        let taken = (p.next_line..until)
            .filter(|&i| i % peers == index && !p.taken_earlier.taken(i))
            .collect();
        p.next_line = p.next_line.max(until);
        p.taken_earlier.prune(p.next_line);
        taken
    }

    #[test]
    fn rescaled_again_and_again_every_line_is_taken_once() {
        let lines = 400;
        // Workers stop at different lines; layouts 2 -> 3 -> 1 -> 4, the
        // later ones stopping before the earlier ones' furthest worker.
        let layouts: [(&[u64], usize); 4] = [
            (&[50, 130], 3),
            (&[40, 90, 170], 1),
            (&[120], 4),
            (&[lines; 4], 4),
        ];
        let mut all = Vec::new();
        let mut positions: Vec<LogPosition> = (0..2)
            .map(|_| LogPosition {
                offset: 0,
                next_line: 0,
                done: false,
                max_ts: None,
                taken_earlier: TakenEarlier::default(),
            })
            .collect();
        for (stops, next_peers) in layouts {
            let peers = positions.len() as u64;
            for (w, p) in positions.iter_mut().enumerate() {
                let until = stops[w].max(p.next_line);
                all.extend(read(p, w as u64, peers, until));
            }
            let start = LogPosition::rescaled(std::mem::take(&mut positions)).unwrap();
            positions = (0..next_peers)
                .map(|_| LogPosition {
                    taken_earlier: start.taken_earlier.clone(),
                    ..start
                })
                .collect();
        }
        all.sort_unstable();
        assert_eq!(all, (0..lines).collect::<Vec<_>>());
    }
}
