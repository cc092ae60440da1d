//! `eddy send FILE --to HOST:PORT`: streams a CSV file to an engine
//! listening with `--listen`, at a given rate, as one named sender.
//!
//! The stream is read from the file's header. With a sender id (default: the
//! file's name), a sender that loses its connection — the engine was killed
//! — reconnects until `--retry-s` runs out, and the engine tells it how many
//! of its lines it already logged: it goes on from the next one, so every
//! line is logged exactly once. The send ends when the engine confirms that
//! every line is on disk. With `--tls-ca FILE` (or `--tls`) it speaks TLS
//! and checks the engine's certificate against the host it connects to; a
//! refusal (wrong token, untrusted certificate, TLS asked of a plain port
//! or the other way round) ends the send at once with the reason.

use crate::security::tls;
use anyhow::{anyhow, bail, Context};
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `eddy send` was asked.
pub struct Send {
    pub to: String,
    /// Lines per second; none: as fast as the engine takes them.
    pub rate: Option<f64>,
    /// The sender id; empty: anonymous (no resending after a failure).
    pub id: String,
    /// Keep reconnecting this long after a failure.
    pub retry: Duration,
    /// The engine's token (`--ingest-token-file`), sent on the first line.
    pub token: Option<String>,
    /// Speak TLS with this client configuration (`--tls-ca`, `--tls`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The engine refused this sender (a wrong token, a bad first line): no
/// reconnecting helps.
#[derive(Debug)]
struct RefusedByEngine(String);

impl std::fmt::Display for RefusedByEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedByEngine {}

/// What a send did.
#[derive(Debug)]
pub struct Sent {
    pub stream: &'static str,
    pub lines: u64,
    /// Connections the engine accepted (1 without failures).
    pub connections: u32,
    /// Lines sent again after a reconnection, beyond what the engine had logged.
    pub resent: u64,
    pub seconds: f64,
}

/// Sends the data lines of `file`.
pub fn send(file: &Path, how: &Send) -> anyhow::Result<Sent> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut lines = text.lines();
    let stream = crate::record::stream_of_header(file, lines.next().unwrap_or(""))?;
    let lines: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let started = Instant::now();
    let mut sent = Sent {
        stream,
        lines: lines.len() as u64,
        connections: 0,
        resent: 0,
        seconds: 0.0,
    };
    // Lines written on an earlier connection, to count what is sent twice.
    let mut written_before = 0u64;
    let mut failing_since: Option<Instant> = None;
    loop {
        let progress_before = written_before;
        match attempt(how, stream, &lines, started, &mut written_before, &mut sent) {
            Ok(()) => break,
            Err(e) if how.id.is_empty() || e.is::<RefusedByEngine>() => return Err(e),
            Err(e) => {
                // Reconnecting for `retry` since the last connection that got lines through.
                if written_before > progress_before {
                    failing_since = None;
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > how.retry {
                    return Err(e.context(format!(
                        "gave up after {:.1} s of reconnecting",
                        how.retry.as_secs_f64()
                    )));
                }
                tracing::debug!("send to {}: {e:#}; reconnecting", how.to);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    sent.seconds = started.elapsed().as_secs_f64();
    Ok(sent)
}

/// One connection: handshake, lines from where the engine stands, end.
fn attempt(
    how: &Send,
    stream: &str,
    lines: &[&str],
    started: Instant,
    written_before: &mut u64,
    sent: &mut Sent,
) -> anyhow::Result<()> {
    let socket =
        TcpStream::connect(&how.to).with_context(|| format!("cannot connect to {}", how.to))?;
    socket.set_nodelay(true)?;
    let mut conn = tls::connect(how.tls.as_ref(), &how.to, socket)?;
    let mut out = BufWriter::with_capacity(1 << 16, &mut conn);
    match &how.token {
        Some(token) => writeln!(out, "{stream} {} token={token}", how.id)?,
        None => writeln!(out, "{stream} {}", how.id)?,
    }
    out.flush().map_err(|e| tls_refusal(how, e))?;
    drop(out);
    let reply = read_reply(&mut conn).map_err(|e| tls_refusal(how, e))?;
    let logged: u64 = match reply.trim().strip_prefix("ok ").map(str::parse) {
        Some(Ok(n)) => n,
        _ if tls::looks_like_tls(reply.as_bytes()) => {
            return Err(RefusedByEngine(format!(
                "{} answered in TLS: give --tls-ca FILE (or --tls)",
                how.to
            ))
            .into())
        }
        _ => {
            let why = reply.trim().trim_start_matches("error: ");
            // Busy with other senders: a later attempt may get a slot.
            if why.starts_with("busy:") {
                bail!("{} is {why}", how.to);
            }
            return Err(RefusedByEngine(format!("{} refused the sender: {why}", how.to)).into());
        }
    };
    sent.connections += 1;
    if logged > lines.len() as u64 {
        bail!(
            "{} has {logged} lines of sender `{}` logged, more than the file's {}: another file under the same id?",
            how.to,
            how.id,
            lines.len()
        );
    }
    sent.resent += written_before.saturating_sub(logged);
    let mut out = BufWriter::with_capacity(1 << 16, &mut conn);
    for (i, line) in lines.iter().enumerate().skip(logged as usize) {
        if let Some(rate) = how.rate {
            // Open loop: line i is due at i / rate seconds after the start.
            let due = Duration::from_secs_f64(i as f64 / rate);
            let elapsed = started.elapsed();
            if due > elapsed + Duration::from_millis(1) {
                out.flush()?;
                std::thread::sleep(due - elapsed);
            }
        }
        writeln!(out, "{line}")?;
        *written_before = (*written_before).max(i as u64 + 1);
    }
    out.flush()?;
    drop(out);
    conn.close_writing()?;
    let reply = read_reply(&mut conn)?;
    let done: u64 = reply
        .trim()
        .strip_prefix("done ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("{} did not confirm the lines: `{}`", how.to, reply.trim()))?;
    if done != lines.len() as u64 {
        bail!("{} confirmed {done} lines of {}", how.to, lines.len());
    }
    Ok(())
}

/// Reads one reply line of the engine (a few bytes: `ok N`, `done N`,
/// `error: ...`), lossily; an end of input gives what came before it.
fn read_reply(conn: &mut impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.len() < 4096 && conn.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// A TLS failure in the handshake (an untrusted certificate, a name that
/// does not match, a plain-text engine): no reconnecting helps.
fn tls_refusal(how: &Send, e: std::io::Error) -> anyhow::Error {
    if how.tls.is_some() && e.kind() == std::io::ErrorKind::InvalidData {
        RefusedByEngine(format!("TLS with {} failed: {e}", how.to)).into()
    } else {
        e.into()
    }
}
