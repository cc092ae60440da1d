//! The files a process writes, shared by its workers: each query's `ID.csv`
//! (opened from the query's row type), and `late.csv`, `malformed.csv` and
//! `truth.csv` (the labels of injected anomalies).

use crate::pipeline::{InteractionSource, Pipeline, TradeSource};
use crate::queries::Query;
use crate::sinks::{CsvSink, LateRow, MalformedRow, ResultFiles};
use crate::sources::anomalies::{TruthRow, TRUTH_HEADER};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
        for q in queries {
            let name = crate::queries::file_name(q.id());
            q.output().open(&mut files, &dir, &name, resume)?;
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
        let late = files.open::<LateRow>(&dir, "late.csv", resume)?;
        let malformed = files.open::<MalformedRow>(&dir, "malformed.csv", resume)?;
        Ok(Outputs {
            dir: Some(dir),
            files,
            late: Some(late),
            malformed: Some(malformed),
            truth,
        })
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.files.flush()
    }

    /// The length of every file, flushed: what a checkpoint commits.
    pub fn committed(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.files.committed()
    }

    /// Cuts every file back to the length a checkpoint committed.
    pub fn truncate(&self, committed: &BTreeMap<String, u64>) -> anyhow::Result<()> {
        self.files.truncate(committed)
    }
}
