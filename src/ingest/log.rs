//! The input log: the durable, checksummed record of every line received over
//! TCP, one folder per stream (`trades/`, `interactions/`).
//!
//! A log is written in segments, files named by the log offset of their
//! first byte (`00000000000000000000.seg`); offsets are the log's, not a
//! segment's, so a checkpoint's read position stays valid whatever is
//! trimmed. A segment ends once it holds `segment_bytes`; the next starts
//! with a [`Entry::Senders`] frame, the lines logged per sender so far, so
//! that the segments before it can be removed ([`LogWriter::trim`]) and a
//! reconnecting sender is still told its position.
//!
//! A log is a sequence of frames: `EDLG`, payload length (u32 LE), CRC-32 of
//! the payload (u32 LE), payload (bincode of [`Entry`]). Frames are appended
//! and fsynced before the shared durable length moves past them, and sources
//! read only up to that length: a line enters the dataflow only once it is on
//! disk. After a crash, the tail of a log may hold a partial frame; opening
//! the log cuts it off (it was never acknowledged). A bad frame before the
//! tail is corruption and is refused, naming the byte offset.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"EDLG";
const HEADER: usize = 12;
/// Frames larger than this are not frames (a corrupted length).
const MAX_PAYLOAD: usize = 64 << 20;

/// What a frame holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Entry {
    /// Lines from one sender: `source` names it ("" when anonymous), and
    /// `first` is the sender's count of lines before these.
    Lines {
        source: String,
        first: u64,
        lines: Vec<String>,
    },
    /// The stream ends here (the listener closed it).
    End,
    /// Lines logged per sender before this point: the first frame of every
    /// segment but the first.
    Senders { sent: BTreeMap<String, u64> },
}

/// Encodes one frame.
pub fn frame(entry: &Entry) -> anyhow::Result<Vec<u8>> {
    let payload = bincode::serialize(entry)?;
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// What decoding the bytes at an offset gives.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A whole, intact frame of this many bytes.
    Frame(Entry, usize),
    /// The bytes end inside a frame: more may come (or a crash cut it).
    Partial,
    /// Not a frame: a bad magic, length or checksum.
    Bad(String),
}

/// Decodes the frame at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded {
    if bytes.len() < HEADER {
        return if MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            Decoded::Partial
        } else {
            Decoded::Bad("no frame marker".into())
        };
    }
    if &bytes[..4] != MAGIC {
        return Decoded::Bad("no frame marker".into());
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Bad(format!("frame length {len} is implausible"));
    }
    if bytes.len() < HEADER + len {
        return Decoded::Partial;
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER..HEADER + len];
    if crc32fast::hash(payload) != crc {
        return Decoded::Bad("checksum mismatch".into());
    }
    match bincode::deserialize(payload) {
        Ok(entry) => Decoded::Frame(entry, HEADER + len),
        Err(e) => Decoded::Bad(format!("frame does not decode: {e}")),
    }
}

/// What opening a log found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The log's length: the offset past its last intact frame.
    pub len: u64,
    /// Where the log starts (past trimmed segments).
    pub start: u64,
    /// Lines logged per sender, so that a reconnecting sender skips them.
    pub sent: BTreeMap<String, u64>,
    /// The stream was ended.
    pub ended: bool,
    /// Bytes of a partial frame cut off the tail.
    pub cut: u64,
}

/// The segment of `dir` starting at log offset `base`.
fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// The segments of a log folder by base offset, oldest first.
pub fn segments(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read input log {}", dir.display()))?;
    let mut bases = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name.strip_suffix(".seg") {
            match base.parse() {
                Ok(base) => bases.push(base),
                Err(_) => bail!(
                    "input log {}: {name} is not a segment (NNNN.seg, its first byte's offset)",
                    dir.display()
                ),
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Appends to a log folder: the newest segment, rolling to a new one once it
/// holds `segment_bytes`.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    /// Base offsets of the segments on disk, oldest first; the last is `file`.
    bases: Vec<u64>,
    len: u64,
    segment_bytes: u64,
}

/// Opens (creating) the log in folder `dir` for appending: checks every
/// frame, cuts a partial tail off the newest segment, and returns the
/// writer with what the log holds.
pub fn open(dir: &Path, segment_bytes: u64) -> anyhow::Result<(LogWriter, Scan)> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create input log {}", dir.display()))?;
    let mut bases = segments(dir)?;
    if bases.is_empty() {
        File::create(segment_path(dir, 0))
            .with_context(|| format!("cannot create input log {}", dir.display()))?;
        bases.push(0);
    }
    let mut scan = Scan {
        start: bases[0],
        ..Scan::default()
    };
    let mut end = bases[0];
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        if base != end {
            bail!(
                "input log {}: segment {} starts at byte {base} but the one before ends at byte {end}: \
                 a segment is missing or was changed; restore it or start afresh without --resume",
                dir.display(),
                path.display()
            );
        }
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read input log {}", path.display()))?;
        let newest = i + 1 == bases.len();
        let intact = scan_frames(&bytes, &path, newest, &mut scan)?;
        end = base + intact as u64;
        if newest && intact < bytes.len() {
            scan.cut = (bytes.len() - intact) as u64;
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(intact as u64)
                .with_context(|| format!("cannot cut the tail of {}", path.display()))?;
            file.sync_all()?;
        }
    }
    scan.len = end;
    let newest = *bases.last().expect("a segment");
    let file = OpenOptions::new()
        .append(true)
        .open(segment_path(dir, newest))
        .with_context(|| format!("cannot open input log {}", dir.display()))?;
    let writer = LogWriter {
        dir: dir.to_path_buf(),
        file,
        bases,
        len: end,
        segment_bytes: segment_bytes.max(1),
    };
    Ok((writer, scan))
}

/// Reads the frames of one segment into `scan`; returns the bytes of
/// intact frames. Only the newest segment may end in a partial or bad frame
/// (an interrupted write): anywhere else that is damage.
fn scan_frames(bytes: &[u8], path: &Path, newest: bool, scan: &mut Scan) -> anyhow::Result<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Decoded::Frame(entry, size) => {
                match entry {
                    Entry::Lines {
                        source,
                        first,
                        lines,
                    } => {
                        scan.sent.insert(source, first + lines.len() as u64);
                    }
                    Entry::End => scan.ended = true,
                    Entry::Senders { sent } => scan.sent = sent,
                }
                at += size;
            }
            Decoded::Partial if newest => break,
            // A crash can only leave a partial frame at the very end; bad bytes
            // with intact frames after them are damage.
            Decoded::Bad(why) if newest && !has_frame_after(&bytes[at..]) => {
                tracing::warn!(
                    "input log {}: {why} at byte {at}, the last frame: cutting it off",
                    path.display()
                );
                break;
            }
            Decoded::Partial => bail!(
                "input log {} ends inside a frame at byte {at}, and newer segments follow: \
                 restore it or start afresh without --resume",
                path.display()
            ),
            Decoded::Bad(why) => bail!(
                "input log {} is corrupted at byte {at} ({why}); frames follow, so this is \
                 not an interrupted write: restore the file or start afresh without --resume",
                path.display()
            ),
        }
    }
    Ok(at)
}

fn has_frame_after(bytes: &[u8]) -> bool {
    (1..bytes.len()).any(|i| matches!(decode(&bytes[i..]), Decoded::Frame(..)))
}

/// Syncs a folder, so that a file created in it survives a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl LogWriter {
    /// The log's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a frame and makes it durable; returns the log's new length.
    /// `sent` (lines logged per sender so far) starts a new segment.
    pub fn append(&mut self, entry: &Entry, sent: &BTreeMap<String, u64>) -> anyhow::Result<u64> {
        let base = *self.bases.last().expect("a segment");
        if self.len - base >= self.segment_bytes {
            let path = segment_path(&self.dir, self.len);
            let mut file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("cannot create input log segment {}", path.display()))?;
            let snapshot = frame(&Entry::Senders { sent: sent.clone() })?;
            file.write_all(&snapshot)?;
            sync_dir(&self.dir)?;
            self.bases.push(self.len);
            self.file = file;
            self.len += snapshot.len() as u64;
        }
        let bytes = frame(entry)?;
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.len += bytes.len() as u64;
        Ok(self.len)
    }

    /// Removes the segments wholly before log offset `offset` (never the
    /// newest); returns the bytes removed.
    pub fn trim(&mut self, offset: u64) -> anyhow::Result<u64> {
        let mut removed = 0;
        while self.bases.len() > 1 && self.bases[1] <= offset {
            let path = segment_path(&self.dir, self.bases[0]);
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove input log segment {}", path.display()))?;
            removed += self.bases[1] - self.bases[0];
            self.bases.remove(0);
        }
        Ok(removed)
    }

    /// Bytes of the segments on disk.
    pub fn bytes_on_disk(&self) -> u64 {
        self.len - self.bases[0]
    }
}

/// Reads frames of a log from a byte offset, never past the durable length
/// it is given, going on from segment to segment.
pub struct LogReader {
    dir: PathBuf,
    file: File,
    /// Offset of the next frame.
    offset: u64,
    /// The log offset of the file's cursor.
    cursor: u64,
    buffer: Vec<u8>,
}

impl LogReader {
    pub fn open(dir: &Path, offset: u64) -> anyhow::Result<Self> {
        let bases = segments(dir)?;
        let base = match bases.iter().rev().find(|&&b| b <= offset) {
            Some(&base) => base,
            None => bail!(
                "input log {}: byte {offset} was trimmed away (the log starts at byte {})",
                dir.display(),
                bases.first().copied().unwrap_or(0)
            ),
        };
        let path = segment_path(dir, base);
        let mut file = File::open(&path)
            .with_context(|| format!("cannot open input log {}", path.display()))?;
        file.seek(SeekFrom::Start(offset - base))?;
        Ok(LogReader {
            dir: dir.to_path_buf(),
            file,
            offset,
            cursor: offset,
            buffer: Vec::new(),
        })
    }

    /// A reader at the oldest frame still on disk (a resumed reader moves
    /// on to its checkpoint's offset at once).
    pub fn open_oldest(dir: &Path) -> anyhow::Result<Self> {
        let oldest = segments(dir)?.first().copied().unwrap_or(0);
        Self::open(dir, oldest)
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame wholly before `durable`, if any.
    pub fn next(&mut self, durable: u64) -> anyhow::Result<Option<Entry>> {
        loop {
            match decode(&self.buffer) {
                Decoded::Frame(entry, size) => {
                    self.buffer.drain(..size);
                    self.offset += size as u64;
                    return Ok(Some(entry));
                }
                Decoded::Partial => {
                    let unread = durable.saturating_sub(self.cursor);
                    if unread == 0 {
                        if self.buffer.is_empty() {
                            return Ok(None);
                        }
                        // Appends are whole frames: the durable length never cuts one.
                        bail!(
                            "input log {}: a partial frame at byte {} before the durable length {durable}",
                            self.dir.display(),
                            self.offset
                        );
                    }
                    self.read(unread.min(1 << 20) as usize)?;
                }
                Decoded::Bad(why) => bail!(
                    "input log {} is corrupted at byte {}: {why}",
                    self.dir.display(),
                    self.offset
                ),
            }
        }
    }

    /// Reads `n` durable bytes into the buffer, from the next segment when
    /// this one ends (a segment ends where the next begins).
    fn read(&mut self, n: usize) -> anyhow::Result<()> {
        let mut filled = self.buffer.len();
        self.buffer.resize(filled + n, 0);
        while filled < self.buffer.len() {
            let got = self
                .file
                .read(&mut self.buffer[filled..])
                .with_context(|| format!("cannot read input log {}", self.dir.display()))?;
            if got == 0 {
                let next = segment_path(&self.dir, self.cursor);
                self.file = File::open(&next).with_context(|| {
                    format!(
                        "input log {}: byte {} is logged but no segment holds it",
                        self.dir.display(),
                        self.cursor
                    )
                })?;
                continue;
            }
            filled += got;
            self.cursor += got as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(source: &str, first: u64, n: usize) -> Entry {
        Entry::Lines {
            source: source.into(),
            first,
            lines: (0..n)
                .map(|i| format!("line {}", first + i as u64))
                .collect(),
        }
    }

    fn no_senders() -> BTreeMap<String, u64> {
        BTreeMap::new()
    }

    #[test]
    fn frames_read_back_and_a_partial_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("trades");
        let (mut writer, scan) = open(&log, 1 << 20).unwrap();
        assert_eq!(scan.len, 0);
        let a = writer.append(&lines("a", 0, 3), &no_senders()).unwrap();
        let b = writer.append(&lines("a", 3, 2), &no_senders()).unwrap();
        writer.append(&lines("b", 0, 1), &no_senders()).unwrap();
        // A crash in the middle of the next frame.
        let partial = frame(&lines("b", 1, 50)).unwrap();
        writer
            .file
            .write_all(&partial[..partial.len() / 2])
            .unwrap();
        drop(writer);

        let (_, scan) = open(&log, 1 << 20).unwrap();
        assert_eq!(scan.sent["a"], 5);
        assert_eq!(scan.sent["b"], 1);
        assert_eq!(scan.cut, (partial.len() / 2) as u64);
        assert!(!scan.ended);
        let segment = segment_path(&log, 0);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), scan.len);

        let mut reader = LogReader::open(&log, a).unwrap();
        assert_eq!(reader.next(scan.len).unwrap(), Some(lines("a", 3, 2)));
        assert_eq!(reader.offset(), b);
        assert_eq!(reader.next(scan.len).unwrap(), Some(lines("b", 0, 1)));
        assert_eq!(reader.next(scan.len).unwrap(), None);
    }

    #[test]
    fn damage_before_intact_frames_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x");
        let (mut writer, _) = open(&log, 1 << 20).unwrap();
        writer.append(&lines("a", 0, 3), &no_senders()).unwrap();
        writer.append(&lines("a", 3, 3), &no_senders()).unwrap();
        drop(writer);
        let path = segment_path(&log, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = open(&log, 1 << 20).err().unwrap().to_string();
        assert!(err.contains("corrupted at byte 0"), "{err}");
    }

    #[test]
    fn reader_never_passes_the_durable_length() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x");
        let (mut writer, _) = open(&log, 1 << 20).unwrap();
        let first = writer.append(&lines("", 0, 2), &no_senders()).unwrap();
        let end = writer.append(&Entry::End, &no_senders()).unwrap();
        let mut reader = LogReader::open(&log, 0).unwrap();
        assert!(reader.next(first).unwrap().is_some());
        assert_eq!(reader.next(first).unwrap(), None);
        assert_eq!(reader.next(end).unwrap(), Some(Entry::End));
        assert_eq!(reader.offset(), end);
    }

    /// Appends frames of 10 lines from senders `a` and `b` in turn into
    /// small segments, tracking the lines per sender as the ingest does.
    fn write_segments(log: &Path, frames: u64) -> (LogWriter, Vec<u64>) {
        let (mut writer, _) = open(log, 600).unwrap();
        let mut sent = BTreeMap::new();
        let mut ends = Vec::new();
        for i in 0..frames {
            let source = if i % 2 == 0 { "a" } else { "b" };
            let first = sent.get(source).copied().unwrap_or(0);
            ends.push(writer.append(&lines(source, first, 10), &sent).unwrap());
            sent.insert(source.to_string(), first + 10);
        }
        (writer, ends)
    }

    #[test]
    fn segments_roll_and_read_back_as_one_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("trades");
        let (writer, ends) = write_segments(&log, 40);
        assert!(segments(&log).unwrap().len() > 3, "{:?}", segments(&log));
        let mut reader = LogReader::open(&log, 0).unwrap();
        let mut per_sender: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(entry) = reader.next(writer.len()).unwrap() {
            if let Entry::Lines {
                source,
                first,
                lines,
            } = entry
            {
                let next = per_sender.entry(source).or_default();
                assert_eq!(first, *next, "lines in order, none missing");
                *next += lines.len() as u64;
            }
        }
        assert_eq!(per_sender["a"], 200);
        assert_eq!(per_sender["b"], 200);
        assert_eq!(reader.offset(), *ends.last().unwrap());
        // From any frame's end, the rest reads on across segments.
        let mut reader = LogReader::open(&log, ends[17]).unwrap();
        let rest = std::iter::from_fn(|| reader.next(writer.len()).unwrap())
            .filter(|e| matches!(e, Entry::Lines { .. }))
            .count();
        assert_eq!(rest, 40 - 18);
    }

    #[test]
    fn a_trimmed_log_keeps_every_senders_position_and_refuses_reads_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("trades");
        let (mut writer, ends) = write_segments(&log, 40);
        let before = writer.bytes_on_disk();
        let removed = writer.trim(ends[30]).unwrap();
        assert!(removed > 0 && writer.bytes_on_disk() == before - removed);
        let start = segments(&log).unwrap()[0];
        assert!(start <= ends[30] && start > 0);
        drop(writer);
        let (writer, scan) = open(&log, 600).unwrap();
        assert_eq!((scan.start, scan.len), (start, *ends.last().unwrap()));
        assert_eq!(scan.sent["a"], 200);
        assert_eq!(scan.sent["b"], 200);
        // Reading on from a kept position finds the remaining 9 frames of lines
        // (a segment may begin with its sender positions, which readers skip).
        let mut reader = LogReader::open(&log, ends[30]).unwrap();
        let rest = std::iter::from_fn(|| reader.next(writer.len()).unwrap())
            .filter(|e| matches!(e, Entry::Lines { .. }))
            .count();
        assert_eq!(rest, 40 - 31);
        let err = LogReader::open(&log, 0).err().unwrap().to_string();
        assert!(err.contains("byte 0 was trimmed away"), "{err}");
    }

    #[test]
    fn a_missing_segment_in_the_middle_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("trades");
        write_segments(&log, 40);
        let bases = segments(&log).unwrap();
        std::fs::remove_file(segment_path(&log, bases[2])).unwrap();
        let err = open(&log, 600).err().unwrap().to_string();
        assert!(err.contains("a segment is missing"), "{err}");
        assert!(err.contains(&format!("{:020}.seg", bases[3])), "{err}");
    }
}
