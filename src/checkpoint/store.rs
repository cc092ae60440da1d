//! Checkpoint files on disk: written atomically with a checksum, found again,
//! verified and pruned.
//!
//! Layout of a checkpoint folder:
//!
//! ```text
//! DIR/manifest-p0                    last complete epoch, as process 0 saw it
//! DIR/epoch-00001700000060000/w0     worker 0's operator and source state
//! DIR/epoch-00001700000060000/w1     ...
//! DIR/epoch-00001700000060000/p0     process 0's sink lengths and counters
//! ```
//!
//! Every file is `EDDYCKPT`, a format version, the payload length, the
//! payload (bincode) and its CRC-32. It is written to a temporary name,
//! fsynced, renamed into place and its folder fsynced, so a file is either
//! whole or absent; a file that is torn anyway (a bad disk, a copy cut short)
//! fails its checksum and its epoch is not used.

use crate::rescale::layout::RunLayout;
use crate::rescale::parts::SavedParts;
use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EDDYCKPT";
/// 2: states in key groups, the layout and result folder recorded (rescaling).
const VERSION: u32 = 2;
/// Complete epochs kept: the newest, and the one before in case the newest is damaged.
pub const KEPT: usize = 2;

/// What a worker saves at an epoch: its operators' states (in key groups)
/// and its feeds' positions and held records.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct WorkerFile {
    pub epoch: u64,
    pub worker: usize,
    pub fingerprint: String,
    /// The layout of the run that wrote it.
    pub layout: RunLayout,
    /// Operator states by name.
    pub states: BTreeMap<String, SavedParts>,
    /// Feed states by stream (`feed/trades`, ...).
    pub feeds: BTreeMap<String, Vec<u8>>,
    /// The event time the run (its first start) began at.
    pub start_event_ms: u64,
}

/// What a process saves at an epoch: the committed length of each result file
/// and the counters of its reports.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct ProcessFile {
    pub epoch: u64,
    pub process: usize,
    pub fingerprint: String,
    /// The layout of the run that wrote it.
    pub layout: RunLayout,
    /// The process's result folder (absolute), when it writes one.
    pub out_dir: Option<PathBuf>,
    /// Result file name -> bytes committed.
    pub sinks: BTreeMap<String, u64>,
    /// Named counters (records per stream, rows per query).
    pub counters: BTreeMap<String, u64>,
}

/// The last epoch every worker of every process completed.
#[derive(Serialize, Deserialize, Debug)]
pub struct Manifest {
    pub epoch: u64,
    /// The pipeline the checkpoint belongs to (see `Layout::fingerprint`).
    pub fingerprint: String,
}

/// Where the files of one checkpoint folder go.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn epoch_dir(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("epoch-{epoch:020}"))
    }
    pub fn worker_file(&self, epoch: u64, worker: usize) -> PathBuf {
        self.epoch_dir(epoch).join(format!("w{worker}"))
    }
    pub fn process_file(&self, epoch: u64, process: usize) -> PathBuf {
        self.epoch_dir(epoch).join(format!("p{process}"))
    }
    pub fn manifest(&self, process: usize) -> PathBuf {
        self.dir.join(format!("manifest-p{process}"))
    }

    /// Every process's manifest in the folder (of this layout or an older one).
    pub fn manifests(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("manifest-p"))
                    .is_some_and(|p| p.parse::<usize>().is_ok())
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }

    /// Epochs with a folder, newest first.
    pub fn epochs(&self) -> Vec<u64> {
        let mut epochs: Vec<u64> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_prefix("epoch-")?.parse().ok()
            })
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        epochs
    }

    /// Removes this process's files of epochs older than the `KEPT` newest
    /// complete ones, and their folders once empty (other processes may share
    /// them); process 0 also removes what workers and processes beyond
    /// `layout` left there (a larger layout before a rescale).
    pub fn prune(
        &self,
        newest_complete: u64,
        process: usize,
        workers: &[usize],
        layout: &RunLayout,
    ) {
        let complete: Vec<u64> = self
            .epochs()
            .into_iter()
            .filter(|e| *e <= newest_complete)
            .collect();
        for &old in complete.iter().skip(KEPT) {
            let _ = fs::remove_file(self.process_file(old, process));
            for &w in workers {
                let _ = fs::remove_file(self.worker_file(old, w));
            }
            if process == 0 {
                self.remove_beyond(old, layout);
            }
            let _ = fs::remove_dir(self.epoch_dir(old));
        }
    }
}

impl Layout {
    /// Removes the files of epoch `epoch` written by workers or processes
    /// that `layout` does not have.
    fn remove_beyond(&self, epoch: u64, layout: &RunLayout) {
        let entries = fs::read_dir(self.epoch_dir(epoch)).into_iter().flatten();
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let beyond = match (name.strip_prefix('w'), name.strip_prefix('p')) {
                (Some(w), _) => w.parse::<usize>().is_ok_and(|w| w >= layout.peers()),
                (_, Some(p)) => p.parse::<usize>().is_ok_and(|p| p >= layout.processes),
                _ => false,
            };
            if beyond {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Writes `value` to `path` atomically, with a checksum; returns the bytes written. `crash` is called
/// halfway through writing the temporary file (the fault-injection hook of the kill tests).
pub fn write_file<T: Serialize>(
    path: &Path,
    value: &T,
    crash: impl FnOnce(),
) -> anyhow::Result<u64> {
    let payload = bincode::serialize(value)?;
    let mut bytes = Vec::with_capacity(payload.len() + 24);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let dir = path.parent().context("a checkpoint file has a folder")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = File::create(&tmp).and_then(|mut f| {
        let half = bytes.len() / 2;
        f.write_all(&bytes[..half])?;
        crash();
        f.write_all(&bytes[half..])?;
        f.sync_all()
    });
    if let Err(e) = written {
        // A full disk, say: the partial file goes, and the epoch stays
        // incomplete (a resume takes the one before).
        let _ = fs::remove_file(&tmp);
        return Err(anyhow::anyhow!("cannot write {}: {e}", path.display()));
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync folder {}", dir.display()))?;
    Ok(bytes.len() as u64)
}

/// Reads a file written by [`write_file`], checking its frame and checksum.
pub fn read_file<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_file(&bytes, &path.display().to_string())
}

/// Decodes the bytes of a checkpoint file named `shown` (in every error):
/// its frame, format version, length and checksum are checked first.
pub fn decode_file<T: DeserializeOwned>(bytes: &[u8], shown: &str) -> anyhow::Result<T> {
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        bail!("{shown} is not an eddy checkpoint file (or is truncated)");
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into()?);
    if version != VERSION {
        bail!("{shown} has checkpoint format {version}; this eddy reads format {VERSION}");
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into()?) as usize;
    if bytes.len() != 24 + len {
        bail!(
            "{shown} is truncated or padded: {} bytes, its header says {}",
            bytes.len(),
            24 + len
        );
    }
    let payload = &bytes[20..20 + len];
    let stored = u32::from_le_bytes(bytes[20 + len..].try_into()?);
    if crc32fast::hash(payload) != stored {
        bail!("{shown} fails its checksum: it is corrupted");
    }
    bincode::deserialize(payload).with_context(|| format!("{shown} does not decode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_reads_back_and_any_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let value = ProcessFile {
            epoch: 5,
            sinks: [("bars_1s.csv".to_string(), 1234)].into(),
            ..ProcessFile::default()
        };
        write_file(&path, &value, || {}).unwrap();
        let back: ProcessFile = read_file(&path).unwrap();
        assert_eq!(back.sinks, value.sinks);

        let good = fs::read(&path).unwrap();
        // Every single flipped byte and every truncation is refused.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            assert!(read_file::<ProcessFile>(&path).is_err(), "flip at {i}");
            fs::write(&path, &good[..i]).unwrap();
            assert!(read_file::<ProcessFile>(&path).is_err(), "cut at {i}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_complete_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            dir: dir.path().to_path_buf(),
        };
        for e in [10, 20, 30, 40] {
            write_file(&layout.worker_file(e, 0), &WorkerFile::default(), || {}).unwrap();
            write_file(&layout.process_file(e, 0), &ProcessFile::default(), || {}).unwrap();
        }
        // 40 is being written, 30 is the newest complete one.
        layout.prune(30, 0, &[0], &RunLayout::default());
        assert_eq!(layout.epochs(), vec![40, 30, 20]);
    }
}
