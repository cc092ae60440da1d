//! Sinks: result rows, late records and malformed rows written as CSV files.
//!
//! One file per process, shared by its workers. Each worker formats its rows
//! into a buffer of its own ([`PartWriter`]) and writes it to the file in
//! blocks of [`PART_BYTES`]: per-record outputs (`ewma.csv`, one row per
//! trade) used to take the file's lock per batch and write under it, and two
//! workers queued behind each other there.
//! A file's header is its row type's field names ([`columns`]), so the header
//! and the rows cannot disagree; rows are formatted by [`csv_row`], floats in
//! their shortest exact form, so pandas reads back the very same numbers.

pub mod csv_row;
pub mod row_sink;

use crate::record::Event;
use crate::rolling::{self, RollPolicy, RolledFile};
use crate::sources::{Late, Malformed};
use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// A result row: a flat struct whose serde field names are its columns.
pub trait Row: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Row for T {}

/// The columns of row type `T`: its fields' serialized names, in order (read
/// from its `Deserialize` derive, which lists them).
pub fn columns<T: Row>() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<T>()
}

/// What a column holds, as SQL sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Integer,
    Real,
    Text,
    Boolean,
}

/// A column of a row type: its name, type and whether it may be empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
}

/// The columns of row type `T` with their types, read from its `Deserialize`
/// derive (the same source as [`columns`]): integers, floats, text (strings,
/// symbols, enums of unit variants), booleans; `Option` is nullable.
pub fn typed_columns<T: Row>() -> Result<Vec<Column>, String> {
    use serde_reflection::{ContainerFormat, Format, Tracer, TracerConfig};
    // Text fields are traced with a value every text type takes (a symbol too).
    let config = TracerConfig::default()
        .default_string_value("A".into())
        .default_borrowed_str_value("A");
    let mut tracer = Tracer::new(config);
    let (format, _) = tracer
        .trace_simple_type::<T>()
        .map_err(|e| format!("cannot read the row type's fields: {e}"))?;
    let registry = tracer.registry_unchecked();
    fn kind(
        f: &Format,
        registry: &serde_reflection::Registry,
        nullable: bool,
    ) -> Result<(ColumnType, bool), String> {
        Ok(match f {
            Format::Bool => (ColumnType::Boolean, nullable),
            Format::I8 | Format::I16 | Format::I32 | Format::I64 => (ColumnType::Integer, nullable),
            Format::U8 | Format::U16 | Format::U32 | Format::U64 => (ColumnType::Integer, nullable),
            Format::F32 | Format::F64 => (ColumnType::Real, nullable),
            Format::Str | Format::Char => (ColumnType::Text, nullable),
            Format::Option(inner) => kind(inner, registry, true)?,
            Format::TypeName(name) => match registry.get(name) {
                Some(ContainerFormat::NewTypeStruct(inner)) => kind(inner, registry, nullable)?,
                Some(ContainerFormat::Enum(_)) => (ColumnType::Text, nullable),
                _ => return Err(format!("field of type {name} is not a plain value")),
            },
            other => return Err(format!("field of format {other:?} is not a plain value")),
        })
    }
    let fields = match &format {
        Format::TypeName(name) => match registry.get(name) {
            Some(ContainerFormat::Struct(fields)) => fields,
            _ => return Err(format!("{name} is not a struct of named fields")),
        },
        _ => return Err("a row type must be a struct of named fields".into()),
    };
    columns::<T>()
        .iter()
        .zip(fields)
        .map(|(name, field)| {
            let (ty, nullable) =
                kind(&field.value, &registry, false).map_err(|e| format!("{name}: {e}"))?;
            Ok(Column { name, ty, nullable })
        })
        .collect()
}

/// How many formatted bytes a [`PartWriter`] holds before writing them.
pub const PART_BYTES: usize = 128 << 10;

/// Where a [`CsvSink`]'s bytes go: one file, or rolling parts.
enum Target {
    Single(BufWriter<File>),
    Rolled(RolledFile),
    /// A rolled folder to resume, until its committed position is known.
    Reopening {
        header: Vec<u8>,
        policy: RollPolicy,
    },
}

impl Target {
    /// Writes a block of whole rows; a rolled file may roll after it.
    fn write_block(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Target::Single(file) => file.write_all(bytes),
            Target::Rolled(file) => {
                file.write_all(bytes)?;
                file.roll_if_due()
            }
            Target::Reopening { .. } => Err(Self::not_reopened()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Target::Single(file) => file.flush(),
            Target::Rolled(file) => {
                file.flush()?;
                file.roll_if_due()
            }
            Target::Reopening { .. } => Ok(()),
        }
    }

    fn not_reopened() -> std::io::Error {
        std::io::Error::other("written before the checkpoint's position reopened it")
    }

    /// Flushed; the length (or rolled position) a checkpoint commits.
    fn commit_position(&mut self) -> std::io::Result<u64> {
        match self {
            Target::Single(file) => {
                file.flush()?;
                file.get_mut().stream_position()
            }
            Target::Rolled(file) => file.commit_position(),
            Target::Reopening { .. } => Err(Self::not_reopened()),
        }
    }
}

/// A CSV file of rows of type `T`, written by every worker of the process.
/// Rows are formatted by the calling worker; only the finished bytes are
/// written under the lock, so workers do not queue behind each other's formatting.
pub struct CsvSink<T> {
    name: String,
    path: PathBuf,
    file: Mutex<Target>,
    /// The first write that failed (a full disk, say): the file may hold a
    /// part of a block, so every later write, flush and commit fails with
    /// it, no checkpoint commits the file again and the run stops; a
    /// resume cuts the file back to the last committed length.
    failure: OnceLock<String>,
    /// The buffers of this file's [`PartWriter`]s, drained into the file by
    /// [`Flush`]. Lock order: a part, then the file.
    parts: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    _rows: PhantomData<fn(T)>,
}

/// One worker's writer of a [`CsvSink`]: rows are formatted into a buffer of
/// its own and written to the file once it holds [`PART_BYTES`] (or when the
/// file is flushed or committed), so the file's lock is taken once per block,
/// not once per batch. A worker's rows keep their order in the file.
pub struct PartWriter<T> {
    sink: Arc<CsvSink<T>>,
    part: Arc<Mutex<Vec<u8>>>,
}

impl<T: Serialize> PartWriter<T> {
    pub fn write_all<'a>(&self, rows: impl IntoIterator<Item = &'a T>) -> anyhow::Result<()>
    where
        T: 'a,
    {
        self.sink.check()?;
        let mut part = self.part.lock().expect("part lock");
        self.sink.format(rows, &mut part)?;
        if part.len() >= PART_BYTES {
            // The part stays locked until its bytes are in the file, so a
            // checkpoint's commit never misses them.
            let written = self.sink.file.lock().expect("sink lock").write_block(&part);
            self.sink.io(written)?;
            part.clear();
        }
        Ok(())
    }
}

impl<T: Serialize> CsvSink<T> {
    /// Creates `dir/name`, writing `header` at once so that a run without rows still
    /// leaves a well-formed file. Resuming (`resume`), opens the file a
    /// checkpointed run wrote, to be cut back to its committed length.
    pub fn create(
        dir: &Path,
        name: &str,
        header: &[&str],
        resume: bool,
    ) -> anyhow::Result<Arc<Self>> {
        Self::create_rolling(dir, name, header, resume, None)
    }

    /// As [`CsvSink::create`]; with a `policy`, the rows go to rolling
    /// parts in `dir/ID/` (see [`rolling`]), which a resume reopens at the
    /// committed position ([`Flush::truncate_to`]).
    pub fn create_rolling(
        dir: &Path,
        name: &str,
        header: &[&str],
        resume: bool,
        policy: Option<RollPolicy>,
    ) -> anyhow::Result<Arc<Self>> {
        let path = dir.join(name);
        let mut line = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        line.write_record(header)?;
        let header = line.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        let target = match (policy, resume) {
            (Some(policy), true) => {
                // The committed position reopens the right part (`truncate_to`).
                let folder = rolling::folder_of(dir, name);
                let target = Target::Reopening { header, policy };
                return Ok(Self::with_target(name, folder, target));
            }
            (Some(policy), false) => {
                let folder = rolling::folder_of(dir, name);
                let file = RolledFile::create(&folder, &header, policy)
                    .with_context(|| format!("cannot create {}", folder.display()))?;
                Target::Rolled(file)
            }
            (None, true) => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("cannot reopen {} to resume", path.display()))?;
                file.seek(SeekFrom::End(0))?;
                Target::Single(BufWriter::with_capacity(1 << 16, file))
            }
            (None, false) => {
                let file = File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let mut file = BufWriter::with_capacity(1 << 16, file);
                file.write_all(&header)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Target::Single(file)
            }
        };
        Ok(Self::with_target(name, path, target))
    }

    fn with_target(name: &str, path: PathBuf, target: Target) -> Arc<Self> {
        Arc::new(CsvSink {
            name: name.to_string(),
            path,
            failure: OnceLock::new(),
            file: Mutex::new(target),
            parts: Mutex::default(),
            _rows: PhantomData,
        })
    }

    /// A writer with a buffer of its own, for one worker.
    pub fn part_writer(self: &Arc<Self>) -> PartWriter<T> {
        let part = Arc::new(Mutex::new(Vec::with_capacity(PART_BYTES + (8 << 10))));
        self.parts
            .lock()
            .expect("parts lock")
            .push(Arc::clone(&part));
        PartWriter {
            sink: Arc::clone(self),
            part,
        }
    }

    /// Appends `rows` to `out` as CSV lines.
    fn format<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a T>,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()>
    where
        T: 'a,
    {
        for row in rows {
            if let Err(e) = csv_row::append_row(row, out) {
                return Err(self.fail(format_args!("a row cannot be written: {e}")));
            }
        }
        Ok(())
    }

    /// Writes `rows` to the file at once (rare rows: late and malformed ones).
    pub fn write_all<'a>(&self, rows: impl IntoIterator<Item = &'a T>) -> anyhow::Result<()>
    where
        T: 'a,
    {
        self.check()?;
        let mut bytes = Vec::with_capacity(4096);
        self.format(rows, &mut bytes)?;
        let written = self.file.lock().expect("sink lock").write_block(&bytes);
        self.io(written)
    }
}

/// Writes the rows of a dataflow event (from `inspect_core`) to `sink`, if
/// any. A write error is kept by the sink (see [`CsvSink::failure`]); the
/// workers stop the run with it.
pub fn write_event<T: Serialize>(
    sink: &Option<PartWriter<T>>,
    event: Result<(&timely::dataflow::channels::Stamp<u64>, &Vec<T>), &[u64]>,
) {
    if let (Some(sink), Ok((_, rows))) = (sink, event) {
        let _ = sink.write_all(rows.iter());
    }
}

/// A sink that can be flushed, committed and cut back whatever its row type.
pub trait Flush: Send + Sync {
    fn flush(&self) -> anyhow::Result<()>;
    /// The first write that failed, naming the file (see [`CsvSink::failure`]).
    fn failure(&self) -> Option<&str>;
    /// The file's name in the output folder.
    fn name(&self) -> &str;
    /// Flushes and returns the length written so far: what a checkpoint commits.
    fn committed_len(&self) -> anyhow::Result<u64>;
    /// Cuts the file back to a checkpoint's committed length (resuming), so
    /// that rows written after it are not doubled when written again.
    fn truncate_to(&self, len: u64) -> anyhow::Result<()>;
    /// A checkpoint that committed this file is complete: rolled parts
    /// closed at it take their final names.
    fn checkpoint_complete(&self) -> anyhow::Result<()>;
    /// The run ended well: a rolled file's current part is finished too.
    fn finish(&self) -> anyhow::Result<()>;
    /// Removes the rolled parts retention lets go (once the sinks are done).
    fn prune(&self) -> anyhow::Result<()>;
}

impl<T> CsvSink<T> {
    /// Writes what every part holds to the file (not yet flushed).
    fn drain_parts(&self) -> anyhow::Result<()> {
        self.check()?;
        for part in self.parts.lock().expect("parts lock").iter() {
            let mut part = part.lock().expect("part lock");
            if !part.is_empty() {
                let written = self.file.lock().expect("sink lock").write_block(&part);
                self.io(written)?;
                part.clear();
            }
        }
        Ok(())
    }

    /// Keeps the first failure; returns it as an error.
    fn fail(&self, why: impl std::fmt::Display) -> anyhow::Error {
        let first = self
            .failure
            .get_or_init(|| format!("cannot write {}: {why}", self.path.display()));
        anyhow::anyhow!("{first}")
    }

    /// `result`, an I/O error becoming the sink's failure.
    fn io<R>(&self, result: std::io::Result<R>) -> anyhow::Result<R> {
        result.map_err(|e| self.fail(e))
    }

    /// The failure, if a write failed before.
    fn check(&self) -> anyhow::Result<()> {
        match self.failure.get() {
            Some(failure) => Err(anyhow::anyhow!("{failure}")),
            None => Ok(()),
        }
    }
}

impl<T> Flush for CsvSink<T> {
    fn flush(&self) -> anyhow::Result<()> {
        self.drain_parts()?;
        let flushed = self.file.lock().expect("sink lock").flush();
        self.io(flushed)
    }

    fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn committed_len(&self) -> anyhow::Result<u64> {
        self.drain_parts()?;
        let position = self.file.lock().expect("sink lock").commit_position();
        self.io(position)
    }

    fn checkpoint_complete(&self) -> anyhow::Result<()> {
        if let Target::Rolled(file) = &mut *self.file.lock().expect("sink lock") {
            let finished = file.finish_closed();
            self.io(finished)?;
        }
        Ok(())
    }

    fn prune(&self) -> anyhow::Result<()> {
        if let Target::Rolled(file) = &*self.file.lock().expect("sink lock") {
            file.prune()?;
        }
        Ok(())
    }

    fn finish(&self) -> anyhow::Result<()> {
        self.flush()?;
        if let Target::Rolled(file) = &mut *self.file.lock().expect("sink lock") {
            let finished = file.finish();
            self.io(finished)?;
        }
        Ok(())
    }

    fn truncate_to(&self, len: u64) -> anyhow::Result<()> {
        let mut target = self.file.lock().expect("sink lock");
        match &mut *target {
            Target::Single(file) => {
                file.flush()?;
                let f = file.get_mut();
                let now = f.metadata()?.len();
                if now < len {
                    anyhow::bail!(
                        "{} has {now} bytes, fewer than the {len} the checkpoint committed: \
                         the result files were changed since; start afresh without --resume",
                        self.name
                    );
                }
                f.set_len(len)?;
                f.seek(SeekFrom::Start(len))?;
            }
            Target::Rolled(file) => {
                let folder = file.dir().to_path_buf();
                anyhow::bail!("{} was already reopened", folder.display())
            }
            Target::Reopening { header, policy } => {
                let file = RolledFile::resume(&self.path, header, policy.clone(), len)?;
                *target = Target::Rolled(file);
            }
        }
        Ok(())
    }
}

/// `late.csv`: `stream,seq,ts_ms,watermark_ms,record`.
#[derive(Clone, Serialize, Deserialize)]
pub struct LateRow {
    pub stream: String,
    pub seq: u64,
    pub ts_ms: u64,
    pub watermark_ms: u64,
    pub record: String,
}

impl LateRow {
    pub fn of<E: Event>(late: &Late<E>) -> Self {
        LateRow {
            stream: E::STREAM.into(),
            seq: late.record.seq(),
            ts_ms: late.record.ts_ms(),
            watermark_ms: late.watermark_ms,
            record: late.record.to_csv_line(),
        }
    }
}

/// `malformed.csv`: `stream,line,error,raw`.
#[derive(Clone, Serialize, Deserialize)]
pub struct MalformedRow {
    pub stream: String,
    pub line: u64,
    pub error: String,
    pub raw: String,
}

impl MalformedRow {
    pub fn of(stream: &'static str, m: &Malformed) -> Self {
        MalformedRow {
            stream: stream.into(),
            line: m.line,
            error: m.error.clone(),
            raw: m.raw.clone(),
        }
    }
}

/// The result files of a process, by file name, each typed by its row.
#[derive(Default)]
pub struct ResultFiles {
    files: BTreeMap<String, OpenFile>,
}

struct OpenFile {
    flush: Arc<dyn Flush>,
    /// The `Arc<CsvSink<T>>` itself, for [`ResultFiles::get`].
    typed: Arc<dyn Any + Send + Sync>,
}

impl ResultFiles {
    /// Creates `dir/name` with `T`'s columns (or reopens it, resuming).
    pub fn open<T: Row>(
        &mut self,
        dir: &Path,
        name: &str,
        resume: bool,
    ) -> anyhow::Result<Arc<CsvSink<T>>> {
        self.open_rolling(dir, name, resume, None)
    }

    /// As [`ResultFiles::open`], the rows in rolling parts under `policy`.
    pub fn open_rolling<T: Row>(
        &mut self,
        dir: &Path,
        name: &str,
        resume: bool,
        policy: Option<RollPolicy>,
    ) -> anyhow::Result<Arc<CsvSink<T>>> {
        let sink = CsvSink::<T>::create_rolling(dir, name, columns::<T>(), resume, policy)?;
        self.insert(name, Arc::clone(&sink));
        Ok(sink)
    }

    /// Adds a file opened elsewhere (one with a header of its own).
    pub fn insert<T: Send + Sync + 'static>(&mut self, name: &str, sink: Arc<CsvSink<T>>) {
        let file = OpenFile {
            flush: Arc::clone(&sink) as Arc<dyn Flush>,
            typed: sink,
        };
        self.files.insert(name.to_string(), file);
    }

    /// The file `name`, if open and of rows of type `T`.
    pub fn get<T: Send + Sync + 'static>(&self, name: &str) -> Option<Arc<CsvSink<T>>> {
        let file = self.files.get(name)?;
        Arc::clone(&file.typed).downcast::<CsvSink<T>>().ok()
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.files.values().try_for_each(|f| f.flush.flush())
    }

    /// The first failed write of any file, naming it: the run stops with it.
    pub fn failure(&self) -> Option<anyhow::Error> {
        let failed = self.files.values().find_map(|f| f.flush.failure())?;
        Some(anyhow::anyhow!("{failed}"))
    }

    /// The length of every file, flushed: what a checkpoint commits.
    pub fn committed(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.files
            .values()
            .map(|f| Ok((f.flush.name().to_string(), f.flush.committed_len()?)))
            .collect()
    }

    /// A checkpoint is complete: the rolled parts it closed are finished.
    pub fn checkpoint_complete(&self) -> anyhow::Result<()> {
        self.files
            .values()
            .try_for_each(|f| f.flush.checkpoint_complete())
    }

    /// The run ended well: every rolled file's current part is finished.
    pub fn finish(&self) -> anyhow::Result<()> {
        self.files.values().try_for_each(|f| f.flush.finish())
    }

    /// Removes the rolled parts retention lets go.
    pub fn prune(&self) -> anyhow::Result<()> {
        self.files.values().try_for_each(|f| f.flush.prune())
    }

    /// Cuts every file back to the length a checkpoint committed.
    pub fn truncate(&self, committed: &BTreeMap<String, u64>) -> anyhow::Result<()> {
        for file in self.files.values() {
            let name = file.flush.name();
            let len = committed.get(name).with_context(|| {
                format!(
                    "the checkpoint has no committed length for {name}: was it written by this pipeline?"
                )
            })?;
            file.flush.truncate_to(*len)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Serialize, Deserialize)]
    struct Pair {
        key: u64,
        #[serde(rename = "value_ms")]
        value: f64,
    }

    #[test]
    fn a_header_is_the_rows_field_names_in_order() {
        assert_eq!(columns::<Pair>(), &["key", "value_ms"]);
        assert_eq!(
            columns::<LateRow>(),
            &["stream", "seq", "ts_ms", "watermark_ms", "record"]
        );
    }

    #[test]
    fn files_are_found_by_name_and_row_type() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ResultFiles::default();
        let sink = files.open::<Pair>(dir.path(), "pairs.csv", false).unwrap();
        sink.write_all(&[Pair { key: 1, value: 0.5 }]).unwrap();
        assert!(files.get::<Pair>("pairs.csv").is_some());
        assert!(files.get::<LateRow>("pairs.csv").is_none());
        files.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("pairs.csv")).unwrap();
        assert_eq!(text, "key,value_ms\n1,0.5\n");
        assert_eq!(files.committed().unwrap()["pairs.csv"], text.len() as u64);
    }

    #[test]
    fn parts_reach_the_file_in_blocks_and_all_of_them_at_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ResultFiles::default();
        let sink = files.open::<Pair>(dir.path(), "pairs.csv", false).unwrap();
        let (a, b) = (sink.part_writer(), sink.part_writer());
        let path = dir.path().join("pairs.csv");
        let on_disk = || std::fs::read_to_string(&path).unwrap();
        files.flush().unwrap();
        a.write_all(&[Pair { key: 1, value: 0.5 }]).unwrap();
        b.write_all(&[Pair { key: 2, value: 1.5 }]).unwrap();
        assert_eq!(
            on_disk(),
            "key,value_ms\n",
            "small parts wait in their buffers"
        );
        let committed = files.committed().unwrap()["pairs.csv"];
        assert_eq!(on_disk(), "key,value_ms\n1,0.5\n2,1.5\n");
        assert_eq!(committed, on_disk().len() as u64);
        // A part that fills writes itself, in its own order.
        let many: Vec<Pair> = (0..20_000).map(|key| Pair { key, value: 0.25 }).collect();
        a.write_all(&many).unwrap();
        let text = on_disk();
        assert!(text.len() > committed as usize + PART_BYTES);
        let keys: Vec<u64> = text
            .lines()
            .skip(3)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(keys, (0..20_000).collect::<Vec<u64>>());
    }
}
