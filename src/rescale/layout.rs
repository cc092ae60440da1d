//! The layout a checkpoint was written with, and what a run with another
//! layout takes over from it.
//!
//! Rules, for a run of `P` processes resuming from a checkpoint of `P'`:
//! - keyed state goes to the worker that owns its key group now
//!   (`parts.rs`); unkeyed state follows the rule of its type;
//! - source positions are dealt out per source (a replay's remaining pieces
//!   of the file, in file order, round robin; see each source's `rescale`);
//!   records a worker held back at the cut go to new worker `w % W`;
//! - process `p` takes over the result files, counters and sink progress of
//!   the old processes `q` with `q % P == p` ([`RunLayout::adopted`]): rows
//!   committed before the checkpoint are copied once into its own files
//!   ([`adopt_results`]), so the new layout's folders hold the whole run.

use super::groups::KeyGroups;
use crate::rolling;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How a run is laid out: what a checkpoint records of the run that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLayout {
    pub processes: usize,
    /// Workers per process.
    pub workers: usize,
    pub key_groups: KeyGroups,
}

impl Default for RunLayout {
    fn default() -> Self {
        RunLayout {
            processes: 1,
            workers: 1,
            key_groups: KeyGroups::default(),
        }
    }
}

impl RunLayout {
    /// Workers over every process.
    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }

    /// `2 processes × 3 workers`.
    pub fn describe(&self) -> String {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "{} process{} × {} worker{}",
            self.processes,
            if self.processes == 1 { "" } else { "es" },
            self.workers,
            s(self.workers)
        )
    }

    /// The old processes (of `old`) whose results, counters and sink
    /// progress process `process` of this layout takes over.
    pub fn adopted(&self, old: &RunLayout, process: usize) -> Vec<usize> {
        (0..old.processes)
            .filter(|q| q % self.processes == process)
            .collect()
    }

    /// Whether a run of this layout can resume from a checkpoint of `old`
    /// (one line naming what cannot change otherwise).
    pub fn can_resume_from(&self, old: &RunLayout) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.key_groups == old.key_groups,
            "the checkpoint has {} key groups and this run {}: key_groups cannot change \
             once a checkpoint was taken",
            old.key_groups.count(),
            self.key_groups.count()
        );
        anyhow::ensure!(
            self.peers() <= self.key_groups.count() as usize,
            "{} workers in all but only {} key groups: raise [engine] key_groups (before the first checkpoint)",
            self.peers(),
            self.key_groups.count()
        );
        Ok(())
    }
}

/// The items of `items` that worker `index` of `peers` takes: every
/// `peers`th, from its index.
pub fn deal<T>(items: Vec<T>, index: usize, peers: usize) -> Vec<T> {
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, item)| item)
        .collect()
}

/// An old process's committed result files.
#[derive(Clone, Debug)]
pub struct CommittedFolder {
    /// Its result folder.
    pub dir: PathBuf,
    /// File name → bytes committed.
    pub lengths: BTreeMap<String, u64>,
}

/// Makes the result files of `out` hold exactly the committed rows of the
/// `adopted` old folders, in their order, under one header each: a folder
/// that is `out` itself is cut back to its length in place, the others'
/// rows (after their header) are appended. Returns the new committed
/// lengths. Running it again from the same folders gives the same files, so
/// a crash while adopting is harmless.
pub fn adopt_results(
    out: &Path,
    adopted: &[CommittedFolder],
) -> anyhow::Result<BTreeMap<String, u64>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let same = |dir: &Path| same_folder(dir, out);
    let names: std::collections::BTreeSet<&String> =
        adopted.iter().flat_map(|f| f.lengths.keys()).collect();
    let mut lengths = BTreeMap::new();
    for name in names {
        if adopted
            .iter()
            .any(|f| rolling::folder_of(&f.dir, name).is_dir())
        {
            lengths.insert(name.clone(), adopt_rolled(out, name, adopted)?);
            continue;
        }
        let path = out.join(name);
        let own = adopted.iter().find(|f| same(&f.dir));
        let own_len = own.and_then(|f| f.lengths.get(name)).copied();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {} to adopt rows", path.display()))?;
        let mut len = match own_len {
            Some(l) => {
                let now = file.metadata()?.len();
                anyhow::ensure!(
                    now >= l,
                    "{} has {now} bytes, fewer than the {l} the checkpoint committed",
                    path.display()
                );
                l
            }
            None => 0,
        };
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        for folder in adopted.iter().filter(|f| !same(&f.dir)) {
            let Some(&committed) = folder.lengths.get(name) else {
                continue;
            };
            let from = folder.dir.join(name);
            let source = std::fs::File::open(&from).with_context(|| {
                format!(
                    "cannot read {} to take over its committed rows (a rescaled run needs \
                     the result folders of the processes it replaces)",
                    from.display()
                )
            })?;
            let mut reader = BufReader::new(source.take(committed));
            // The header line goes once, at the top.
            let mut header = Vec::new();
            reader.read_until(b'\n', &mut header)?;
            if len == 0 {
                file.write_all(&header)?;
                len += header.len() as u64;
            }
            len += std::io::copy(&mut reader, &mut file)?;
        }
        file.sync_all()?;
        lengths.insert(name.clone(), len);
    }
    Ok(lengths)
}

/// [`adopt_results`] of a rolled query folder: its committed position
/// in `out` (see [`rolling::adopt`]).
fn adopt_rolled(out: &Path, name: &str, adopted: &[CommittedFolder]) -> anyhow::Result<u64> {
    let own = adopted.iter().find(|f| same_folder(&f.dir, out));
    let own_at = own.and_then(|f| f.lengths.get(name)).copied();
    let others: Vec<(PathBuf, u64)> = adopted
        .iter()
        .filter(|f| !same_folder(&f.dir, out))
        .filter_map(|f| Some((rolling::folder_of(&f.dir, name), *f.lengths.get(name)?)))
        .collect();
    rolling::adopt(&rolling::folder_of(out, name), own_at, &others)
}

/// Whether two paths name one folder (the second may not exist yet).
fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_adopted_round_robin() {
        let l = |processes| RunLayout {
            processes,
            workers: 1,
            key_groups: KeyGroups::default(),
        };
        assert_eq!(l(1).adopted(&l(3), 0), vec![0, 1, 2]);
        assert_eq!(l(2).adopted(&l(3), 1), vec![1]);
        assert_eq!(l(3).adopted(&l(2), 2), Vec::<usize>::new());
        assert_eq!(l(2).describe(), "2 processes × 1 worker");
        assert_eq!(deal(vec![1, 2, 3, 4, 5], 1, 2), vec![2, 4]);
    }

    #[test]
    fn adopted_rows_are_the_committed_ones_once_under_one_header() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("x.csv"), "k,v\n1,a\n2,b\nuncommitted\n").unwrap();
        std::fs::write(b.join("x.csv"), "k,v\n3,c\nlost\n").unwrap();
        let folders = [
            CommittedFolder {
                dir: a.clone(),
                lengths: [("x.csv".to_string(), 12)].into(),
            },
            CommittedFolder {
                dir: b.clone(),
                lengths: [("x.csv".to_string(), 8)].into(),
            },
        ];
        // Into one of them, in place; twice, as after a crash while adopting.
        for _ in 0..2 {
            let lengths = adopt_results(&a, &folders).unwrap();
            assert_eq!(
                std::fs::read_to_string(a.join("x.csv")).unwrap(),
                "k,v\n1,a\n2,b\n3,c\n"
            );
            assert_eq!(lengths["x.csv"], 16);
        }
        // Into a new folder.
        let c = root.path().join("c");
        adopt_results(&c, &folders[1..]).unwrap();
        assert_eq!(
            std::fs::read_to_string(c.join("x.csv")).unwrap(),
            "k,v\n3,c\n"
        );
    }
}
