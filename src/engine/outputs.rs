//! The files a process writes, shared by its workers: each query's `ID.csv`
//! or rolled `ID/` folder (opened from the query's row type; none for a
//! query with `files = false` that no sink copies; `late` and
//! `malformed` roll with them), and `late.csv`, `malformed.csv` and
//! `truth.csv` (the labels of injected anomalies).

use crate::pipeline::{InteractionSource, Pipeline, TradeSource};
use crate::queries::Query;
use crate::rolling::RollPolicy;
use crate::sinks::{CsvSink, LateRow, MalformedRow, ResultFiles};
use crate::sources::anomalies::{TruthRow, TRUTH_HEADER};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The parts of a query with `files = false` that a sink copies: the
/// files are only the sinks' log, rolled at every checkpoint (every 8 MB
/// without) and removed once every sink copied them.
fn only_for_sinks(checkpointed: bool) -> RollPolicy {
    RollPolicy {
        roll_bytes: Some(if checkpointed { 1 } else { 8_000_000 }),
        roll_after: None,
        keep_parts: Some(0),
        keep_for: None,
        at_checkpoints: checkpointed,
    }
}

/// Files shared by the workers of this process; `None` where not written.
#[derive(Default)]
pub struct Outputs {
    pub dir: Option<PathBuf>,
    /// Every open file, by name (the queries' among them).
    pub files: ResultFiles,
    pub late: Option<Arc<CsvSink<LateRow>>>,
    pub malformed: Option<Arc<CsvSink<MalformedRow>>>,
    /// The labels of the anomalies the generators inject.
    pub truth: Option<Arc<CsvSink<TruthRow>>>,
    /// The folders of the queries with `files = false` that sinks copy.
    copied_only: Vec<PathBuf>,
}

impl Outputs {
    /// Creates the result files of `queries`, or reopens them to resume.
    pub fn create(
        pipeline: &Pipeline,
        queries: &[Arc<dyn Query>],
        resume: bool,
    ) -> anyhow::Result<Outputs> {
        let Some(dir) = pipeline.output.dir.clone() else {
            return Ok(Outputs::default());
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        let mut files = ResultFiles::default();
        let mut copied_only = Vec::new();
        let checkpointed = pipeline.engine.checkpoint.dir.is_some();
        for q in queries {
            let name = crate::queries::file_name(q.id());
            let policy = if pipeline.queries.writes_file(q.id()) {
                pipeline.output.roll_policy(checkpointed)
            } else if pipeline.sinks.copies(q.id()) {
                copied_only.push(crate::rolling::folder_of(&dir, &name));
                Some(only_for_sinks(checkpointed))
            } else {
                continue;
            };
            q.output().open(&mut files, &dir, &name, resume, policy)?;
        }
        let labelled = matches!(&pipeline.sources.trades, Some(TradeSource::Market(m)) if m.anomalies.is_some())
            || matches!(&pipeline.sources.interactions, Some(InteractionSource::Generator(g)) if g.anomalies.is_some());
        let truth = if labelled {
            let sink = CsvSink::create(&dir, "truth.csv", TRUTH_HEADER, resume)?;
            files.insert("truth.csv", Arc::clone(&sink));
            Some(sink)
        } else {
            None
        };
        // Late and malformed rows roll with the queries': a live source
        // with disorder may send late rows for as long as it runs.
        let policy = pipeline.output.roll_policy(checkpointed);
        let late = files.open_rolling::<LateRow>(&dir, "late.csv", resume, policy.clone())?;
        let malformed =
            files.open_rolling::<MalformedRow>(&dir, "malformed.csv", resume, policy)?;
        Ok(Outputs {
            dir: Some(dir),
            files,
            late: Some(late),
            malformed: Some(malformed),
            truth,
            copied_only,
        })
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.files.flush()
    }

    /// The length of every file, flushed: what a checkpoint commits.
    pub fn committed(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.files.committed()
    }

    /// A checkpoint is complete: rolled parts closed at it are finished.
    pub fn checkpoint_complete(&self) -> anyhow::Result<()> {
        self.files.checkpoint_complete()
    }

    /// The run ended well: rolled files finish their current parts.
    pub fn finish(&self) -> anyhow::Result<()> {
        self.files.finish()
    }

    /// The sinks copied everything: retention removes what it may, the
    /// folders of queries with `files = false` go.
    pub fn after_copiers(&self) -> anyhow::Result<()> {
        self.files.prune()?;
        for dir in &self.copied_only {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        Ok(())
    }

    /// Cuts every file back to the length a checkpoint committed.
    pub fn truncate(&self, committed: &BTreeMap<String, u64>) -> anyhow::Result<()> {
        self.files.truncate(committed)
    }
}
