//! How a cluster process ends when the cluster fails: one line on stderr and
//! an exit code of its own, never a panic's text.
//!
//! Two failures have codes (README, "Exit codes"), so that a supervisor can
//! restart on them and not on a configuration or data error:
//! - [`EXIT_PEER_LOST`]: a formed cluster lost a peer (its process died, hung
//!   or was cut off). The process stops at once; nothing past its last
//!   checkpoint is committed (the files are cut back on `--resume`).
//! - [`EXIT_NO_CLUSTER`]: the cluster did not form (peers that never came,
//!   a handshake refused).
//!
//! timely's network threads panic on a socket error with a message starting
//! "timely communication error"; the hook installed by [`watch_panics`]
//! turns those into the one line, naming the peer from the thread's name
//! (`timely:send-K`, `timely:recv-K`). Any other panic in a cluster process
//! waits half a second for a loss to be reported first (a worker whose
//! channel broke with the peer may panic a moment earlier), then shows as usual.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A formed cluster lost a peer.
pub const EXIT_PEER_LOST: u8 = 3;
/// The cluster did not form: peers missing at the deadline, or a handshake refused.
pub const EXIT_NO_CLUSTER: u8 = 4;

/// The peers' addresses, for naming a peer in the line.
static PEERS: OnceLock<Vec<String>> = OnceLock::new();
/// Set once a failure is being reported: later panics and losses stay silent.
static REPORTING: AtomicBool = AtomicBool::new(false);
/// Set when this process's workers have finished: a peer that goes away then is no loss.
static FINISHED: AtomicBool = AtomicBool::new(false);

/// A cluster failure with its exit code; `main` prints `line` alone and exits with `code`.
#[derive(Debug)]
pub struct ClusterError {
    pub code: u8,
    pub line: String,
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for ClusterError {}

impl ClusterError {
    pub fn no_cluster(line: String) -> anyhow::Error {
        anyhow::Error::new(ClusterError {
            code: EXIT_NO_CLUSTER,
            line,
        })
    }
}

/// `process K (ADDRESS)`, or `process K` when the addresses are not known.
pub fn peer_name(peer: usize) -> String {
    match PEERS.get().and_then(|p| p.get(peer)) {
        Some(address) => format!("process {peer} ({address})"),
        None => format!("process {peer}"),
    }
}

/// Marks this process's workers as finished: peers leaving now are not lost.
pub fn mark_finished() {
    FINISHED.store(true, Ordering::SeqCst);
}

pub fn is_finished() -> bool {
    FINISHED.load(Ordering::SeqCst)
}

/// When each peer's heartbeat was last heard (ms since the first instant),
/// and the peer timeout: see [`peer_lost`].
static HEARD: OnceLock<(Instant, Duration, Vec<AtomicU64>)> = OnceLock::new();
/// How a loss by silence is told (the heartbeat's words, matched here).
pub const NO_HEARTBEAT: &str = "no heartbeat for";
/// A peer that said goodbye, or this process itself, is never silent.
const GONE: u64 = u64::MAX;

/// Starts keeping when each process was last heard: `peers[k]` says
/// whether process k is a peer (this process, and absent ones, are not).
pub fn expect_heartbeats(peers: &[bool], timeout: Duration) {
    let _ = HEARD.set((
        Instant::now(),
        timeout,
        peers
            .iter()
            .map(|&peer| AtomicU64::new(if peer { 0 } else { GONE }))
            .collect(),
    ));
}

/// `peer`'s heartbeat arrived now (or, `bye`, it finished).
pub fn heard(peer: usize, bye: bool) {
    if let Some((since, _, heard)) = HEARD.get() {
        let now = if bye {
            GONE
        } else {
            since.elapsed().as_millis() as u64
        };
        if let Some(at) = heard.get(peer) {
            at.store(now, Ordering::Relaxed);
        }
    }
}

/// The peer silent longest before `closed` was last heard, if for over
/// half the timeout.
fn silent_peer(closed: usize) -> Option<(usize, Duration)> {
    let (_, timeout, heard) = HEARD.get()?;
    let heard: Vec<u64> = heard.iter().map(|at| at.load(Ordering::Relaxed)).collect();
    silent_before(*timeout, &heard, closed)
}

/// Of peers last heard at `heard` (ms), the one silent longest before
/// `closed` was last heard, if for over half of `timeout`. Measured against
/// `closed` and not the clock, so that a pause of this process (all peers
/// unread alike) is not taken for a peer's silence.
fn silent_before(timeout: Duration, heard: &[u64], closed: usize) -> Option<(usize, Duration)> {
    let last = *heard.get(closed).filter(|&&at| at != GONE)?;
    heard
        .iter()
        .enumerate()
        .filter(|&(peer, &at)| peer != closed && at != GONE)
        .map(|(peer, &at)| (peer, Duration::from_millis(last.saturating_sub(at))))
        .filter(|&(_, silent)| silent > timeout / 2)
        .max_by_key(|&(_, silent)| silent)
}

/// Reports the loss of `peer` in one line and exits with [`EXIT_PEER_LOST`].
///
/// A peer whose connection closed may have stopped on the loss of a third
/// one that hung or was cut off, a moment before this process noticed it:
/// when another peer had been silent for over half the timeout when the
/// closed one was last heard, that one is named as lost (the cause), and
/// the closed connection is told after it.
pub fn peer_lost(peer: usize, what: &str) -> ! {
    if !what.starts_with(NO_HEARTBEAT) {
        if let Some((silent, for_how_long)) = silent_peer(peer) {
            stop_lost(
                &peer_name(silent),
                &format!(
                    "{NO_HEARTBEAT} {:.1} s, and {} then went ({what})",
                    for_how_long.as_secs_f64(),
                    peer_name(peer)
                ),
            )
        }
    }
    stop_lost(&peer_name(peer), what)
}

/// Only the first caller speaks; any other waits for the exit.
fn stop_lost(peer: &str, what: &str) -> ! {
    if REPORTING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    eprintln!(
        "eddy: cluster: lost {peer}: {what}; stopped without committing past the last checkpoint (exit code {EXIT_PEER_LOST})"
    );
    std::process::exit(EXIT_PEER_LOST as i32)
}

/// The peer a timely network thread talks to, from its name.
fn peer_of_thread(name: &str) -> Option<usize> {
    let index = name
        .strip_prefix("timely:send-")
        .or_else(|| name.strip_prefix("timely:recv-"))?;
    index.parse().ok()
}

/// What a timely communication panic says after its prefix, e.g. "reading
/// data: Connection reset by peer (os error 104)"; None for other panics.
fn communication_error(message: &str) -> Option<&str> {
    message
        .strip_prefix("timely communication error")
        .map(|rest| rest.trim_start_matches(':').trim())
}

/// Installs (once) a panic hook that turns timely's communication panics
/// into [`peer_lost`], and silences every panic once a failure is being
/// reported (workers whose channels broke with the peer).
pub fn watch_panics(addresses: &[String]) {
    if PEERS.set(addresses.to_vec()).is_err() {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if REPORTING.load(Ordering::SeqCst) {
            return;
        }
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(what) = communication_error(message) {
            if is_finished() {
                return;
            }
            let thread = std::thread::current();
            match thread.name().and_then(peer_of_thread) {
                Some(peer) => peer_lost(peer, what),
                None => stop_lost("a peer", what),
            }
        }
        // A worker whose channel broke with a lost peer may panic a moment
        // before the network thread or the heartbeat reports the loss: give
        // them that moment, so the loss is what the user reads.
        if wait_for_a_report(LOSS_REPORT_GRACE) {
            loop {
                std::thread::park();
            }
        }
        previous(info)
    }));
}

/// How long another panic waits for a loss to be reported first.
const LOSS_REPORT_GRACE: Duration = Duration::from_millis(500);

/// Whether a loss is being reported within `grace`.
fn wait_for_a_report(grace: Duration) -> bool {
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if REPORTING.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    REPORTING.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_silent_over_half_the_timeout_is_named_before_one_that_closed() {
        let timeout = Duration::from_secs(2);
        // Process 1, last heard at 5 000 ms, closed its connection; 0 was
        // last heard at 3 200 ms (1.8 s before), 2 at 4 900 ms, 3 said goodbye.
        let heard = [3_200, 5_000, 4_900, GONE];
        assert_eq!(
            silent_before(timeout, &heard, 1),
            Some((0, Duration::from_millis(1_800)))
        );
        // Nobody else silent for over a second before it: the closed one is the loss.
        let heard = [4_100, 5_000, 4_900, GONE];
        assert_eq!(silent_before(timeout, &heard, 1), None);
        // A pause here leaves every peer unread alike: no one is singled out.
        let heard = [1_000, 1_100, 900];
        assert_eq!(silent_before(timeout, &heard, 1), None);
        // A closed peer that had said goodbye is no measure.
        assert_eq!(silent_before(timeout, &[0, GONE], 1), None);
    }

    #[test]
    fn timely_thread_names_give_the_peer() {
        assert_eq!(peer_of_thread("timely:send-2"), Some(2));
        assert_eq!(peer_of_thread("timely:recv-0"), Some(0));
        assert_eq!(peer_of_thread("worker thread 1"), None);
    }

    #[test]
    fn communication_panics_are_told_from_others() {
        assert_eq!(
            communication_error(
                "timely communication error: reading data: Connection reset by peer (os error 104)"
            ),
            Some("reading data: Connection reset by peer (os error 104)")
        );
        assert_eq!(communication_error("index out of bounds"), None);
    }
}
