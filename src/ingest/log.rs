//! The input log: the durable, checksummed record of every line received over
//! TCP, one file per stream (`trades.log`, `interactions.log`).
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
    /// Bytes of intact frames.
    pub len: u64,
    /// Lines logged per sender, so that a reconnecting sender skips them.
    pub sent: BTreeMap<String, u64>,
    /// The stream was ended.
    pub ended: bool,
    /// Bytes of a partial frame cut off the tail.
    pub cut: u64,
}

/// Opens (creating) the log at `path` for appending: checks every frame,
/// cuts a partial tail, and returns the file with what it holds.
pub fn open(path: &Path) -> anyhow::Result<(File, Scan)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open input log {}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read input log {}", path.display()))?;
    let mut scan = Scan::default();
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
                }
                at += size;
            }
            Decoded::Partial => break,
            // A crash can only leave a partial frame at the very end; bad bytes
            // with intact frames after them are damage.
            Decoded::Bad(why) if !has_frame_after(&bytes[at..]) => {
                tracing::warn!(
                    "input log {}: {why} at byte {at}, the last frame: cutting it off",
                    path.display()
                );
                break;
            }
            Decoded::Bad(why) => bail!(
                "input log {} is corrupted at byte {at} ({why}); frames follow, so this is \
                 not an interrupted write: restore the file or start afresh without --resume",
                path.display()
            ),
        }
    }
    scan.len = at as u64;
    scan.cut = (bytes.len() - at) as u64;
    if scan.cut > 0 {
        file.set_len(scan.len)
            .with_context(|| format!("cannot cut the tail of {}", path.display()))?;
        file.sync_all()?;
    }
    Ok((file, scan))
}

fn has_frame_after(bytes: &[u8]) -> bool {
    (1..bytes.len()).any(|i| matches!(decode(&bytes[i..]), Decoded::Frame(..)))
}

/// Appends a frame and makes it durable; returns the log's new length.
pub fn append(file: &mut File, entry: &Entry) -> anyhow::Result<u64> {
    file.write_all(&frame(entry)?)?;
    file.sync_data()?;
    Ok(file.stream_position()?)
}

/// Reads frames of a log from a byte offset, never past the durable length
/// it is given.
pub struct LogReader {
    path: PathBuf,
    file: File,
    /// Offset of the next frame.
    offset: u64,
    buffer: Vec<u8>,
}

impl LogReader {
    pub fn open(path: &Path, offset: u64) -> anyhow::Result<Self> {
        let mut file = File::open(path)
            .with_context(|| format!("cannot open input log {}", path.display()))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(LogReader {
            path: path.to_path_buf(),
            file,
            offset,
            buffer: Vec::new(),
        })
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
                    // The file's cursor is at the end of the buffer.
                    let unread = durable.saturating_sub(self.offset + self.buffer.len() as u64);
                    if unread == 0 {
                        if self.buffer.is_empty() {
                            return Ok(None);
                        }
                        // Appends are whole frames: the durable length never cuts one.
                        bail!(
                            "input log {}: a partial frame at byte {} before the durable length {durable}",
                            self.path.display(),
                            self.offset
                        );
                    }
                    let start = self.buffer.len();
                    self.buffer.resize(start + unread.min(1 << 20) as usize, 0);
                    self.file
                        .read_exact(&mut self.buffer[start..])
                        .with_context(|| {
                            format!("cannot read input log {}", self.path.display())
                        })?;
                }
                Decoded::Bad(why) => bail!(
                    "input log {} is corrupted at byte {}: {why}",
                    self.path.display(),
                    self.offset
                ),
            }
        }
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

    #[test]
    fn frames_read_back_and_a_partial_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trades.log");
        let (mut file, scan) = open(&path).unwrap();
        assert_eq!(scan.len, 0);
        let a = append(&mut file, &lines("a", 0, 3)).unwrap();
        let b = append(&mut file, &lines("a", 3, 2)).unwrap();
        append(&mut file, &lines("b", 0, 1)).unwrap();
        // A crash in the middle of the next frame.
        let partial = frame(&lines("b", 1, 50)).unwrap();
        file.write_all(&partial[..partial.len() / 2]).unwrap();
        drop(file);

        let (_, scan) = open(&path).unwrap();
        assert_eq!(scan.sent["a"], 5);
        assert_eq!(scan.sent["b"], 1);
        assert_eq!(scan.cut, (partial.len() / 2) as u64);
        assert!(!scan.ended);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), scan.len);

        let mut reader = LogReader::open(&path, a).unwrap();
        assert_eq!(reader.next(scan.len).unwrap(), Some(lines("a", 3, 2)));
        assert_eq!(reader.offset(), b);
        assert_eq!(reader.next(scan.len).unwrap(), Some(lines("b", 0, 1)));
        assert_eq!(reader.next(scan.len).unwrap(), None);
    }

    #[test]
    fn damage_before_intact_frames_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let (mut file, _) = open(&path).unwrap();
        append(&mut file, &lines("a", 0, 3)).unwrap();
        append(&mut file, &lines("a", 3, 3)).unwrap();
        drop(file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = open(&path).unwrap_err().to_string();
        assert!(err.contains("corrupted at byte 0"), "{err}");
    }

    #[test]
    fn reader_never_passes_the_durable_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let (mut file, _) = open(&path).unwrap();
        let first = append(&mut file, &lines("", 0, 2)).unwrap();
        let end = append(&mut file, &Entry::End).unwrap();
        let mut reader = LogReader::open(&path, 0).unwrap();
        assert!(reader.next(first).unwrap().is_some());
        assert_eq!(reader.next(first).unwrap(), None);
        assert_eq!(reader.next(end).unwrap(), Some(Entry::End));
        assert_eq!(reader.offset(), end);
    }
}
