//! eddy's heartbeat between the processes of a cluster, on a connection of
//! its own beside timely's.
//!
//! A process sends one byte ([`BEAT`]) to every peer each `interval` (a fifth
//! of the peer timeout, at most a second) and reads every peer with the peer
//! timeout as its read timeout. A peer is lost when its connection is reset
//! or closed, or when nothing came from it for the whole timeout: a killed
//! process (the kernel closes its sockets), a hung one (its heartbeat thread
//! stops with it) and a cut link (nothing arrives) alike, whether or not
//! data is in flight on timely's connection. The loss is reported by
//! [`exit::peer_lost`]: one line and exit code 3. Each beat's arrival is
//! noted there, so that a peer that went because it lost a silent third one
//! is not named in its place.
//!
//! When this process's workers finish, [`Heartbeat::finish`] sends [`BYE`]:
//! a peer that reads it stops watching, so processes that end at different
//! moments are not taken for lost.

use super::exit;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// "I am alive."
pub const BEAT: u8 = b'.';
/// "My workers have finished; stop watching me."
pub const BYE: u8 = b'$';

/// The beat interval for a peer timeout: five beats per timeout, at most one a second.
pub fn interval_for(timeout: Duration) -> Duration {
    (timeout / 5).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// The running heartbeat of this process.
pub struct Heartbeat {
    peers: Vec<(usize, TcpStream)>,
    pub interval: Duration,
    pub timeout: Duration,
    stopped: Arc<(Mutex<bool>, Condvar)>,
    /// Bytes of heartbeat sent and received (payload; TCP/IP adds about 66 bytes a beat).
    pub sent: Arc<AtomicU64>,
    pub received: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Starts beating to and watching each peer of `sockets` (`None` at this process).
    pub fn start(sockets: Vec<Option<TcpStream>>, timeout: Duration) -> std::io::Result<Self> {
        let interval = interval_for(timeout);
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let mut peers = Vec::new();
        let is_peer: Vec<bool> = sockets.iter().map(Option::is_some).collect();
        exit::expect_heartbeats(&is_peer, timeout);
        for (peer, socket) in sockets.into_iter().enumerate() {
            let Some(socket) = socket else { continue };
            socket.set_write_timeout(Some(timeout))?;
            let reader = socket.try_clone()?;
            reader.set_read_timeout(Some(timeout))?;
            let received = Arc::clone(&received);
            std::thread::Builder::new()
                .name(format!("eddy:heartbeat-{peer}"))
                .spawn(move || watch(peer, reader, timeout, &received))?;
            peers.push((peer, socket));
        }
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        let beating: Vec<(usize, TcpStream)> = peers
            .iter()
            .map(|(p, s)| Ok((*p, s.try_clone()?)))
            .collect::<std::io::Result<_>>()?;
        {
            let (stopped, sent) = (Arc::clone(&stopped), Arc::clone(&sent));
            std::thread::Builder::new()
                .name("eddy:heartbeat".into())
                .spawn(move || beat(beating, interval, &stopped, &sent))?;
        }
        Ok(Heartbeat {
            peers,
            interval,
            timeout,
            stopped,
            sent,
            received,
        })
    }

    /// What metrics.json says of the cluster.
    pub fn stats(&self, generation: u64, peer_wait: Duration) -> crate::metrics::ClusterStats {
        crate::metrics::ClusterStats {
            generation,
            peer_timeout_s: self.timeout.as_secs_f64(),
            peer_wait_s: peer_wait.as_secs_f64(),
            heartbeat_interval_ms: self.interval.as_millis() as u64,
            heartbeat_bytes_sent: self.sent.load(Ordering::Relaxed),
            heartbeat_bytes_received: self.received.load(Ordering::Relaxed),
        }
    }

    /// This process's workers have finished: peers may go now; tell them so.
    pub fn finish(&self) {
        exit::mark_finished();
        *self.stopped.0.lock().unwrap() = true;
        self.stopped.1.notify_all();
        for (_, socket) in &self.peers {
            let _ = (&*socket).write_all(&[BYE]);
        }
    }
}

/// Sends a beat to every peer each interval until stopped.
fn beat(
    mut peers: Vec<(usize, TcpStream)>,
    interval: Duration,
    stopped: &(Mutex<bool>, Condvar),
    sent: &AtomicU64,
) {
    let (lock, wake) = stopped;
    let mut done = lock.lock().unwrap();
    loop {
        done = wake.wait_timeout(done, interval).unwrap().0;
        if *done {
            return;
        }
        for (peer, socket) in peers.iter_mut() {
            match socket.write_all(&[BEAT]) {
                Ok(()) => {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) if exit::is_finished() => return,
                Err(e) => exit::peer_lost(*peer, &format!("cannot send it a heartbeat: {e}")),
            }
        }
    }
}

/// Reads `peer`'s heartbeat until it says goodbye; reports it lost otherwise.
fn watch(peer: usize, mut socket: TcpStream, timeout: Duration, received: &AtomicU64) {
    let mut buffer = [0u8; 256];
    loop {
        let what = match socket.read(&mut buffer) {
            Ok(0) => "it closed the connection without finishing".to_string(),
            Ok(n) => {
                received.fetch_add(n as u64, Ordering::Relaxed);
                let bye = buffer[..n].contains(&BYE);
                exit::heard(peer, bye);
                if bye {
                    return;
                }
                continue;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                format!("{} {:.1} s", exit::NO_HEARTBEAT, timeout.as_secs_f64())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => format!("its connection failed: {e}"),
        };
        if exit::is_finished() {
            return;
        }
        exit::peer_lost(peer, &what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_beats_per_timeout_at_most_one_a_second() {
        assert_eq!(
            interval_for(Duration::from_secs(2)),
            Duration::from_millis(400)
        );
        assert_eq!(
            interval_for(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            interval_for(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn beats_arrive_and_a_goodbye_ends_the_watch() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let timeout = Duration::from_millis(500);
        let mut other = b.try_clone().unwrap();
        let heartbeat = Heartbeat::start(vec![None, Some(a)], timeout).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut buffer = [0u8; 16];
        while got.len() < 3 {
            let n = other.read(&mut buffer).unwrap();
            got.extend_from_slice(&buffer[..n]);
        }
        assert!(got.iter().all(|b| *b == BEAT), "{got:?}");
        // The other side says goodbye: the watch ends quietly (a loss would
        // exit the test run), also when nothing comes for longer than the timeout.
        other.write_all(&[BEAT, BYE]).unwrap();
        std::thread::sleep(timeout * 2);
        assert!(heartbeat.sent.load(Ordering::Relaxed) >= 3);
        assert_eq!(heartbeat.received.load(Ordering::Relaxed), 2);
        heartbeat.finish();
        drop(other);
    }
}
