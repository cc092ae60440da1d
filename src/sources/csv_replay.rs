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
    /// Where each block starts in a serial read: the stats of every block
    /// before it (known once every worker shared its stats).
    starts: Option<Vec<BlockStats>>,
    /// The block being read: its place in `own` and its reader.
    current: Option<OpenBlock>,
    /// The next block of `own` to open.
    next_own: usize,
    /// Lines before the first data row (the header's).
    header_newlines: u64,
    batch_rows: usize,
    /// Bytes of this worker's blocks, and of those finished.
    own_bytes: u64,
    done_bytes: u64,
    done: bool,
    _record: PhantomData<E>,
}

/// A block being read.
struct OpenBlock {
    own: usize,
    reader: BlockReader,
    /// Rows of this block read so far.
    rows: u64,
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
        Ok(CsvReplay {
            path: path.to_path_buf(),
            starts: (peers == 1).then(|| vec![BlockStats::default()]),
            blocks,
            own,
            own_stats,
            current: None,
            next_own: 0,
            header_newlines,
            batch_rows: batch_rows.max(1),
            own_bytes,
            done_bytes: 0,
            done: false,
            _record: PhantomData,
        })
    }

    /// Opens this worker's block `own` (its place in `self.own`) at `at`,
    /// after `rows` rows of it.
    fn open_block(&mut self, own: usize, at: ReadPosition, rows: u64) -> anyhow::Result<()> {
        let block = self.blocks[self.own[own]];
        let reader = BlockReader::open(&self.path, block, at)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        self.current = Some(OpenBlock { own, reader, rows });
        Ok(())
    }

    /// Where the block being read starts in a serial read.
    fn start_of(&self, own: usize) -> BlockStats {
        let starts = self
            .starts
            .as_ref()
            .expect("the blocks' stats are shared before reading");
        starts[self.own[own]]
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
            let Some(block) = self.current.as_mut() else {
                if self.next_own == self.own.len() {
                    self.done = true;
                    break;
                }
                let own = self.next_own;
                self.next_own += 1;
                self.open_block(own, ReadPosition::START, 0)?;
                // The rows of every block before this one were seen (by some worker).
                if let Some(max) = self.start_of(own).max_ts {
                    watermark.observe(max);
                }
                continue;
            };
            let read = block
                .reader
                .next_row()
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            let Some((local_lines, range)) = read else {
                let b = self.blocks[self.own[block.own]];
                self.done_bytes += b.end - b.start;
                self.current = None;
                continue;
            };
            let (own, local_row) = (block.own, block.rows);
            block.rows += 1;
            let start = self.start_of(own);
            taken += 1;
            batch.generated += 1;
            let line = match &self.current {
                Some(block) => block.reader.row(range),
                None => unreachable!("the block read from is open"),
            };
            // No quoting in the formats: fields are what lies between commas.
            let row = CommaFields::split(line);
            // The row's time moves the watermark before the row is judged
            // (a malformed row's too, when its time field reads).
            match E::parse_row(&row, start.rows + local_row) {
                Ok(record) => {
                    let ts = record.ts_ms();
                    watermark.observe(ts);
                    batch.admit(record, ts, watermark);
                }
                Err(error) => {
                    if let Some(ts) = row_ts(&row) {
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
        self.starts.is_none().then(|| {
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
        self.starts = Some((0..stats.len()).map(|k| split::before(&stats, k)).collect());
        Ok(())
    }

    fn progress(&self) -> Option<(u64, u64)> {
        let in_block = self.current.as_ref().map_or(0, |b| b.reader.bytes_read());
        Some((self.done_bytes + in_block, self.own_bytes))
    }

    fn save(&self) -> anyhow::Result<Vec<u8>> {
        let at = self
            .current
            .as_ref()
            .map(|b| (b.own, b.reader.position(), b.rows));
        Ok(bincode::serialize(&ReplayPosition {
            at,
            next_own: self.next_own,
            done_bytes: self.done_bytes,
            done: self.done,
        })?)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        let r: ReplayPosition = bincode::deserialize(saved)?;
        let changed = || {
            anyhow::anyhow!(
                "{} does not match where the checkpoint left it: was the file changed?",
                self.path.display()
            )
        };
        if r.next_own > self.own.len() {
            return Err(changed());
        }
        self.next_own = r.next_own;
        self.done_bytes = r.done_bytes;
        self.done = r.done;
        self.current = None;
        if let Some((own, at, rows)) = r.at {
            let block = *self
                .own
                .get(own)
                .and_then(|&k| self.blocks.get(k))
                .ok_or_else(changed)?;
            if at.line_start > block.end - block.start {
                return Err(changed());
            }
            self.open_block(own, at, rows)?;
        }
        Ok(())
    }
}

/// Where a replay stands.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReplayPosition {
    /// The block being read (its place among this worker's), where in it,
    /// and its rows read.
    at: Option<(usize, ReadPosition, u64)>,
    next_own: usize,
    done_bytes: u64,
    done: bool,
}
