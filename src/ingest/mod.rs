//! Durable TCP ingest (`eddy run --listen HOST:PORT`).
//!
//! A sender connects and names its stream on the first line: `trades` or
//! `interactions`, optionally followed by a sender id (`trades feed-1`) and
//! the run's token (`trades feed-1 token=...`). The
//! engine answers `ok N`: the number of this sender's lines it has already
//! logged (0 for a new or anonymous sender), so that a sender reconnecting
//! after a crash resends from line N + 1 and nothing is doubled. Then the
//! sender writes records, one WORKLOAD.md CSV line each, without a header
//! (a header line is skipped, empty lines are ignored), and closes its
//! writing side; the engine answers `done N` once all N lines are on disk.
//!
//! Each batch of lines is appended to the stream's input log (`log.rs`) and
//! fsynced before the sources may read it, so every acknowledged line
//! survives a crash; the log's read offsets are part of each checkpoint, so
//! a resumed run replays exactly the lines after its checkpoint. The log is
//! written in segments of `segment_mib`; once a checkpoint is taken, the
//! segments wholly before what every local worker had read at the oldest
//! checkpoint still kept are removed ([`Ingest::checkpoint_taken`]): no
//! resume can need them.
//!
//! Hostile senders are bounded: with `token_file`, the first line must carry
//! `token=...` (compared in constant time); a line longer than
//! `max_line_kib` drops its sender (nothing past the limit is read, the
//! lines before it are kept and told), connections that have not yet sent
//! their first line are bounded apart from senders (`admission.rs`: a
//! deadline, and the oldest pushed out), more than `max_connections`
//! senders at once are told `busy`, and a sender quiet for
//! `idle_timeout_s` is dropped.
//! Each refusal is answered `error: ...`, logged in one line with the peer's
//! address and counted by reason (metrics.json `ingest.refused`); nothing of
//! a refused connection reaches the log.
//!
//! Overload: when the log holds more than `max_backlog_mib` not yet read by
//! every worker, connections stop reading their sockets until the workers
//! catch up, so TCP flow control pushes back on the senders; the time they
//! were held is reported. With `idle_exit_s`, the streams end (an end mark
//! is logged) once no sender has been connected for that long.

pub mod admission;
pub mod log;

use crate::security::{tls, token};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `[sources.listen]`: where to accept records and how to keep them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// `HOST:PORT` to listen on (port 0: any free port, printed at start).
    pub address: String,
    /// Folder of the input logs; default: `input-log` in the checkpoint
    /// folder, else in the output folder.
    pub log_dir: Option<PathBuf>,
    /// Log bytes not yet read by every worker before senders are held back.
    pub max_backlog_mib: u64,
    /// End the streams once no sender has been connected for this long.
    pub idle_exit_s: Option<f64>,
    /// A line longer than this drops its sender (KiB).
    pub max_line_kib: u64,
    /// Senders connected at once (past their first line); more are told `busy`.
    pub max_connections: usize,
    /// A sender that sends nothing for this long is dropped.
    pub idle_timeout_s: f64,
    /// Connections waiting for their first line at once; one more pushes
    /// out the oldest.
    pub max_pending: usize,
    /// A connection must send its first line (after TLS) within this long.
    pub hello_timeout_s: f64,
    /// The input log is written in segments of this size (MiB); whole
    /// segments behind the oldest kept checkpoint are removed.
    pub segment_mib: f64,
    /// A file holding the token every sender must present on its first line
    /// (`trades feed-1 token=...`); none: no token asked.
    pub token_file: Option<PathBuf>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            address: "127.0.0.1:9000".into(),
            log_dir: None,
            max_backlog_mib: 64,
            idle_exit_s: None,
            max_line_kib: 1024,
            max_connections: 256,
            idle_timeout_s: 60.0,
            max_pending: 256,
            hello_timeout_s: 10.0,
            segment_mib: 64.0,
            token_file: None,
        }
    }
}

/// Lines per log frame at most.
const FRAME_LINES: usize = 4096;

/// One stream's input log, shared by the connections that append to it and
/// the workers that read it.
pub struct StreamLog {
    pub stream: &'static str,
    /// The log's folder of segments.
    pub path: PathBuf,
    /// Bytes on disk (fsynced); readers stop here.
    durable: AtomicU64,
    /// Each local worker's read offset.
    read: Vec<AtomicU64>,
    writer: Mutex<Writer>,
    /// Lines logged in this run.
    pub lines: AtomicU64,
    /// Checkpoint saves of this run: each local worker's read offsets in
    /// the order it saved them, and the epochs taken so far.
    saves: Mutex<Saves>,
    /// Bytes of the segments on disk.
    pub bytes_on_disk: AtomicU64,
}

/// See [`StreamLog::saves`].
struct Saves {
    /// Per local worker, the offsets of its saves not yet matched with a
    /// checkpoint, oldest first (its n-th save goes into the n-th checkpoint).
    offsets: Vec<VecDeque<u64>>,
    /// Per checkpoint epoch taken in this run, the least offset any local
    /// worker had read: the log before it is needed by no resume from it.
    needed_from: BTreeMap<u64, u64>,
}

struct Writer {
    log: log::LogWriter,
    /// Lines logged per sender id.
    sent: BTreeMap<String, u64>,
    connected: BTreeSet<String>,
    ended: bool,
}

impl StreamLog {
    /// Opens (creating) the log folder `dir/STREAM`, for `workers` local readers.
    pub fn open(
        dir: &Path,
        stream: &'static str,
        workers: usize,
        segment_bytes: u64,
    ) -> anyhow::Result<Self> {
        let path = dir.join(stream);
        let (writer, scan) = log::open(&path, segment_bytes)?;
        if scan.cut > 0 {
            tracing::info!(
                "input log {}: cut {} bytes of an unfinished write",
                path.display(),
                scan.cut
            );
        }
        Ok(StreamLog {
            stream,
            path,
            durable: AtomicU64::new(scan.len),
            read: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            saves: Mutex::new(Saves {
                offsets: vec![VecDeque::new(); workers],
                needed_from: BTreeMap::new(),
            }),
            bytes_on_disk: AtomicU64::new(writer.bytes_on_disk()),
            writer: Mutex::new(Writer {
                log: writer,
                sent: scan.sent,
                connected: BTreeSet::new(),
                ended: scan.ended,
            }),
            lines: AtomicU64::new(0),
        })
    }

    /// Bytes readers may read.
    pub fn durable(&self) -> u64 {
        self.durable.load(Relaxed)
    }

    /// A worker's read offset, for the backlog.
    pub fn set_read(&self, local_worker: usize, offset: u64) {
        if let Some(r) = self.read.get(local_worker) {
            r.store(offset, Relaxed);
        }
    }

    /// Logged bytes some worker has not read yet.
    pub fn backlog(&self) -> u64 {
        let slowest = self.read.iter().map(|r| r.load(Relaxed)).min().unwrap_or(0);
        self.durable().saturating_sub(slowest)
    }

    fn append(&self, w: &mut Writer, entry: &log::Entry) -> anyhow::Result<()> {
        let len = w
            .log
            .append(entry, &w.sent)
            .with_context(|| format!("cannot append to input log {}", self.path.display()))?;
        self.durable.store(len, Relaxed);
        self.bytes_on_disk.store(w.log.bytes_on_disk(), Relaxed);
        Ok(())
    }

    /// A local worker saved its read offset into a checkpoint (its n-th
    /// save of this run goes into the run's n-th checkpoint).
    pub fn saved_at(&self, local_worker: usize, offset: u64) {
        let mut saves = self.saves.lock().expect("saves lock");
        if let Some(offsets) = saves.offsets.get_mut(local_worker) {
            offsets.push_back(offset);
        }
    }

    /// Checkpoint `epoch` is complete (every local worker saved into it) and
    /// `oldest_kept` is the oldest epoch left on disk: removes the segments
    /// no resume from a kept checkpoint can read. An oldest epoch taken
    /// before this run started is not known here: nothing is removed until
    /// this run's checkpoints have replaced it.
    pub fn checkpoint_taken(&self, epoch: u64, oldest_kept: u64) -> anyhow::Result<()> {
        let mut saves = self.saves.lock().expect("saves lock");
        // A worker may already have saved into the next checkpoint: only
        // its oldest unmatched save counts for this one (a worker without
        // one, which should not be, keeps everything).
        let least = saves
            .offsets
            .iter_mut()
            .map(|o| o.pop_front().unwrap_or(0))
            .min()
            .unwrap_or(0);
        saves.needed_from.insert(epoch, least);
        saves.needed_from.retain(|e, _| *e >= oldest_kept);
        let Some(&from) = saves.needed_from.get(&oldest_kept) else {
            return Ok(());
        };
        drop(saves);
        let mut w = self.writer.lock().expect("log lock");
        let removed = w.log.trim(from)?;
        self.bytes_on_disk.store(w.log.bytes_on_disk(), Relaxed);
        if removed > 0 {
            tracing::debug!(
                "input log {}: {removed} bytes before offset {from} removed",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Logs `lines` of sender `source` after those it already has; returns
    /// how many of its lines the log now holds.
    pub fn append_lines(&self, source: &str, lines: Vec<String>) -> anyhow::Result<u64> {
        let n = lines.len() as u64;
        let mut w = self.writer.lock().expect("log lock");
        let first = w.sent.get(source).copied().unwrap_or(0);
        let entry = log::Entry::Lines {
            source: source.to_string(),
            first,
            lines,
        };
        self.append(&mut w, &entry)?;
        w.sent.insert(source.to_string(), first + n);
        self.lines.fetch_add(n, Relaxed);
        Ok(first + n)
    }

    /// Logs the end of the stream (once).
    pub fn end(&self) -> anyhow::Result<()> {
        let mut w = self.writer.lock().expect("log lock");
        if !w.ended {
            self.append(&mut w, &log::Entry::End)?;
            w.ended = true;
        }
        Ok(())
    }
}

/// The listener and the logs of a run.
pub struct Ingest {
    pub address: std::net::SocketAddr,
    pub trades: Arc<StreamLog>,
    pub interactions: Arc<StreamLog>,
    max_backlog: u64,
    open_connections: AtomicUsize,
    /// Milliseconds senders were held back, summed over connections.
    pub held_ms: AtomicU64,
    /// The largest backlog seen, bytes.
    pub max_backlog_seen: AtomicU64,
    limits: Limits,
    /// TLS on the port (`--tls-cert`, `--tls-key`); none: plain text.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections refused or dropped, by reason.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    admission: admission::Admission,
}

/// What a sender may do.
struct Limits {
    max_line: usize,
    idle_timeout: Duration,
    token: Option<Vec<u8>>,
}

/// Why a connection was refused or dropped (`eddy_ingest_refused_total{reason}`).
#[derive(Debug)]
pub struct Refused {
    pub reason: &'static str,
    pub why: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for Refused {}

/// What a run reports about its TCP ingest.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct IngestSummary {
    pub address: String,
    /// Lines logged in this run, per stream.
    pub lines: BTreeMap<String, u64>,
    pub max_backlog_bytes: u64,
    /// Time senders were held back by the backlog bound, summed over connections.
    pub senders_held_s: f64,
    /// Connections refused or dropped, by reason: `hello` (a bad first
    /// line), `token` (wrong or missing), `connections` (too many senders),
    /// `hello_timeout`, `pushed_out` (no first line in time, or too many
    /// waiting), `tls`, `line_too_long`, `idle`.
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
    /// Bytes of the input log's segments on disk, per stream (what trimming
    /// behind the checkpoints left).
    #[serde(default)]
    pub log_bytes: BTreeMap<String, u64>,
}

impl Ingest {
    /// Opens the logs in `dir` (emptied first unless `resume`) and starts
    /// accepting on `config.address`. `stop` ends accepting (Ctrl-C).
    pub fn start(
        config: &ListenConfig,
        dir: &Path,
        resume: bool,
        workers: usize,
        tls: Option<Arc<rustls::ServerConfig>>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Arc<Ingest>> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create input log folder {}", dir.display()))?;
        if !resume {
            for stream in ["trades", "interactions"] {
                let path = dir.join(stream);
                if path.exists() {
                    std::fs::remove_dir_all(&path)
                        .with_context(|| format!("cannot empty {}", path.display()))?;
                }
            }
        }
        let segment_bytes = (config.segment_mib.max(0.0) * (1u64 << 20) as f64) as u64;
        let token = match &config.token_file {
            Some(path) => Some(token::read_token(path)?),
            None => None,
        };
        let listener = TcpListener::bind(&config.address)
            .with_context(|| format!("cannot listen on {}", config.address))?;
        let ingest = Arc::new(Ingest {
            address: listener.local_addr()?,
            trades: Arc::new(StreamLog::open(dir, "trades", workers, segment_bytes)?),
            interactions: Arc::new(StreamLog::open(
                dir,
                "interactions",
                workers,
                segment_bytes,
            )?),
            max_backlog: config.max_backlog_mib.max(1) << 20,
            open_connections: AtomicUsize::new(0),
            held_ms: AtomicU64::new(0),
            max_backlog_seen: AtomicU64::new(0),
            limits: Limits {
                max_line: (config.max_line_kib.max(1) << 10) as usize,
                idle_timeout: Duration::from_secs_f64(config.idle_timeout_s.max(0.001)),
                token,
            },
            admission: admission::Admission::new(
                config.max_pending,
                Duration::from_secs_f64(config.hello_timeout_s.max(0.0)),
                config.max_connections,
                tls.is_none(),
            ),
            tls,
            refused: Mutex::new(BTreeMap::new()),
        });
        tracing::info!(
            "listening for records on {}{} (first line `trades` or `interactions` [sender id]{}); input log in {}",
            ingest.address,
            if ingest.tls.is_some() { " over TLS" } else { "" },
            if ingest.limits.token.is_some() { " token=..." } else { "" },
            dir.display()
        );
        let accepting = Arc::clone(&ingest);
        let idle_exit = config.idle_exit_s.map(Duration::from_secs_f64);
        std::thread::Builder::new()
            .name("eddy-listen".into())
            .spawn(move || {
                if let Err(e) = accepting.accept_loop(listener, idle_exit, &stop) {
                    tracing::error!("the listener stopped: {e:#}");
                }
            })?;
        Ok(ingest)
    }

    pub fn log(&self, stream: &str) -> Arc<StreamLog> {
        Arc::clone(if stream == "trades" {
            &self.trades
        } else {
            &self.interactions
        })
    }

    pub fn summary(&self) -> IngestSummary {
        IngestSummary {
            address: self.address.to_string(),
            lines: [&self.trades, &self.interactions]
                .iter()
                .map(|l| (l.stream.to_string(), l.lines.load(Relaxed)))
                .collect(),
            max_backlog_bytes: self.max_backlog_seen.load(Relaxed),
            senders_held_s: self.held_ms.load(Relaxed) as f64 / 1e3,
            refused: self.refused_counts(),
            log_bytes: self.log_bytes(),
        }
    }

    /// Bytes of each stream's input log on disk.
    pub fn log_bytes(&self) -> BTreeMap<String, u64> {
        [&self.trades, &self.interactions]
            .iter()
            .map(|l| (l.stream.to_string(), l.bytes_on_disk.load(Relaxed)))
            .collect()
    }

    /// A checkpoint was taken: trims both logs behind the oldest kept one
    /// (see [`StreamLog::checkpoint_taken`]).
    pub fn checkpoint_taken(&self, epoch: u64, oldest_kept: u64) -> anyhow::Result<()> {
        self.trades.checkpoint_taken(epoch, oldest_kept)?;
        self.interactions.checkpoint_taken(epoch, oldest_kept)
    }

    /// Connections refused or dropped so far, by reason.
    pub fn refused_counts(&self) -> BTreeMap<String, u64> {
        let refused = self.refused.lock().expect("refused lock");
        refused.iter().map(|(r, n)| (r.to_string(), *n)).collect()
    }

    fn ended(&self) -> bool {
        [&self.trades, &self.interactions]
            .iter()
            .all(|l| l.writer.lock().expect("log lock").ended)
    }

    fn accept_loop(
        self: &Arc<Self>,
        listener: TcpListener,
        idle_exit: Option<Duration>,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        listener.set_nonblocking(true)?;
        let mut idle_since = Instant::now();
        while !stop.load(Relaxed) && !self.ended() {
            match listener.accept() {
                Ok((socket, peer)) => {
                    socket.set_nonblocking(false)?;
                    let ticket = match self.admission.arrived(&socket) {
                        Ok(ticket) => ticket,
                        Err(e) => {
                            tracing::warn!("cannot take a connection from {peer}: {e}");
                            continue;
                        }
                    };
                    self.open_connections.fetch_add(1, Relaxed);
                    let ingest = Arc::clone(self);
                    std::thread::spawn(move || {
                        if let Err(e) = ingest.serve(socket, ticket) {
                            ingest.refuse(peer, &e);
                        }
                        ingest.open_connections.fetch_sub(1, Relaxed);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => tracing::warn!("cannot accept a connection: {e}"),
            }
            self.admission.expire();
            if self.open_connections.load(Relaxed) > 0 {
                idle_since = Instant::now();
            } else if idle_exit.is_some_and(|d| idle_since.elapsed() >= d) {
                tracing::info!(
                    "no sender for {:?}: ending the input streams",
                    idle_exit.unwrap()
                );
                self.trades.end()?;
                self.interactions.end()?;
            }
        }
        Ok(())
    }

    /// Serves one sender: handshake, then lines into the log in frames.
    fn serve(&self, socket: TcpStream, ticket: admission::Ticket) -> anyhow::Result<()> {
        // While pending, the admission's hello timeout closes a silent
        // connection (and names it so); the read's own timeout is a backstop
        // past it. A sender's reads then time out after the idle timeout.
        let control = socket.try_clone()?;
        let idle = self.limits.idle_timeout;
        socket.set_read_timeout(Some(self.admission.hello_timeout() + idle))?;
        let conn = tls::accept(self.tls.as_ref(), socket)?;
        let mut reader = BufReader::with_capacity(1 << 16, conn);
        let mut line = Vec::new();
        let max_line = self.limits.max_line;
        let hello = self
            .refuse_tls_on_plain_port(&mut reader)
            .and_then(|()| match read_line(&mut reader, &mut line, max_line) {
                Ok(true) => parse_hello(&line),
                Ok(false) => Err(Refused {
                    reason: "hello",
                    why: "closed before its first line".into(),
                }),
                Err(e) => Err(e),
            })
            .and_then(|hello| self.check_token(hello));
        control.set_read_timeout(Some(idle))?;
        let hello = self
            .admission
            .spoke(ticket, hello)
            .and_then(|hello| Ok((hello, self.admission.sender()?)));
        let (log, id, _slot) = match hello {
            Ok((Hello { stream, id, .. }, slot)) => (self.log(stream), id, slot),
            Err(refusal) => {
                // A failed TLS handshake has no channel to answer on
                // (writing would wait for the handshake until the idle timeout).
                if reader.get_ref().handshake_done() && !self.admission.told(&refusal) {
                    let _ = writeln!(reader.get_mut(), "error: {refusal}");
                }
                return Err(refusal.into());
            }
        };
        let mut next = {
            let mut w = log.writer.lock().expect("log lock");
            if w.ended {
                let _ = writeln!(
                    reader.get_mut(),
                    "error: the {} stream has ended",
                    log.stream
                );
                bail!("connected after the {} stream ended", log.stream);
            }
            if !id.is_empty() && !w.connected.insert(id.clone()) {
                let _ = writeln!(reader.get_mut(), "error: sender {id} is already connected");
                bail!("sender {id} connected twice");
            }
            w.sent.get(&id).copied().unwrap_or(0)
        };
        let outcome = (|| -> anyhow::Result<()> {
            writeln!(reader.get_mut(), "ok {next}")?;
            let mut lines = Vec::new();
            loop {
                self.hold_while_backlogged(&log);
                let read = read_frame(
                    &mut reader,
                    &mut line,
                    &mut lines,
                    header_of(log.stream),
                    max_line,
                );
                let eof = match read {
                    Ok(eof) => eof,
                    Err(refusal) => {
                        // What came before the bad line is kept and told.
                        if !lines.is_empty() {
                            next = log.append_lines(&id, std::mem::take(&mut lines))?;
                        }
                        let _ = writeln!(reader.get_mut(), "error: {refusal} (after {next} lines)");
                        return Err(refusal.into());
                    }
                };
                if !lines.is_empty() {
                    next = log.append_lines(&id, std::mem::take(&mut lines))?;
                }
                if eof {
                    writeln!(reader.get_mut(), "done {next}")?;
                    return Ok(());
                }
            }
        })();
        log.writer.lock().expect("log lock").connected.remove(&id);
        outcome
    }

    /// A TLS handshake sent to a plain-text port would wait for a newline
    /// until the idle timeout: refused at once instead.
    fn refuse_tls_on_plain_port(&self, reader: &mut impl BufRead) -> Result<(), Refused> {
        if self.tls.is_some() {
            return Ok(());
        }
        match reader.fill_buf().map_err(io_refusal)? {
            [0x16, 0x03, ..] => Err(Refused {
                reason: "tls",
                why: "a TLS handshake on a plain-text port (the engine has no --tls-cert)".into(),
            }),
            _ => Ok(()),
        }
    }

    /// The sender's token, compared in constant time with the run's.
    fn check_token(&self, hello: Hello) -> Result<Hello, Refused> {
        let Some(expected) = &self.limits.token else {
            return Ok(hello);
        };
        let given = hello.token.as_deref().unwrap_or_default().as_bytes();
        if token::matches(given, expected) {
            Ok(hello)
        } else {
            let why = if hello.token.is_some() {
                "wrong token"
            } else {
                "no token (the first line needs `token=...`)"
            };
            Err(Refused {
                reason: "token",
                why: why.into(),
            })
        }
    }

    /// Logs and counts a refused or dropped connection in one line.
    fn refuse(&self, peer: std::net::SocketAddr, e: &anyhow::Error) {
        let reason = match e.downcast_ref::<Refused>() {
            Some(r) => r.reason,
            None => "error",
        };
        *self
            .refused
            .lock()
            .expect("refused lock")
            .entry(reason)
            .or_default() += 1;
        tracing::warn!("sender {peer}: refused ({reason}): {e:#}");
    }

    /// Stops reading this sender while the workers are too far behind.
    fn hold_while_backlogged(&self, log: &StreamLog) {
        let started = Instant::now();
        loop {
            let backlog = log.backlog();
            self.max_backlog_seen.fetch_max(backlog, Relaxed);
            if backlog <= self.max_backlog {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let held = started.elapsed().as_millis() as u64;
        if held > 0 {
            self.held_ms.fetch_add(held, Relaxed);
        }
    }
}

/// The CSV header of a stream, which senders may send and the log skips.
fn header_of(stream: &str) -> &'static str {
    use crate::record::{Event, Interaction, Trade};
    if stream == "trades" {
        Trade::CSV_HEADER
    } else {
        Interaction::CSV_HEADER
    }
}

/// A sender's first line: `trades` or `interactions`, then an optional
/// sender id and an optional `token=...`.
#[derive(Debug, PartialEq)]
pub struct Hello {
    pub stream: &'static str,
    pub id: String,
    pub token: Option<String>,
}

/// Reads the first line.
pub fn parse_hello(line: &[u8]) -> Result<Hello, Refused> {
    let bad = |why: String| Refused {
        reason: "hello",
        why,
    };
    let text =
        std::str::from_utf8(line).map_err(|_| bad("the first line is not UTF-8".to_string()))?;
    let mut words = text.split_whitespace();
    let stream = match words.next() {
        Some("trades") => "trades",
        Some("interactions") => "interactions",
        other => {
            return Err(bad(format!(
            "the first line must name the stream, `trades` or `interactions` [sender id] [token=...], not `{}`",
            other.unwrap_or("").chars().take(40).collect::<String>()
        )))
        }
    };
    let (mut id, mut token) = (None, None);
    for word in words {
        match word.strip_prefix("token=") {
            Some(t) if token.is_none() => token = Some(t.to_string()),
            None if id.is_none() && token.is_none() => id = Some(word.to_string()),
            _ => {
                return Err(bad(
                    "the first line has more than a stream, a sender id and a token".into(),
                ))
            }
        }
    }
    let id = id.unwrap_or_default();
    if id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(bad(format!(
            "sender id `{}`: up to 64 letters, digits, '-', '_' or '.'",
            id.chars().take(70).collect::<String>()
        )));
    }
    Ok(Hello { stream, id, token })
}

/// A failed read as a refusal: `idle` after the idle timeout, `tls` for
/// bytes TLS could not take, else `error`.
fn io_refusal(e: std::io::Error) -> Refused {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Refused {
            reason: "idle",
            why: "sent nothing for the idle timeout".into(),
        },
        // Only TLS turns bytes into this error: not TLS, or a failed handshake.
        std::io::ErrorKind::InvalidData => Refused {
            reason: "tls",
            why: format!("TLS: {e}"),
        },
        _ => Refused {
            reason: "error",
            why: format!("cannot read: {e}"),
        },
    }
}

/// Reads one line (without its end) into `line`, at most `max_line`
/// bytes; false at end of input. A longer line, or a sender quiet for the
/// idle timeout, is a [`Refused`]: nothing more of the line is read.
pub fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max_line: usize,
) -> Result<bool, Refused> {
    line.clear();
    let n = reader
        .by_ref()
        .take(max_line as u64 + 1)
        .read_until(b'\n', line)
        .map_err(io_refusal)?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max_line {
        return Err(Refused {
            reason: "line_too_long",
            why: format!("a line longer than {} KiB", max_line >> 10),
        });
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(true)
}

/// Reads lines for one frame: at least one (blocking), then as many as are
/// already buffered, up to [`FRAME_LINES`]. Returns true at end of input.
fn read_frame<R: Read>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    lines: &mut Vec<String>,
    header: &str,
    max_line: usize,
) -> Result<bool, Refused> {
    loop {
        if !read_line(reader, line, max_line)? {
            return Ok(true);
        }
        if !line.is_empty() && line.as_slice() != header.as_bytes() {
            lines.push(String::from_utf8_lossy(line).into_owned());
        }
        if lines.len() >= FRAME_LINES || (reader.buffer().is_empty() && !lines.is_empty()) {
            return Ok(false);
        }
    }
}

/// Where the input logs go: `log_dir`, else `input-log` in the checkpoint
/// folder, else in the output folder.
pub fn log_dir(
    config: &ListenConfig,
    checkpoint_dir: Option<&Path>,
    out: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if let Some(d) = &config.log_dir {
        return Ok(d.clone());
    }
    match checkpoint_dir.or(out) {
        Some(d) => Ok(d.join("input-log")),
        None => bail!("--listen keeps an input log: give --checkpoint-dir, --out or --input-log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(stream: &'static str, id: &str, token: Option<&str>) -> Result<Hello, Refused> {
        Ok(Hello {
            stream,
            id: id.to_string(),
            token: token.map(str::to_string),
        })
    }

    #[test]
    fn the_first_line_names_a_stream_and_maybe_a_sender_and_a_token() {
        let same = |a: Result<Hello, Refused>, b: Result<Hello, Refused>| {
            assert_eq!(a.map_err(|e| e.why), b.map_err(|e| e.why))
        };
        same(parse_hello(b"trades"), hello("trades", "", None));
        same(
            parse_hello(b"interactions feed-2"),
            hello("interactions", "feed-2", None),
        );
        same(
            parse_hello(b"trades feed-1 token=s3cret"),
            hello("trades", "feed-1", Some("s3cret")),
        );
        same(
            parse_hello(b"trades token=x"),
            hello("trades", "", Some("x")),
        );
        assert!(parse_hello(b"quotes").unwrap_err().why.contains("`quotes`"));
        for bad in [
            &b"trades a b"[..],
            b"trades a/b",
            b"trades token=x feed",
            b"trades token=x token=y",
            &[0xff, 0xfe],
        ] {
            assert_eq!(parse_hello(bad).unwrap_err().reason, "hello", "{bad:?}");
        }
    }

    #[test]
    fn a_line_over_the_limit_is_refused_without_reading_it_all() {
        let mut input = b"short\r\n".to_vec();
        input.extend(vec![b'x'; 5000]);
        input.extend_from_slice(b"\nnext\n");
        let mut reader = std::io::Cursor::new(input);
        let mut line = Vec::new();
        assert!(read_line(&mut reader, &mut line, 1024).unwrap());
        assert_eq!(line, b"short");
        let refused = read_line(&mut reader, &mut line, 1024).unwrap_err();
        assert_eq!(refused.reason, "line_too_long");
        // Read no further than the limit.
        assert_eq!(reader.position(), 7 + 1025);
    }
}
