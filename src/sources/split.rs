//! Splitting a replayed file among workers, with the late decisions of a
//! serial read.
//!
//! The data (after the header line) is cut into blocks at line starts: block
//! `k` holds the lines that start in `[k * size, (k + 1) * size)`, so a line
//! is never cut, whatever its bytes. Worker `w` of `n` (over every process)
//! owns the blocks `k` with `k % n == w`: the workers move through the file,
//! and so through event time, side by side.
//!
//! The serial definition (WORKLOAD.md) decides a row's lateness by the
//! greatest `ts_ms` of every row before it, and numbers rows and lines from
//! the top. Before reading, each worker scans its own blocks cheaply — line
//! ends and the first field only — for [`BlockStats`]: the greatest `ts_ms`,
//! the number of rows (as the CSV reader counts them: non-empty lines, a line
//! ending at `\n`, `\r` or `\r\n`) and of `\n` bytes. The stats of all blocks
//! are then shared among the workers (an all-gather), and a block's reader
//! starts from the running maximum, row index and line number of every block
//! before it: its decisions are those of a serial read.

use super::parse::parse_ts;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// One block of a file: a byte range of whole lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub start: u64,
    pub end: u64,
}

/// What a block holds, as the serial read needs to know it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// The greatest `ts_ms` that parses (rows whose `ts_ms` does not parse
    /// do not move a watermark).
    pub max_ts: Option<u64>,
    /// Rows: the records the CSV reader returns.
    pub rows: u64,
    /// `\n` bytes: lines, for line numbers.
    pub newlines: u64,
}

impl BlockStats {
    /// The stats of two consecutive ranges as one.
    pub fn then(self, next: BlockStats) -> BlockStats {
        BlockStats {
            max_ts: self.max_ts.max(next.max_ts),
            rows: self.rows + next.rows,
            newlines: self.newlines + next.newlines,
        }
    }
}

/// The block size for a file of `len` bytes read by `peers` workers: about
/// 16 blocks a worker, between 4 KiB and 1 MiB (small blocks keep workers
/// close in event time; large ones cost fewer seeks).
pub fn block_size(len: u64, peers: usize) -> u64 {
    (len / (peers as u64 * 16).max(1)).clamp(4 << 10, 1 << 20)
}

/// The blocks of `file`'s data range `[data_start, len)`, cut at line starts.
pub fn blocks(
    file: &mut File,
    data_start: u64,
    len: u64,
    size: u64,
) -> std::io::Result<Vec<Block>> {
    let mut starts = vec![data_start];
    let mut at = data_start;
    while at < len {
        let target = (at / size + 1) * size;
        if target >= len {
            break;
        }
        // The first line start at or after `target`: just after the first
        // `\n` at or after `target - 1`.
        let Some(start) = next_line_start(file, target - 1, len)? else {
            break;
        };
        if start > at && start < len {
            starts.push(start);
        }
        at = start.max(target);
    }
    starts.push(len);
    starts.dedup();
    Ok(starts
        .windows(2)
        .map(|w| Block {
            start: w[0],
            end: w[1],
        })
        .collect())
}

/// The position just after the first `\n` at or after `from`, if any before `len`.
fn next_line_start(file: &mut File, from: u64, len: u64) -> std::io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(1 << 14, file.take(len - from));
    let mut skipped = Vec::new();
    let n = reader.read_until(b'\n', &mut skipped)? as u64;
    Ok((skipped.last() == Some(&b'\n')).then_some(from + n))
}

/// The records of one `\n`-ended line, as byte ranges of it (from `base`)
/// pushed onto `out`: `\r` ends a record too and empty records are skipped,
/// as the CSV reader the formats were defined with reads them. Most lines
/// hold one record, ended by `\n` or `\r\n`: that case takes one search.
pub fn record_ranges(line: &[u8], base: usize, out: &mut Vec<(usize, usize)>) {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if memchr::memchr(b'\r', body).is_none() {
        if !body.is_empty() {
            out.push((base, base + body.len()));
        }
        return;
    }
    let mut start = 0;
    for (i, b) in line.iter().enumerate() {
        if *b == b'\n' || *b == b'\r' {
            if i > start {
                out.push((base + start, base + i));
            }
            start = i + 1;
        }
    }
    if line.len() > start {
        out.push((base + start, base + line.len()));
    }
}

/// A block's rows, one at a time, with the line each starts on: lines are
/// counted by `\n`, so a row's line is exact whatever the line ends (the CSV
/// crate reports the line where it began looking: the `\n` of a CRLF, or a
/// blank line before the row). Lines are found in place in a 64 KiB buffer
/// (no copy per line).
pub struct BlockReader {
    input: std::io::Take<File>,
    buf: Vec<u8>,
    /// The unread bytes are `buf[line_end..filled]`; the current line is
    /// `buf[line_start_in_buf..line_end]`.
    line_start_in_buf: usize,
    line_end: usize,
    filled: usize,
    eof: bool,
    /// The current line's records (ranges in `buf`) and how many were taken.
    records: Vec<(usize, usize)>,
    taken: usize,
    /// Bytes of the block before the current line, and `\n`s before it.
    line_start: u64,
    lines_before: u64,
}

/// Where a row lies in a [`BlockReader`]'s buffer.
#[derive(Clone, Copy, Debug)]
pub struct RowRange(usize, usize);

/// Where a [`BlockReader`] stands: the current line's start (bytes into the
/// block), the `\n`s before it and the records of it already taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPosition {
    pub line_start: u64,
    pub lines_before: u64,
    pub taken: usize,
}

impl ReadPosition {
    /// A block's beginning.
    pub const START: ReadPosition = ReadPosition {
        line_start: 0,
        lines_before: 0,
        taken: 0,
    };
}

impl BlockReader {
    /// Reads `block` of the file at `path` from `at`.
    pub fn open(path: &Path, block: Block, at: ReadPosition) -> std::io::Result<Self> {
        Self::with_buffer(path, block, at, 1 << 16)
    }

    /// As [`BlockReader::open`], with a buffer of `capacity` bytes at first.
    fn with_buffer(
        path: &Path,
        block: Block,
        at: ReadPosition,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(block.start + at.line_start))?;
        let rest = (block.end - block.start).saturating_sub(at.line_start);
        let mut reader = BlockReader {
            input: file.take(rest),
            buf: vec![0; capacity.max(1)],
            line_start_in_buf: 0,
            line_end: 0,
            filled: 0,
            eof: false,
            records: Vec::with_capacity(2),
            taken: 0,
            line_start: at.line_start,
            lines_before: at.lines_before,
        };
        if at.taken > 0 && reader.next_line()? {
            reader.taken = at.taken;
        }
        Ok(reader)
    }

    /// Moves to the next `\n`-ended line (or the last, unended one); false
    /// at the block's end.
    fn next_line(&mut self) -> std::io::Result<bool> {
        let done = &self.buf[self.line_start_in_buf..self.line_end];
        self.line_start += done.len() as u64;
        self.lines_before += u64::from(done.last() == Some(&b'\n'));
        self.records.clear();
        self.taken = 0;
        let mut from = self.line_end;
        let end = loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[from..self.filled]) {
                break from + i + 1;
            }
            if self.eof {
                break self.filled;
            }
            from = self.filled;
            // Keep the partial line: move it to the front, grow if it fills the buffer.
            if self.line_end > 0 {
                self.buf.copy_within(self.line_end..self.filled, 0);
                from -= self.line_end;
                self.filled -= self.line_end;
                self.line_end = 0;
            }
            if self.filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.input.read(&mut self.buf[self.filled..])?;
            self.filled += n;
            self.eof = n == 0;
        };
        self.line_start_in_buf = self.line_end;
        self.line_end = end;
        let line = &self.buf[self.line_start_in_buf..end];
        if line.is_empty() {
            return Ok(false);
        }
        record_ranges(line, self.line_start_in_buf, &mut self.records);
        Ok(true)
    }

    /// The next row (its bytes: [`BlockReader::row`]) and the `\n`s before
    /// its line; none at the end.
    pub fn next_row(&mut self) -> std::io::Result<Option<(u64, RowRange)>> {
        loop {
            if let Some(&(from, to)) = self.records.get(self.taken) {
                self.taken += 1;
                return Ok(Some((self.lines_before, RowRange(from, to))));
            }
            if !self.next_line()? {
                return Ok(None);
            }
        }
    }

    /// The bytes of a row [`BlockReader::next_row`] returned (valid until the next call).
    pub fn row(&self, range: RowRange) -> &[u8] {
        &self.buf[range.0..range.1]
    }

    /// Where the next row will be read from.
    pub fn position(&self) -> ReadPosition {
        ReadPosition {
            line_start: self.line_start,
            lines_before: self.lines_before,
            taken: self.taken,
        }
    }

    /// Bytes of the block consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.line_start + (self.line_end - self.line_start_in_buf) as u64
    }
}

/// Scans blocks of a file for their [`BlockStats`]. The scan runs before
/// any worker reads, so it looks at as little as it can: whole lines in
/// 1 MiB chunks, and of each row only the digits of its first field. One
/// buffer serves every block (a fresh zeroed megabyte a block was a fifth
/// of the scan's instructions).
pub struct Scanner {
    file: File,
    buf: Vec<u8>,
}

impl Scanner {
    pub fn open(path: &Path) -> std::io::Result<Scanner> {
        Scanner::with_buffer(path, 1 << 20)
    }

    /// As [`Scanner::open`], reading `capacity` bytes at a time at first.
    fn with_buffer(path: &Path, capacity: usize) -> std::io::Result<Scanner> {
        Ok(Scanner {
            file: File::open(path)?,
            buf: vec![0; capacity.max(1)],
        })
    }

    /// The stats of `block`.
    pub fn scan(&mut self, block: Block) -> std::io::Result<BlockStats> {
        self.file.seek(SeekFrom::Start(block.start))?;
        let mut input = (&self.file).take(block.end - block.start);
        let buf = &mut self.buf;
        let (mut filled, mut stats) = (0, BlockStats::default());
        loop {
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = input.read(&mut buf[filled..])?;
            filled += n;
            let eof = n == 0;
            // Whole lines only, but at the block's end (its last line may be unended).
            let end = match memchr::memrchr(b'\n', &buf[..filled]) {
                _ if eof => filled,
                Some(i) => i + 1,
                None => continue,
            };
            scan_lines(&buf[..end], &mut stats);
            buf.copy_within(end..filled, 0);
            filled -= end;
            if eof {
                return Ok(stats);
            }
        }
    }
}

/// Adds the stats of `text`, whole lines (the last may lack its `\n`).
fn scan_lines(text: &[u8], stats: &mut BlockStats) {
    let plain = memchr::memchr(b'\r', text).is_none();
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i + 1);
        let line = &text[start..end];
        start = end;
        stats.newlines += u64::from(line.last() == Some(&b'\n'));
        if plain {
            // One record per line, ended by `\n`; a blank line is none.
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            if !body.is_empty() {
                stats.rows += 1;
                stats.max_ts = stats.max_ts.max(first_field_ts(body));
            }
            continue;
        }
        ranges.clear();
        record_ranges(line, 0, &mut ranges);
        for &(from, to) in &ranges {
            stats.rows += 1;
            stats.max_ts = stats.max_ts.max(first_field_ts(&line[from..to]));
        }
    }
}

/// The `ts_ms` of a record, if its first field parses as one (as the reader
/// decides it: [`parse_ts`]).
fn first_field_ts(record: &[u8]) -> Option<u64> {
    let first = &record[..memchr::memchr(b',', record).unwrap_or(record.len())];
    parse_ts(first).ok()
}

/// Where block `k` starts in the serial read: the stats of every block before it.
pub fn before(all: &[BlockStats], k: usize) -> BlockStats {
    all[..k]
        .iter()
        .fold(BlockStats::default(), |acc, s| acc.then(*s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// Stats of a whole text, by the CSV reader the replay uses.
    fn by_csv_reader(text: &[u8]) -> (u64, Option<u64>, u64) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .quoting(false)
            .from_reader(text);
        let mut row = csv::ByteRecord::new();
        let (mut rows, mut max) = (0, None);
        while reader.read_byte_record(&mut row).unwrap() {
            rows += 1;
            if let Some(ts) = row.get(0).and_then(|f| parse_ts(f).ok()) {
                max = max.max(Some(ts));
            }
        }
        (rows, max, reader.position().line())
    }

    fn file_of(text: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let handle = File::open(f.path()).unwrap();
        (f, handle)
    }

    /// Rows and their lines by [`BlockReader`] over every block of a text,
    /// with a buffer of `buffer` bytes, restarted from its saved position
    /// after every third row.
    fn by_block_reader(text: &[u8], size: u64, buffer: usize) -> Vec<(Vec<Vec<u8>>, u64)> {
        let (tmp, mut file) = file_of(text);
        let mut rows = Vec::new();
        for block in blocks(&mut file, 0, text.len() as u64, size).unwrap() {
            // Lines are counted within the block; the replay adds those before it.
            let before = text[..block.start as usize]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            let mut reader =
                BlockReader::with_buffer(tmp.path(), block, ReadPosition::START, buffer).unwrap();
            while let Some((lines, range)) = reader.next_row().unwrap() {
                // No quoting in the formats: fields are what lies between commas.
                let fields = reader.row(range).split(|b| *b == b',');
                rows.push((fields.map(<[u8]>::to_vec).collect(), before + lines));
                if rows.len() % 3 == 0 {
                    let at = reader.position();
                    reader = BlockReader::with_buffer(tmp.path(), block, at, buffer).unwrap();
                }
            }
        }
        rows
    }

    proptest! {
        /// The block reader reads the rows the CSV reader reads, each with
        /// the number of `\n`s before it, across block ends and restarts.
        #[test]
        fn the_block_reader_reads_what_the_csv_reader_reads(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(&b"17"[..]), Just(&b","[..]), Just(&b"\n"[..]), Just(&b"\r\n"[..]),
                    Just(&b"\r"[..]), Just("é".as_bytes()), Just(&b"x y"[..]),
                ],
                0..80,
            ),
            size in 1u64..32,
            buffer in 1usize..12,
        ) {
            let text: Vec<u8> = parts.concat();
            let mut csv_rows = Vec::new();
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .quoting(false)
                .from_reader(&text[..]);
            let mut row = csv::ByteRecord::new();
            while reader.read_byte_record(&mut row).unwrap() {
                csv_rows.push(row.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
            }
            let ours = by_block_reader(&text, size, buffer);
            let fields: Vec<Vec<Vec<u8>>> = ours.iter().map(|(f, _)| f.clone()).collect();
            prop_assert_eq!(fields, csv_rows);
            // A row's line: the `\n`s before its first byte.
            let mut search = 0;
            // Rows are non-empty and only line ends lie between them.
            for (f, lines) in &ours {
                let joined: Vec<u8> = f.join(&b","[..]);
                let at = search
                    + text[search..]
                        .windows(joined.len())
                        .position(|w| w == &joined[..])
                        .unwrap();
                prop_assert_eq!(*lines, text[..at].iter().filter(|b| **b == b'\n').count() as u64);
                search = at + joined.len();
            }
        }

        /// Blocks cover the data exactly, start at line starts, and their
        /// stats add up to what the CSV reader sees, whatever the bytes and
        /// the block size.
        #[test]
        fn blocks_and_scans_agree_with_the_csv_reader(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(&b"1700000000123"[..]), Just(&b"17"[..]), Just(&b","[..]),
                    Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..]),
                    Just(&b"AAA,1.5,3"[..]), Just("é".as_bytes()), Just(&b" 42 "[..]), Just(&b"x"[..]),
                    Just(&b"99999999999999999"[..]), Just(&b"7 "[..]), Just(&b"+3"[..]),
                    Just(&b"253402300800000"[..]),
                ],
                0..120,
            ),
            size in 1u64..64,
            buffer in 1usize..16,
        ) {
            let text: Vec<u8> = parts.concat();
            let (tmp, mut file) = file_of(&text);
            let len = text.len() as u64;
            let blocks = blocks(&mut file, 0, len, size).unwrap();
            let mut at = 0;
            for b in &blocks {
                prop_assert_eq!(b.start, at);
                prop_assert!(b.start == 0 || text[b.start as usize - 1] == b'\n');
                at = b.end;
            }
            prop_assert_eq!(at, len);
            let mut scanner = Scanner::open(tmp.path()).unwrap();
            let mut small_reads = Scanner::with_buffer(tmp.path(), buffer).unwrap();
            let total = blocks
                .iter()
                .map(|b| scanner.scan(*b).unwrap())
                .fold(BlockStats::default(), BlockStats::then);
            let (rows, max, line) = by_csv_reader(&text);
            prop_assert_eq!((total.rows, total.max_ts), (rows, max));
            prop_assert_eq!(total.newlines + 1, line);
            // Read a few bytes at a time: lines cross the reads.
            let small = blocks
                .iter()
                .map(|b| small_reads.scan(*b).unwrap())
                .fold(BlockStats::default(), BlockStats::then);
            prop_assert_eq!(small, total);
        }
    }

    #[test]
    fn a_line_longer_than_a_block_stays_whole() {
        let text = b"1,aaaaaaaaaaaaaaaaaaaaaaaa\n2,b\n3,c";
        let (_tmp, mut file) = file_of(text);
        let blocks = blocks(&mut file, 0, text.len() as u64, 4).unwrap();
        let starts: Vec<u64> = blocks.iter().map(|b| b.start).collect();
        assert_eq!(starts, [0, 27, 31]);
    }
}
