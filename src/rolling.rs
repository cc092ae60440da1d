//! Rolling result files: a query's rows in `ID/part-NNNNN.csv` instead of
//! one `ID.csv` that grows for ever (`[output] roll_mb`, `roll_s`).
//!
//! A part is written as `part-NNNNN.csv.inprogress` and takes its final name
//! only once it is closed and a complete checkpoint holds everything it
//! has (with checkpoints: a part is closed at the first checkpoint after it
//! passed `roll_mb` or `roll_s`, and renamed when that checkpoint is
//! complete; without: closed and renamed as soon as it passes them). So a
//! finished part never changes again, and after a crash `--resume` removes
//! the parts begun after the checkpoint and cuts the checkpoint's own part
//! back to its length, exactly as for a single file.
//!
//! A checkpoint commits a rolled file as one number, its [`position`]: the
//! part's sequence number times 2^40 plus the bytes of that part, which
//! grows like a single file's length; the sinks that copy committed rows
//! (Kafka, databases) keep their progress in it, read the parts between two
//! positions ([`read_between`]) and hold back ([`hold`]) the retention
//! (`keep_parts`, `keep_s`) from removing a part they have not copied.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The suffix of a part that is still being written or awaits its checkpoint.
pub const IN_PROGRESS: &str = ".inprogress";

/// Bits of a [`position`] that count the bytes of its part.
const PART_BITS: u32 = 40;

/// When parts roll and how long finished ones are kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollPolicy {
    /// Roll once a part holds this many bytes.
    pub roll_bytes: Option<u64>,
    /// Roll once a part is this old.
    pub roll_after: Option<Duration>,
    /// Keep only the newest this many finished parts.
    pub keep_parts: Option<usize>,
    /// Remove finished parts older than this.
    pub keep_for: Option<Duration>,
    /// Roll only at checkpoints (a run with checkpoints: exactly once).
    pub at_checkpoints: bool,
}

/// The position of byte `len` of part `seq`: what a checkpoint commits.
pub fn position(seq: u64, len: u64) -> u64 {
    (seq << PART_BITS) | len
}

/// The part and byte of a [`position`].
pub fn split(position: u64) -> (u64, u64) {
    (position >> PART_BITS, position & ((1 << PART_BITS) - 1))
}

/// The folder that holds query file `name`'s parts (`ewma.csv` → `ewma/`).
pub fn folder_of(out: &Path, name: &str) -> PathBuf {
    out.join(name.strip_suffix(".csv").unwrap_or(name))
}

/// A part's path, in progress or finished.
pub fn part_path(dir: &Path, seq: u64, finished: bool) -> PathBuf {
    let name = format!("part-{seq:05}.csv");
    dir.join(if finished { name } else { name + IN_PROGRESS })
}

/// A part found in a folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub seq: u64,
    pub path: PathBuf,
    pub finished: bool,
}

/// The parts in `dir`, by sequence number (none if there is no folder).
pub fn parts(dir: &Path) -> std::io::Result<Vec<Part>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let (stem, finished) = match name.strip_suffix(IN_PROGRESS) {
            Some(stem) => (stem.to_string(), false),
            None => (name.clone(), true),
        };
        let seq = stem
            .strip_prefix("part-")
            .and_then(|s| s.strip_suffix(".csv"))
            .and_then(|s| s.parse().ok());
        if let Some(seq) = seq {
            found.push(Part {
                seq,
                path: entry.path(),
                finished,
            });
        }
    }
    found.sort_by_key(|p| p.seq);
    Ok(found)
}

/// The finished files of result file `name` in `out`: `name` itself, or
/// the finished parts of its folder in order; none if neither exists.
pub fn finished_files(out: &Path, name: &str) -> std::io::Result<Vec<PathBuf>> {
    let single = out.join(name);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Ok(parts(&folder_of(out, name))?
        .into_iter()
        .filter(|p| p.finished)
        .map(|p| p.path)
        .collect())
}

/// The rows of result file `name` in `out` as one CSV text: the single file,
/// or its finished parts under the first part's header; none if absent.
pub fn open_rows(out: &Path, name: &str) -> std::io::Result<Option<Box<dyn Read>>> {
    let files = finished_files(out, name)?;
    let mut readers: Vec<Box<dyn Read>> = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let mut file = std::io::BufReader::new(File::open(path)?);
        if i > 0 {
            std::io::BufRead::read_line(&mut file, &mut String::new())?;
        }
        readers.push(Box::new(file));
    }
    Ok(readers
        .into_iter()
        .reduce(|a, b| Box::new(a.chain(b)) as Box<dyn Read>))
}

/// The sinks copying committed rows, and the part each still needs, by folder.
static HOLDS: Mutex<BTreeMap<PathBuf, BTreeMap<String, u64>>> = Mutex::new(BTreeMap::new());

/// Notes that copier `who` still needs the parts of `dir` from `seq` on:
/// retention does not remove them.
pub fn hold(dir: &Path, who: &str, seq: u64) {
    HOLDS
        .lock()
        .expect("holds lock")
        .entry(dir.to_path_buf())
        .or_default()
        .insert(who.to_string(), seq);
}

/// Copier `who` is done: it holds nothing any more.
pub fn release(who: &str) {
    for holders in HOLDS.lock().expect("holds lock").values_mut() {
        holders.remove(who);
    }
}

/// The least part any copier of `dir` still needs.
fn held_from(dir: &Path) -> Option<u64> {
    let holds = HOLDS.lock().expect("holds lock");
    holds.get(dir).and_then(|h| h.values().min().copied())
}

/// Complete lines read from a rolled folder (see [`read_between`]).
pub struct Lines {
    pub bytes: Vec<u8>,
    /// Where each part's run of `bytes` starts: (index in `bytes`, position).
    pub starts: Vec<(usize, u64)>,
    /// The position reading stopped at.
    pub end: u64,
}

/// The complete lines of a rolled folder between two positions: each
/// part's rows after its header.
pub fn read_between(dir: &Path, from: u64, to: u64) -> anyhow::Result<Lines> {
    use anyhow::Context;
    let (first, _) = split(from);
    let (last, last_len) = split(to);
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    let mut end = from;
    let found = parts(dir)?;
    for seq in first..=last {
        let part = found.iter().find(|p| p.seq == seq).with_context(|| {
            format!(
                "{} has no part {seq} (removed by retention before it was copied?)",
                dir.display()
            )
        })?;
        let mut file = std::io::BufReader::new(open_part(dir, part)?);
        let mut header = String::new();
        std::io::BufRead::read_line(&mut file, &mut header)?;
        let offset = if seq == first { split(from).1 } else { 0 };
        let start = offset.max(header.len() as u64);
        // Parts before the last one are closed: read to their end.
        let stop = if seq == last { last_len } else { u64::MAX };
        let piece = whole_lines(file.get_mut(), start, stop)?;
        starts.push((bytes.len(), position(seq, start)));
        end = position(seq, start + piece.len() as u64);
        bytes.extend_from_slice(&piece);
    }
    Ok(Lines { bytes, starts, end })
}

/// Makes `dir` what a checkpoint at position `at` committed: the parts
/// before it finished, the ones after it removed, its own part in progress
/// and cut to its length. Returns that part's path.
pub fn cut_back(dir: &Path, at: u64) -> anyhow::Result<PathBuf> {
    let (seq, len) = split(at);
    let mut current = None;
    for part in parts(dir)? {
        if part.seq > seq {
            std::fs::remove_file(&part.path)?;
        } else if part.seq < seq && !part.finished {
            std::fs::rename(&part.path, part_path(dir, part.seq, true))?;
        } else if part.seq == seq {
            current = Some(part);
        }
    }
    let part = current.ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no part {seq}, which the checkpoint committed: the result files were \
             changed since; start afresh without --resume",
            dir.display()
        )
    })?;
    let path = part_path(dir, seq, false);
    if part.finished {
        std::fs::rename(&part.path, &path)?;
    }
    let file = std::fs::OpenOptions::new().write(true).open(&path)?;
    let now = file.metadata()?.len();
    anyhow::ensure!(
        now >= len,
        "{} has {now} bytes, fewer than the {len} the checkpoint committed: the result \
         files were changed since; start afresh without --resume",
        path.display()
    );
    file.set_len(len)?;
    Ok(path)
}

/// Takes the committed parts of other processes' rolled folders (`others`:
/// folder and committed position) into `dir` after its own committed rows
/// (`own`, none: `dir` starts afresh), each as a finished part of its own,
/// and begins a new part. Returns its position, which the resumed run
/// reopens. Running it again from the same folders gives the same parts.
pub fn adopt(dir: &Path, own: Option<u64>, others: &[(PathBuf, u64)]) -> anyhow::Result<u64> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut header = Vec::new();
    let mut next = match own {
        Some(at) => {
            let path = cut_back(dir, at)?;
            let mut reader = std::io::BufReader::new(File::open(&path)?);
            std::io::BufRead::read_until(&mut reader, b'\n', &mut header)?;
            let (seq, len) = split(at);
            if len > header.len() as u64 {
                std::fs::rename(&path, part_path(dir, seq, true))?;
                seq + 1
            } else {
                std::fs::remove_file(&path)?;
                seq
            }
        }
        None => {
            for part in parts(dir)? {
                std::fs::remove_file(&part.path)?;
            }
            0
        }
    };
    for (folder, at) in others {
        let (last, last_len) = split(*at);
        for part in parts(folder)?.into_iter().filter(|p| p.seq <= last) {
            let mut reader = std::io::BufReader::new(open_part(folder, &part)?);
            let mut their_header = Vec::new();
            std::io::BufRead::read_until(&mut reader, b'\n', &mut their_header)?;
            let limit = if part.seq == last { last_len } else { u64::MAX };
            let mut rows = reader.take(limit.saturating_sub(their_header.len() as u64));
            let mut copy = File::create(part_path(dir, next, true))?;
            copy.write_all(&their_header)?;
            let copied = std::io::copy(&mut rows, &mut copy)?;
            if copied == 0 {
                std::fs::remove_file(part_path(dir, next, true))?;
                continue;
            }
            header = their_header;
            next += 1;
        }
    }
    anyhow::ensure!(
        !header.is_empty(),
        "{}: no committed part to take the header from",
        dir.display()
    );
    let mut current = File::create(part_path(dir, next, false))?;
    current.write_all(&header)?;
    current.sync_all()?;
    Ok(position(next, header.len() as u64))
}

/// Opens a part found by [`parts`], which may have been finished (renamed)
/// since it was listed.
pub fn open_part(dir: &Path, part: &Part) -> anyhow::Result<File> {
    use anyhow::Context;
    match File::open(&part.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !part.finished => {
            let finished = part_path(dir, part.seq, true);
            File::open(&finished).with_context(|| format!("cannot read {}", finished.display()))
        }
        opened => opened.with_context(|| format!("cannot read {}", part.path.display())),
    }
}

/// The complete lines of `file` from byte `start` up to byte `stop` (or its end).
pub fn whole_lines(file: &mut File, start: u64, stop: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if stop > start {
        file.seek(SeekFrom::Start(start))?;
        file.take(stop - start).read_to_end(&mut bytes)?;
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(whole);
    }
    Ok(bytes)
}

/// The file a rolling [`crate::sinks::CsvSink`] writes: its current part.
pub struct RolledFile {
    dir: PathBuf,
    header: Vec<u8>,
    policy: RollPolicy,
    seq: u64,
    writer: BufWriter<File>,
    /// Bytes in the current part.
    len: u64,
    opened: Instant,
    /// Closed parts waiting for a complete checkpoint to be renamed.
    closed: Vec<u64>,
}

impl RolledFile {
    /// Starts `dir` afresh: earlier parts are removed, part 0 begins.
    pub fn create(dir: &Path, header: &[u8], policy: RollPolicy) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for part in parts(dir)? {
            std::fs::remove_file(&part.path)?;
        }
        let writer = Self::begin(dir, 0, header)?;
        let len = header.len() as u64;
        Ok(Self::writing(dir, header, policy, 0, writer, len))
    }

    /// Writing part `seq` through `writer`, which holds `len` bytes of it.
    fn writing(
        dir: &Path,
        header: &[u8],
        policy: RollPolicy,
        seq: u64,
        writer: BufWriter<File>,
        len: u64,
    ) -> Self {
        RolledFile {
            dir: dir.to_path_buf(),
            header: header.to_vec(),
            policy,
            seq,
            writer,
            len,
            opened: Instant::now(),
            closed: Vec::new(),
        }
    }

    /// Reopens `dir` at a checkpoint's `position`: the parts before it are
    /// finished, the ones after it removed, its own part cut to its length.
    pub fn resume(dir: &Path, header: &[u8], policy: RollPolicy, at: u64) -> anyhow::Result<Self> {
        let path = cut_back(dir, at)?;
        let (seq, len) = split(at);
        let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.seek(SeekFrom::Start(len))?;
        let writer = BufWriter::with_capacity(1 << 16, file);
        Ok(Self::writing(dir, header, policy, seq, writer, len))
    }

    fn begin(dir: &Path, seq: u64, header: &[u8]) -> std::io::Result<BufWriter<File>> {
        let mut writer =
            BufWriter::with_capacity(1 << 16, File::create(part_path(dir, seq, false))?);
        writer.write_all(header)?;
        Ok(writer)
    }

    /// The folder of the parts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the current part holds rows and passed a roll limit.
    fn due(&self) -> bool {
        self.len > self.header.len() as u64
            && (self.policy.roll_bytes.is_some_and(|b| self.len >= b)
                || self
                    .policy
                    .roll_after
                    .is_some_and(|d| self.opened.elapsed() >= d))
    }

    /// Closes the current part and begins the next; a closed part is
    /// finished at once without checkpoints, else when one completes.
    fn roll(&mut self) -> std::io::Result<()> {
        self.writer.flush()?;
        self.seq += 1;
        let next = Self::begin(&self.dir, self.seq, &self.header)?;
        let closed = std::mem::replace(&mut self.writer, next);
        drop(closed);
        self.len = self.header.len() as u64;
        self.opened = Instant::now();
        self.closed.push(self.seq - 1);
        if !self.policy.at_checkpoints {
            self.finish_closed()?;
        }
        Ok(())
    }

    /// Without checkpoints, a part that passed its limits rolls as soon as
    /// a whole block was written (or at a flush).
    pub fn roll_if_due(&mut self) -> std::io::Result<()> {
        if !self.policy.at_checkpoints && self.due() {
            self.roll()?;
        }
        Ok(())
    }

    /// At a checkpoint's commit: rolls if due, then returns the position
    /// that the checkpoint commits.
    pub fn commit_position(&mut self) -> std::io::Result<u64> {
        self.writer.flush()?;
        if self.due() {
            self.roll()?;
            self.writer.flush()?;
        }
        Ok(position(self.seq, self.len))
    }

    /// A checkpoint is complete: the parts closed before it are finished.
    pub fn finish_closed(&mut self) -> std::io::Result<()> {
        for seq in std::mem::take(&mut self.closed) {
            std::fs::rename(
                part_path(&self.dir, seq, false),
                part_path(&self.dir, seq, true),
            )?;
        }
        self.prune()
    }

    /// The run ended: the current part is finished too.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.writer.flush()?;
        self.finish_closed()?;
        let path = part_path(&self.dir, self.seq, false);
        if self.seq > 0 && self.len == self.header.len() as u64 {
            // A part begun at the last checkpoint that got no rows.
            std::fs::remove_file(path)?;
        } else if path.exists() {
            std::fs::rename(path, part_path(&self.dir, self.seq, true))?;
        }
        Ok(())
    }

    /// Removes the finished parts retention lets go and no copier holds.
    pub fn prune(&self) -> std::io::Result<()> {
        let (count, age) = (self.policy.keep_parts, self.policy.keep_for);
        if count.is_none() && age.is_none() {
            return Ok(());
        }
        let held = held_from(&self.dir);
        let finished: Vec<Part> = parts(&self.dir)?
            .into_iter()
            .filter(|p| p.finished && p.seq < self.seq)
            .collect();
        let now = SystemTime::now();
        for (newer, part) in finished.iter().rev().enumerate() {
            let too_many = count.is_some_and(|k| newer >= k);
            let too_old = age.is_some_and(|d| {
                let modified = std::fs::metadata(&part.path).and_then(|m| m.modified());
                modified.is_ok_and(|m| now.duration_since(m).unwrap_or_default() >= d)
            });
            let needed = held.is_some_and(|h| part.seq >= h);
            if (too_many || too_old) && !needed {
                std::fs::remove_file(&part.path)?;
            }
        }
        Ok(())
    }
}

impl Write for RolledFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(roll_bytes: u64, at_checkpoints: bool) -> RollPolicy {
        RollPolicy {
            roll_bytes: Some(roll_bytes),
            at_checkpoints,
            ..RollPolicy::default()
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        parts(dir)
            .unwrap()
            .iter()
            .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn positions_order_like_lengths() {
        assert_eq!(split(position(3, 17)), (3, 17));
        assert!(position(2, 1 << 30) < position(3, 0));
    }

    #[test]
    fn with_checkpoints_a_part_rolls_at_a_commit_and_is_finished_when_it_completes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("q");
        let mut f = RolledFile::create(&d, b"a\n", policy(6, true)).unwrap();
        f.write_all(b"1\n2\n3\n").unwrap();
        assert_eq!(names(&d), ["part-00000.csv.inprogress"]);
        let at = f.commit_position().unwrap();
        assert_eq!(at, position(1, 2));
        assert_eq!(
            names(&d),
            ["part-00000.csv.inprogress", "part-00001.csv.inprogress"]
        );
        f.finish_closed().unwrap();
        assert_eq!(names(&d), ["part-00000.csv", "part-00001.csv.inprogress"]);
        f.write_all(b"4\n").unwrap();
        f.flush().unwrap();
        let lines = read_between(&d, position(0, 4), position(1, 4)).unwrap();
        assert_eq!(lines.bytes, b"2\n3\n4\n");
        assert_eq!(lines.starts, [(0, position(0, 4)), (4, position(1, 2))]);
        assert_eq!(lines.end, position(1, 4));
    }

    #[test]
    fn a_resume_removes_later_parts_and_cuts_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("q");
        let mut f = RolledFile::create(&d, b"a\n", policy(4, false)).unwrap();
        f.write_all(b"1\n").unwrap();
        f.write_all(b"2\n").unwrap();
        f.roll_if_due().unwrap();
        f.write_all(b"3\n4\n").unwrap();
        f.roll_if_due().unwrap();
        f.write_all(b"5\n").unwrap();
        f.flush().unwrap();
        assert_eq!(names(&d).len(), 3);
        let mut r = RolledFile::resume(&d, b"a\n", policy(4, false), position(1, 4)).unwrap();
        assert_eq!(names(&d), ["part-00000.csv", "part-00001.csv.inprogress"]);
        r.write_all(b"9\n").unwrap();
        r.finish().unwrap();
        let mut text = String::new();
        open_rows(dir.path(), "q.csv")
            .unwrap()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\n1\n2\n3\n9\n");
    }

    #[test]
    fn retention_keeps_the_newest_parts_and_what_a_copier_holds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("q");
        let mut p = policy(2, false);
        p.keep_parts = Some(1);
        let mut f = RolledFile::create(&d, b"a\n", p).unwrap();
        hold(&d, "test", 1);
        for row in [b"1\n", b"2\n", b"3\n", b"4\n"] {
            f.write_all(row).unwrap();
            f.roll_if_due().unwrap();
        }
        // Parts 0..=3 finished, 4 in progress: 0 goes; 1 and 2 are held.
        assert_eq!(
            names(&d),
            [
                "part-00001.csv",
                "part-00002.csv",
                "part-00003.csv",
                "part-00004.csv.inprogress"
            ]
        );
        hold(&d, "test", 4);
        f.write_all(b"5\n").unwrap();
        f.roll_if_due().unwrap();
        assert_eq!(names(&d), ["part-00004.csv", "part-00005.csv.inprogress"]);
    }
}
