//! Replay of a recorded CSV file (`trades.csv` or `interactions.csv`), split
//! among the workers.
//!
//! Worker `w` of `n` reads and parses only its own blocks of the file (whole
//! lines; see `split.rs`): blocks `w`, `w + n`, ... Before reading, it shares
//! the stats of its blocks with every worker ([`Source::share`]); a block's
//! reader then starts with the watermark, row index and line number a serial
//! read would have there. So the late decision for a row is that of the whole
//! file in row order — watermark = greatest `ts_ms` before the row −
//! max delay — whatever the number of workers and processes; a row's `seq` is
//! its data row index (ties in `ts_ms` go by file order); malformed rows are
//! returned with their line in the file; a row whose `ts_ms` does not parse
//! does not move the watermark. One worker reads the file as one block.

use super::parse::{row_ts, CommaFields, ParseRow};
use super::split::{self, Block, BlockReader, BlockStats, ReadPosition};
use super::{Batch, Malformed, Poll, Source};
use crate::record::Event;
use crate::time::Watermark;
use anyhow::{bail, Context};
use csv::ByteRecord;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// This worker's share of a CSV file.
pub struct CsvReplay<E> {
    path: PathBuf,
    /// Every block of the file, in order.
    blocks: Vec<Block>,
    /// This worker's blocks (indices into `blocks`), in order.
    own: Vec<usize>,
    /// The stats of this worker's blocks, shared before reading.
    own_stats: Vec<BlockStats>,
    /// What this worker still has to read, in file order (known once every
    /// worker shared its stats, or restored from a checkpoint).
    pieces: VecDeque<Piece>,
    /// The piece being read.
    current: Option<OpenPiece>,
    /// Whether the blocks' serial starts are still to be learnt from every worker's stats.
    needs_starts: bool,
    /// Lines before the first data row (the header's).
    header_newlines: u64,
    batch_rows: usize,
    /// Bytes of this worker's pieces, and of those finished.
    own_bytes: u64,
    done_bytes: u64,
    done: bool,
    _record: PhantomData<E>,
}

/// A part of a block still to read, with what a serial read knows there:
/// the unit in which a replay's position is saved, and dealt out anew when
/// a checkpoint is resumed by another number of workers.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Piece {
    block: Block,
    /// Where in the block reading resumes.
    at: ReadPosition,
    /// The serial read's stats before the block.
    start: BlockStats,
    /// Rows of the block before `at`.
    rows: u64,
    /// The greatest `ts_ms` of every row before `at` (the block's rows
    /// included): the watermark a serial read has there.
    max_ts: Option<u64>,
}

impl Piece {
    fn remaining(&self) -> u64 {
        (self.block.end - self.block.start).saturating_sub(self.at.line_start)
    }
}

/// The piece being read.
struct OpenPiece {
    piece: Piece,
    reader: BlockReader,
}

impl<E: Event + ParseRow> CsvReplay<E> {
    /// Opens `path`, checks its header against the stream's format, and
    /// scans this worker's blocks for the stats it shares.
    pub fn open(
        path: &Path,
        batch_rows: usize,
        index: usize,
        peers: usize,
    ) -> anyhow::Result<Self> {
        let open = || {
            File::open(path)
                .with_context(|| format!("cannot open {} file {}", E::STREAM, path.display()))
        };
        let mut file = open()?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (data_start, header_newlines) = check_header::<E>(&mut file, path)?;
        let read = |e: std::io::Error| anyhow::anyhow!("cannot read {}: {e}", path.display());
        let blocks = if peers == 1 {
            vec![Block {
                start: data_start,
                end: len,
            }]
        } else {
            split::blocks(&mut file, data_start, len, split::block_size(len, peers))
                .map_err(read)?
        };
        let own: Vec<usize> = (index..blocks.len()).step_by(peers).collect();
        // One worker needs no stats: its reader carries the serial state itself.
        let own_stats = if peers == 1 {
            vec![BlockStats::default()]
        } else {
            let mut scanner = split::Scanner::open(path).map_err(read)?;
            own.iter()
                .map(|&k| scanner.scan(blocks[k]).map_err(read))
                .collect::<anyhow::Result<_>>()?
        };
        let own_bytes = own.iter().map(|&k| blocks[k].end - blocks[k].start).sum();
        let mut replay = CsvReplay {
            path: path.to_path_buf(),
            blocks,
            own,
            own_stats,
            pieces: VecDeque::new(),
            current: None,
            needs_starts: peers > 1,
            header_newlines,
            batch_rows: batch_rows.max(1),
            own_bytes,
            done_bytes: 0,
            done: false,
            _record: PhantomData,
        };
        if peers == 1 {
            replay.set_starts(&[BlockStats::default()]);
        }
        Ok(replay)
    }

    /// This worker's pieces once the serial start of every block is known.
    fn set_starts(&mut self, starts: &[BlockStats]) {
        self.pieces = self
            .own
            .iter()
            .map(|&k| Piece {
                block: self.blocks[k],
                at: ReadPosition::START,
                start: starts[k],
                rows: 0,
                max_ts: starts[k].max_ts,
            })
            .collect();
    }

    /// Where reading stands: the piece being read (from where it is now)
    /// and those after it.
    fn remaining(&self) -> Vec<Piece> {
        let current = self.current.as_ref().map(|c| Piece {
            at: c.reader.position(),
            ..c.piece
        });
        current
            .into_iter()
            .chain(self.pieces.iter().copied())
            .collect()
    }

    /// Goes on from `pieces` (in file order).
    fn resume_at(&mut self, pieces: Vec<Piece>, done_bytes: u64) -> anyhow::Result<()> {
        let len = std::fs::metadata(&self.path)?.len();
        if pieces.iter().any(|p| p.block.end > len) {
            bail!(
                "{} is shorter than where the checkpoint left it: was the file changed?",
                self.path.display()
            );
        }
        self.current = None;
        self.done_bytes = done_bytes;
        self.own_bytes = done_bytes + pieces.iter().map(Piece::remaining).sum::<u64>();
        self.pieces = pieces.into();
        self.done = false;
        Ok(())
    }
}

/// The CSV reader of the formats: no quoting (a stray quote must not join
/// lines), any number of fields (a wrong count is a malformed row).
fn csv_reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .quoting(false)
        .buffer_capacity(1 << 16)
        .from_reader(input)
}

/// Checks line 1 against the stream's header; returns where the data starts
/// and the `\n` bytes before it.
fn check_header<E: Event>(file: &mut File, path: &Path) -> anyhow::Result<(u64, u64)> {
    let mut reader = BufReader::new(&mut *file);
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut header = csv_reader(&line[..]);
    let mut fields = ByteRecord::new();
    let has_header = header.read_byte_record(&mut fields).unwrap_or(false);
    let found: Vec<String> = fields
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
    let newlines = u64::from(line.last() == Some(&b'\n'));
    Ok((line.len() as u64, newlines))
}

impl<E: Event + ParseRow> Source<E> for CsvReplay<E> {
    fn next_batch(
        &mut self,
        batch: &mut Batch<E>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll> {
        let mut taken = 0;
        while taken < self.batch_rows && !self.done {
            let Some(open) = self.current.as_mut() else {
                let Some(piece) = self.pieces.pop_front() else {
                    self.done = true;
                    break;
                };
                let reader = BlockReader::open(&self.path, piece.block, piece.at)
                    .with_context(|| format!("cannot read {}", self.path.display()))?;
                // The rows before the piece were seen (by some worker).
                if let Some(max) = piece.max_ts {
                    watermark.observe(max);
                }
                self.current = Some(OpenPiece { piece, reader });
                continue;
            };
            let read = open
                .reader
                .next_row()
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            let Some((local_lines, range)) = read else {
                self.done_bytes += open.piece.remaining();
                self.current = None;
                continue;
            };
            let (start, local_row) = (open.piece.start, open.piece.rows);
            open.piece.rows += 1;
            taken += 1;
            batch.generated += 1;
            let line = open.reader.row(range);
            // No quoting in the formats: fields are what lies between commas.
            let row = CommaFields::split(line);
            // The row's time moves the watermark before the row is judged
            // (a malformed row's too, when its time field reads).
            match E::parse_row(&row, start.rows + local_row) {
                Ok(record) => {
                    let ts = record.ts_ms();
                    open.piece.max_ts = open.piece.max_ts.max(Some(ts));
                    watermark.observe(ts);
                    batch.admit(record, ts, watermark);
                }
                Err(error) => {
                    if let Some(ts) = row_ts(&row) {
                        open.piece.max_ts = open.piece.max_ts.max(Some(ts));
                        watermark.observe(ts);
                    }
                    batch.malformed.push(Malformed {
                        line: 1 + self.header_newlines + start.newlines + local_lines,
                        error,
                        raw: String::from_utf8_lossy(line).into_owned(),
                    })
                }
            }
        }
        Ok(if self.done { Poll::Done } else { Poll::Ready })
    }

    fn share(&self) -> Option<Vec<u8>> {
        // One worker (its blocks' starts are known) shares nothing.
        self.needs_starts.then(|| {
            let own: Vec<(usize, BlockStats)> = self
                .own
                .iter()
                .copied()
                .zip(self.own_stats.iter().copied())
                .collect();
            bincode::serialize(&own).expect("block stats serialize")
        })
    }

    fn shared(&mut self, all: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut stats = vec![None; self.blocks.len()];
        for part in all {
            let part: Vec<(usize, BlockStats)> = bincode::deserialize(part)?;
            for (k, s) in part {
                let slot = stats
                    .get_mut(k)
                    .context("a worker split the file into other blocks")?;
                *slot = Some(s);
            }
        }
        let stats: Vec<BlockStats> = stats
            .into_iter()
            .collect::<Option<_>>()
            .context("a block of the file was scanned by no worker")?;
        let mut starts = Vec::with_capacity(stats.len());
        let mut before = BlockStats::default();
        for s in &stats {
            starts.push(before);
            before = before.then(*s);
        }
        self.set_starts(&starts);
        self.needs_starts = false;
        Ok(())
    }

    fn progress(&self) -> Option<(u64, u64)> {
        let in_piece = self.current.as_ref().map_or(0, |c| {
            c.reader.position().line_start - c.piece.at.line_start
        });
        Some((self.done_bytes + in_piece, self.own_bytes))
    }

    fn save(&self) -> anyhow::Result<Vec<u8>> {
        Ok(bincode::serialize(&ReplayPosition {
            pieces: self.remaining(),
            done_bytes: self.done_bytes,
        })?)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let r: ReplayPosition = bincode::deserialize(saved)?;
        self.resume_at(r.pieces, r.done_bytes)
    }

    /// Every old worker's remaining pieces, in file order, dealt out round
    /// robin: each carries the serial read's stats, so the late decisions,
    /// row numbers and lines stay those of one serial read.
    fn restore_rescaled(
        &mut self,
        all: &[Vec<u8>],
        index: usize,
        peers: usize,
    ) -> anyhow::Result<()> {
        let mut pieces = Vec::new();
        for saved in all {
            let r: ReplayPosition = bincode::deserialize(saved)?;
            pieces.extend(r.pieces);
        }
        pieces.sort_by_key(|p| (p.block.start, p.at.line_start));
        self.resume_at(crate::rescale::layout::deal(pieces, index, peers), 0)
    }
}

/// Where a replay stands: the pieces of the file still to read.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReplayPosition {
    pieces: Vec<Piece>,
    done_bytes: u64,
}
