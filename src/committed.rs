//! The committed rows of a process's result files, for the sinks that copy
//! them elsewhere (Kafka, SQLite, PostgreSQL).
//!
//! A row is committed once a complete checkpoint recorded the length of its
//! file past it: a resumed run cuts the files back to those lengths, so the
//! bytes below them never change again. Such sinks therefore follow the
//! files, not the dataflow: after each checkpoint they copy the bytes between
//! what they copied before and the checkpoint's lengths, which makes their
//! output exactly the files' (without checkpoints: whatever complete lines
//! the files hold, as they grow, and everything at the end).

use crate::checkpoint::store::{read_file, Layout, ProcessFile};
use crate::rolling;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A point the files were committed to: the checkpoint's epoch (none
/// without checkpoints) and each file's length.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    pub epoch: Option<u64>,
    pub lengths: BTreeMap<String, u64>,
}

/// Bytes of one result file: its columns and its complete lines from a
/// start at or past the header up to `end`.
pub struct Block {
    pub columns: Vec<String>,
    /// Where each run of `bytes` starts: (index in `bytes`, offset in the
    /// file, or position in a rolled folder). One run for a single file.
    pub starts: Vec<(usize, u64)>,
    pub end: u64,
    pub bytes: Vec<u8>,
}

impl Block {
    /// The rows with their byte offsets in the file (positions, rolled).
    pub fn rows(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        let mut index = 0;
        let mut run = 0;
        self.bytes
            .split_inclusive(|b| *b == b'\n')
            .filter_map(move |line| {
                while run + 1 < self.starts.len() && self.starts[run + 1].0 <= index {
                    run += 1;
                }
                let (run_index, run_offset) = self.starts[run];
                let at = run_offset + (index - run_index) as u64;
                index += line.len();
                let row = std::str::from_utf8(line).ok()?.trim_end();
                (!row.is_empty()).then_some((at, row))
            })
    }
}

/// A name for each copier, for [`rolling::hold`].
static COPIERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Follows the result files of one process (see the module doc).
pub struct CommittedFiles {
    out: PathBuf,
    checkpoints: Option<PathBuf>,
    process: usize,
    /// (query id, file name) of the files followed.
    pub files: Vec<(String, String)>,
    last_epoch: Option<u64>,
    /// This copier's name among the holders of rolled folders.
    who: String,
}

impl CommittedFiles {
    /// Follows the files of `queries` (those `only` names, when given) in `out`.
    pub fn new(
        out: &Path,
        checkpoints: Option<&Path>,
        process: usize,
        queries: &[String],
        only: Option<&[String]>,
    ) -> Self {
        let files = queries
            .iter()
            .filter(|q| only.is_none_or(|only| only.contains(q)))
            .map(|q| (q.clone(), crate::queries::file_name(q)))
            .collect::<Vec<_>>();
        let who = format!(
            "copier-{}",
            COPIERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        // Until it reads its progress, a copier may need every part.
        for (_, name) in &files {
            rolling::hold(&rolling::folder_of(out, name), &who, 0);
        }
        CommittedFiles {
            out: out.to_path_buf(),
            checkpoints: checkpoints.map(Path::to_path_buf),
            process,
            files,
            last_epoch: None,
            who,
        }
    }

    /// Whether commits follow checkpoints (else the files as they grow).
    pub fn checkpointed(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// The lengths of the files in the checkpoint a resumed run starts from
    /// (none without one).
    pub fn resumed_lengths(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let Some(dir) = &self.checkpoints else {
            return Ok(BTreeMap::new());
        };
        let Some(epoch) = crate::checkpoint::last_complete_epoch(dir, self.process) else {
            return Ok(BTreeMap::new());
        };
        Ok(self.checkpoint_lengths(dir, epoch)?.lengths)
    }

    fn checkpoint_lengths(&self, dir: &Path, epoch: u64) -> anyhow::Result<Commit> {
        let layout = Layout {
            dir: dir.to_path_buf(),
        };
        let file: ProcessFile = read_file(&layout.process_file(epoch, self.process))?;
        Ok(Commit {
            epoch: Some(epoch),
            lengths: file.sinks,
        })
    }

    /// The newest commit not returned before: the newest complete
    /// checkpoint's (with checkpoints, until `at_end`), else the files'
    /// present lengths (cut to whole lines by [`CommittedFiles::read`]).
    pub fn next(&mut self, at_end: bool) -> anyhow::Result<Option<Commit>> {
        if let (Some(dir), false) = (&self.checkpoints, at_end) {
            let Some(epoch) = crate::checkpoint::last_complete_epoch(dir, self.process) else {
                return Ok(None);
            };
            if self.last_epoch == Some(epoch) {
                return Ok(None);
            }
            self.last_epoch = Some(epoch);
            return self.checkpoint_lengths(dir, epoch).map(Some);
        }
        let mut lengths = BTreeMap::new();
        for (_, name) in &self.files {
            lengths.insert(name.clone(), self.present_length(name)?);
        }
        Ok(Some(Commit {
            epoch: self.last_epoch,
            lengths,
        }))
    }

    /// The length of file `name` now, or the position of the end of its
    /// newest part, rolled.
    fn present_length(&self, name: &str) -> anyhow::Result<u64> {
        let path = self.out.join(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            return Ok(meta.len());
        }
        let folder = rolling::folder_of(&self.out, name);
        let newest = rolling::parts(&folder)?.pop().with_context(|| {
            format!(
                "cannot read {} (nor parts in {})",
                path.display(),
                folder.display()
            )
        })?;
        let len = rolling::open_part(&folder, &newest)?.metadata()?.len();
        Ok(rolling::position(newest.seq, len))
    }

    /// Retention may remove the parts before `positions` (one for each
    /// file, 0 when missing): what the sink's target holds for good.
    pub fn hold_at(&self, positions: &BTreeMap<String, u64>) {
        for (_, name) in &self.files {
            let at = positions.get(name).copied().unwrap_or(0);
            let folder = rolling::folder_of(&self.out, name);
            rolling::hold(&folder, &self.who, rolling::split(at).0);
        }
    }

    /// The complete lines of file `name` from `from` (at least past the
    /// header) up to `to`.
    pub fn read(&self, name: &str, from: u64, to: u64) -> anyhow::Result<Block> {
        let path = self.out.join(name);
        let folder = rolling::folder_of(&self.out, name);
        if !path.is_file() && folder.is_dir() {
            return self.read_rolled(&folder, from, to);
        }
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (columns, header_len) = header_of(&mut file)?;
        let start = from.max(header_len);
        let bytes = rolling::whole_lines(&mut file, start, to)?;
        Ok(Block {
            columns,
            starts: vec![(0, start)],
            end: start + bytes.len() as u64,
            bytes,
        })
    }

    /// [`CommittedFiles::read`] of a rolled folder between two positions.
    fn read_rolled(&self, folder: &Path, from: u64, to: u64) -> anyhow::Result<Block> {
        // The header from the first part read (older ones may be gone).
        let first = rolling::parts(folder)?
            .into_iter()
            .find(|p| p.seq >= rolling::split(from).0)
            .with_context(|| format!("{} holds no parts", folder.display()))?;
        let (columns, _) = header_of(&mut rolling::open_part(folder, &first)?)?;
        let lines = rolling::read_between(folder, from, to.max(from))?;
        Ok(Block {
            columns,
            starts: lines.starts,
            end: lines.end,
            bytes: lines.bytes,
        })
    }
}

/// The columns of a result file's header line, and the line's length.
fn header_of(file: &mut std::fs::File) -> anyhow::Result<(Vec<String>, u64)> {
    let mut header = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut header)?;
    let columns = header.trim_end().split(',').map(str::to_string).collect();
    Ok((columns, header.len() as u64))
}

impl Drop for CommittedFiles {
    /// A copier that is done holds back no retention.
    fn drop(&mut self) {
        rolling::release(&self.who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_lines_past_the_header_with_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("q.csv"), "a,b\n1,2\n3,4\n5,").unwrap();
        let files = CommittedFiles::new(dir.path(), None, 0, &["q".to_string()], None);
        let block = files.read("q.csv", 0, 100).unwrap();
        assert_eq!(block.columns, ["a", "b"]);
        assert_eq!((block.starts.clone(), block.end), (vec![(0, 4)], 12));
        let rows: Vec<(u64, &str)> = block.rows().collect();
        assert_eq!(rows, [(4, "1,2"), (8, "3,4")]);
        let rest = files.read("q.csv", 8, 100).unwrap();
        assert_eq!(rest.rows().collect::<Vec<_>>(), [(8, "3,4")]);
        assert!(files.read("q.csv", 12, 100).unwrap().bytes.is_empty());
    }

    #[test]
    fn without_checkpoints_every_call_is_a_commit_of_the_present_lengths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("q.csv"), "a\n1\n").unwrap();
        let mut files = CommittedFiles::new(dir.path(), None, 0, &["q".to_string()], None);
        let commit = files.next(false).unwrap().unwrap();
        assert_eq!(commit.epoch, None);
        assert_eq!(commit.lengths["q.csv"], 4);
    }
}
