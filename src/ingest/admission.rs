//! Who may hold a connection to TCP ingest, and for how long.
//!
//! A connection is *pending* from its accept until its first line has been
//! read and its token checked; then it is a *sender*. The two are bounded
//! apart, so that connections which never speak cannot lock out a sender
//! that speaks at once (the slowloris attack):
//!
//! - a pending connection has `hello_timeout_s` in all (TLS handshake and
//!   first line, however slowly it trickles) before it is closed;
//! - at most `max_pending` wait at once: one more pushes out the *oldest*
//!   pending connection, which has had the longest to speak;
//! - at most `max_connections` senders: one more is answered
//!   `error: busy: ...`, which `eddy send` retries.
//!
//! A connection closed here is told why when it speaks plain text (a TLS
//! connection has no channel before its handshake) and is counted by its
//! serving thread under `hello_timeout` or `pushed_out`.

use super::Refused;
use std::collections::VecDeque;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a pending connection was closed before its first line.
const WAITING: u8 = 0;
const TIMED_OUT: u8 = 1;
const PUSHED_OUT: u8 = 2;

/// The bounds on pending connections and senders.
pub struct Admission {
    max_pending: usize,
    hello_timeout: Duration,
    max_senders: usize,
    /// Whether refusals may be written as plain text.
    plain: bool,
    /// Oldest first.
    pending: Mutex<VecDeque<Waiting>>,
    senders: AtomicUsize,
    next_id: AtomicU64,
}

struct Waiting {
    id: u64,
    since: Instant,
    socket: TcpStream,
    closed: Arc<AtomicU8>,
}

/// A pending connection's place; give it back with [`Admission::spoke`].
pub struct Ticket {
    id: u64,
    closed: Arc<AtomicU8>,
}

/// A sender's slot, freed when dropped.
pub struct SenderSlot<'a>(&'a AtomicUsize);

impl Drop for SenderSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Admission {
    pub fn new(
        max_pending: usize,
        hello_timeout: Duration,
        max_senders: usize,
        plain: bool,
    ) -> Self {
        Admission {
            max_pending: max_pending.max(1),
            hello_timeout,
            max_senders: max_senders.max(1),
            plain,
            pending: Mutex::new(VecDeque::new()),
            senders: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        }
    }

    /// How long a pending connection may take to speak.
    pub fn hello_timeout(&self) -> Duration {
        self.hello_timeout
    }

    /// Takes a new connection as pending, pushing out the oldest when
    /// `max_pending` wait already.
    pub fn arrived(&self, socket: &TcpStream) -> std::io::Result<Ticket> {
        let ticket = Ticket {
            id: self.next_id.fetch_add(1, Relaxed),
            closed: Arc::new(AtomicU8::new(WAITING)),
        };
        let waiting = Waiting {
            id: ticket.id,
            since: Instant::now(),
            socket: socket.try_clone()?,
            closed: Arc::clone(&ticket.closed),
        };
        let mut pending = self.pending.lock().expect("pending lock");
        while pending.len() >= self.max_pending {
            let oldest = pending.pop_front().expect("a pending connection");
            self.close(oldest, PUSHED_OUT);
        }
        pending.push_back(waiting);
        Ok(ticket)
    }

    /// Closes the pending connections that have waited `hello_timeout`.
    pub fn expire(&self) {
        let mut pending = self.pending.lock().expect("pending lock");
        while pending
            .front()
            .is_some_and(|w| w.since.elapsed() >= self.hello_timeout)
        {
            let expired = pending.pop_front().expect("a pending connection");
            self.close(expired, TIMED_OUT);
        }
    }

    fn close(&self, waiting: Waiting, why: u8) {
        waiting.closed.store(why, Relaxed);
        if self.plain {
            let refusal = self.refusal(why);
            let mut socket = &waiting.socket;
            // A fresh socket's buffer takes one short line without waiting.
            let _ = socket.set_nonblocking(true);
            let _ = writeln!(socket, "error: {refusal}");
        }
        // Wakes the serving thread out of its read.
        let _ = waiting.socket.shutdown(Shutdown::Both);
    }

    fn refusal(&self, why: u8) -> Refused {
        match why {
            TIMED_OUT => Refused {
                reason: "hello_timeout",
                why: format!(
                    "no first line within {} s",
                    self.hello_timeout.as_secs_f64()
                ),
            },
            _ => Refused {
                reason: "pushed_out",
                why: format!(
                    "pushed out by newer connections before its first line ({} wait at most)",
                    self.max_pending
                ),
            },
        }
    }

    /// The connection's first line was read (or failed): it is no longer
    /// pending. A failure caused by this module is named as such.
    pub fn spoke<T>(&self, ticket: Ticket, hello: Result<T, Refused>) -> Result<T, Refused> {
        self.pending
            .lock()
            .expect("pending lock")
            .retain(|w| w.id != ticket.id);
        match ticket.closed.load(Relaxed) {
            WAITING => hello,
            why => Err(self.refusal(why)),
        }
    }

    /// Whether a refusal was already told to the peer by [`Self::close`].
    pub fn told(&self, refusal: &Refused) -> bool {
        matches!(refusal.reason, "hello_timeout" | "pushed_out")
    }

    /// A sender's slot, or `busy` when `max_connections` are taken.
    pub fn sender(&self) -> Result<SenderSlot<'_>, Refused> {
        if self.senders.fetch_add(1, Relaxed) >= self.max_senders {
            self.senders.fetch_sub(1, Relaxed);
            return Err(Refused {
                reason: "connections",
                why: format!(
                    "busy: {} senders are connected already (try again later)",
                    self.max_senders
                ),
            });
        }
        Ok(SenderSlot(&self.senders))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A connected pair: (the engine's side, the peer's side).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap().0, peer)
    }

    fn told(peer: TcpStream) -> String {
        let mut line = String::new();
        BufReader::new(peer).read_line(&mut line).unwrap();
        line
    }

    #[test]
    fn a_new_connection_pushes_out_the_oldest_pending_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admission = Admission::new(2, Duration::from_secs(60), 8, true);
        let conns: Vec<_> = (0..3).map(|_| pair(&listener)).collect();
        let tickets: Vec<_> = conns
            .iter()
            .map(|(engine, _)| admission.arrived(engine).unwrap())
            .collect();
        let mut tickets = tickets.into_iter();
        let first = admission.spoke(tickets.next().unwrap(), Ok(()));
        assert_eq!(first.unwrap_err().reason, "pushed_out");
        assert!(admission.spoke(tickets.next().unwrap(), Ok(())).is_ok());
        assert!(admission.spoke(tickets.next().unwrap(), Ok(())).is_ok());
        let mut peers = conns.into_iter().map(|(_, peer)| peer);
        assert!(told(peers.next().unwrap()).starts_with("error: pushed out by newer connections"));
    }

    #[test]
    fn a_connection_silent_for_the_hello_timeout_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admission = Admission::new(8, Duration::ZERO, 8, true);
        let (engine, peer) = pair(&listener);
        let ticket = admission.arrived(&engine).unwrap();
        admission.expire();
        let refused = admission.spoke(ticket, Ok(())).unwrap_err();
        assert_eq!(refused.reason, "hello_timeout");
        assert_eq!(told(peer), "error: no first line within 0 s\n");
    }

    #[test]
    fn senders_beyond_the_limit_are_busy_until_one_leaves() {
        let admission = Admission::new(8, Duration::from_secs(60), 2, true);
        let a = admission.sender().unwrap();
        let _b = admission.sender().unwrap();
        let busy = admission.sender().err().unwrap();
        assert_eq!(busy.reason, "connections");
        assert!(busy.why.starts_with("busy: 2 senders"));
        drop(a);
        assert!(admission.sender().is_ok());
    }
}
