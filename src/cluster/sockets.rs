//! The connections of a cluster, made by eddy and handed to timely.
//!
//! timely's own set-up polls its listener and sleeps a whole second whenever
//! no peer has connected yet, trusts whatever connects, and leaves a dead
//! connection unnoticed. Here each process binds its address, connects to
//! every process before it (retrying every few milliseconds until the wait
//! for peers runs out) and admits those after it, two connections per pair:
//! timely's data and eddy's heartbeat. Each connection passes the handshake
//! (`handshake.rs`) first, in a thread of its own on the accepting side, so a
//! stranger that sends junk or nothing delays no one. The sockets get TCP
//! keepalive and `TCP_USER_TIMEOUT` (the peer timeout), so that data sent
//! into a cut link fails instead of waiting for ever; the data sockets then
//! go to timely's `initialize_networking_from_sockets`, which runs the same
//! send and receive threads as its own set-up.

use super::exit::ClusterError;
use super::handshake::{self, Admitted, Channel, Identity, OfferError};
use super::heartbeat::Heartbeat;
use anyhow::Context;
use socket2::{SockRef, TcpKeepalive};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};

/// The pause between attempts: short, so that a peer that is starting is met at once.
const RETRY: Duration = Duration::from_millis(5);
/// How long a connection may take to say its hello and its proof.
const HANDSHAKE_READ: Duration = Duration::from_secs(5);
/// Handshakes in progress at once; connections past it are closed at once.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// How a process behaves in a cluster (flags `--peer-timeout-s`,
/// `--peer-wait-s`, `--cluster-secret-file`).
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// A peer silent for this long is lost.
    pub peer_timeout: Duration,
    /// How long a starting process waits for all its peers.
    pub peer_wait: Duration,
    /// The shared secret peers prove they know; none: any peer of the same
    /// pipeline is admitted.
    pub secret: Option<Vec<u8>>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            peer_timeout: Duration::from_secs(10),
            peer_wait: Duration::from_secs(60),
            secret: None,
        }
    }
}

/// The cluster this process joined: timely's allocators, the guard that
/// keeps its network threads alive, and the heartbeat.
pub struct Joined {
    pub builders: Vec<AllocatorBuilder>,
    pub network: Box<dyn std::any::Any + Send>,
    pub heartbeat: Heartbeat,
    /// Process 0's start count: the same on every process of this incarnation.
    pub generation: u64,
}

/// Forms the cluster of `addresses` as process `identity.me` and starts
/// timely's network and the heartbeat on it. `checkpoint_dir` keeps process
/// 0's start count.
pub fn join(
    addresses: &[String],
    identity: Identity,
    workers: usize,
    options: &ClusterOptions,
    checkpoint_dir: Option<&Path>,
) -> anyhow::Result<Joined> {
    let me = identity.me;
    if me == 0 {
        warn_if_open(&addresses[0], options);
    }
    let own_generation = (me == 0)
        .then(|| next_generation(checkpoint_dir))
        .transpose()?;
    let formed = form(addresses, identity, options, own_generation)?;
    super::exit::watch_panics(addresses);
    for s in formed.data.iter().chain(&formed.heartbeat).flatten() {
        tune(s, options.peer_timeout)?;
    }
    let heartbeat = Heartbeat::start(formed.heartbeat, options.peer_timeout)?;
    let hooks = Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, formed.data, me, workers, hooks)
            .context("cannot start the cluster's network threads")?;
    tracing::info!(
        "cluster: process {me} of {} joined generation {} (peer timeout {:?})",
        addresses.len(),
        formed.generation,
        options.peer_timeout
    );
    Ok(Joined {
        builders: builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        network: Box::new(guard),
        heartbeat,
        generation: formed.generation,
    })
}

/// Says at start that a port open beyond this host takes any peer of the same pipeline.
fn warn_if_open(address: &str, options: &ClusterOptions) {
    if options.secret.is_some() {
        return;
    }
    let loopback = address
        .to_socket_addrs()
        .map(|mut a| a.all(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    if !loopback {
        tracing::warn!(
            "cluster: listening on {address}, beyond this host, without a cluster secret: \
             any process that can reach it may join; set --cluster-secret-file or EDDY_CLUSTER_SECRET"
        );
    }
}

/// Process 0's start count, kept in the checkpoint folder (so a restart
/// under a supervisor counts up); without one, the start time in ms.
fn next_generation(checkpoint_dir: Option<&Path>) -> anyhow::Result<u64> {
    let Some(dir) = checkpoint_dir else {
        return Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64);
    };
    let path = dir.join("cluster-generation");
    let last: u64 = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().unwrap_or(0),
        Err(_) => 0,
    };
    let next = last + 1;
    let temporary = dir.join("cluster-generation.tmp");
    std::fs::write(&temporary, format!("{next}\n"))
        .and_then(|()| std::fs::rename(&temporary, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(next)
}

/// Keepalive probes and a user timeout: a connection whose peer vanished
/// fails within about `timeout` even while data waits to be acknowledged.
fn tune(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    let probe = (timeout / 4).max(Duration::from_secs(1));
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(probe)
            .with_interval(probe)
            .with_retries(3),
    )?;
    socket.set_tcp_user_timeout(Some(timeout))
}

/// The sockets of a formed cluster, in process order (`None` at this process).
#[derive(Debug)]
pub struct Formed {
    pub data: Vec<Option<TcpStream>>,
    pub heartbeat: Vec<Option<TcpStream>>,
    pub generation: u64,
}

/// The run's generation, known to process 0 at once and to the others once
/// they have met process 0; handshakes of later processes wait for it.
#[derive(Default)]
struct GenerationCell {
    value: Mutex<Option<u64>>,
    known: Condvar,
}

impl GenerationCell {
    fn set(&self, g: u64) {
        *self.value.lock().unwrap() = Some(g);
        self.known.notify_all();
    }

    fn wait_until(&self, deadline: Instant) -> Option<u64> {
        let mut value = self.value.lock().unwrap();
        while value.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            value = self.known.wait_timeout(value, left).unwrap().0;
        }
        *value
    }
}

/// Connects to every process before `identity.me` and admits every process
/// after it, for timely's data and for the heartbeat.
pub fn form(
    addresses: &[String],
    identity: Identity,
    options: &ClusterOptions,
    own_generation: Option<u64>,
) -> anyhow::Result<Formed> {
    let me = identity.me;
    let deadline = Instant::now() + options.peer_wait;
    let listener = bind(&addresses[me], me, deadline)?;
    let generation = Arc::new(GenerationCell::default());
    if let Some(g) = own_generation {
        generation.set(g);
    }
    let done = Arc::new(AtomicBool::new(false));
    let (admitted, arrivals) = mpsc::channel();
    let acceptor = {
        let (identity, generation, done) =
            (identity.clone(), Arc::clone(&generation), Arc::clone(&done));
        std::thread::Builder::new()
            .name("eddy:cluster-accept".into())
            .spawn(move || accept_peers(listener, identity, generation, deadline, done, admitted))?
    };
    let result = (|| {
        let mut data: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
        let mut heartbeat: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
        for (peer, address) in addresses.iter().enumerate().take(me) {
            for (channel, slot) in [
                (Channel::Data, &mut data[peer]),
                (Channel::Heartbeat, &mut heartbeat[peer]),
            ] {
                let known = (peer > 0)
                    .then(|| generation.wait_until(deadline))
                    .flatten();
                let (stream, g) =
                    reach(address, &identity, peer, channel, known, deadline, options)?;
                generation.set(g);
                *slot = Some(stream);
            }
        }
        wait_for_later(
            addresses,
            me,
            &arrivals,
            deadline,
            options,
            &mut data,
            &mut heartbeat,
        )?;
        let generation = generation.wait_until(deadline).unwrap_or(0);
        Ok(Formed {
            data,
            heartbeat,
            generation,
        })
    })();
    done.store(true, Ordering::SeqCst);
    let _ = acceptor.join();
    result
}

/// Binds the listener, retrying while the address is still held (a process
/// of the last incarnation that is exiting).
fn bind(address: &str, me: usize, deadline: Instant) -> anyhow::Result<TcpListener> {
    loop {
        match TcpListener::bind(address) {
            Ok(l) => {
                l.set_nonblocking(true)?;
                return Ok(l);
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => {
                return Err(ClusterError::no_cluster(format!(
                    "eddy: cluster: process {me} cannot listen on {address}: {e}"
                )))
            }
        }
    }
}

/// Connects to `peer` at `address` and passes the handshake, retrying
/// until the deadline while the peer is not there yet.
fn reach(
    address: &str,
    identity: &Identity,
    peer: usize,
    channel: Channel,
    generation: Option<u64>,
    deadline: Instant,
    options: &ClusterOptions,
) -> anyhow::Result<(TcpStream, u64)> {
    let me = identity.me;
    let mut last_error = String::from("never tried");
    while Instant::now() < deadline {
        let attempt = || -> Result<(TcpStream, u64), OfferError> {
            let target = resolve(address)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let mut stream = TcpStream::connect_timeout(&target, left.min(Duration::from_secs(2)))?;
            stream.set_nodelay(true)?;
            // The peer may wait for its own meeting with process 0 before answering.
            stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            stream.set_write_timeout(Some(HANDSHAKE_READ))?;
            let g = handshake::offer(&mut stream, identity, peer, channel, generation)?;
            stream.set_read_timeout(None)?;
            stream.set_write_timeout(None)?;
            Ok((stream, g))
        };
        match attempt() {
            Ok(done) => return Ok(done),
            Err(OfferError::Refused(reason)) => {
                return Err(ClusterError::no_cluster(format!(
                    "eddy: cluster: process {peer} at {address} refused process {me}: {reason}"
                )))
            }
            Err(OfferError::Io(e)) => {
                last_error = e.to_string();
                std::thread::sleep(RETRY);
            }
        }
    }
    Err(ClusterError::no_cluster(format!(
        "eddy: cluster: process {me} could not reach process {peer} at {address} within {:?} ({last_error}); it never came",
        options.peer_wait
    )))
}

fn resolve(address: &str) -> std::io::Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(ErrorKind::NotFound, format!("{address} has no address"))
    })
}

/// Accepts connections until `done`, each handshake in a thread of its own;
/// admitted ones go to `admitted`, refused ones are logged and closed.
fn accept_peers(
    listener: TcpListener,
    identity: Identity,
    generation: Arc<GenerationCell>,
    deadline: Instant,
    done: Arc<AtomicBool>,
    admitted: mpsc::Sender<(Admitted, TcpStream)>,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    while !done.load(Ordering::SeqCst) {
        let (mut stream, from) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(RETRY);
                continue;
            }
            Err(e) => {
                tracing::warn!("cluster: accepting a connection failed: {e}");
                std::thread::sleep(RETRY);
                continue;
            }
        };
        if pending.load(Ordering::SeqCst) >= MAX_PENDING_HANDSHAKES {
            tracing::warn!(
                "cluster: dropped a connection from {from}: too many handshakes at once"
            );
            continue;
        }
        pending.fetch_add(1, Ordering::SeqCst);
        let (identity, generation, admitted, pending) = (
            identity.clone(),
            Arc::clone(&generation),
            admitted.clone(),
            Arc::clone(&pending),
        );
        std::thread::spawn(move || {
            let outcome = (|| {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE_READ)))
                    .and_then(|()| stream.set_write_timeout(Some(HANDSHAKE_READ)))
                    .map_err(|e| e.to_string())?;
                let a =
                    handshake::admit(&mut stream, &identity, || generation.wait_until(deadline))?;
                stream
                    .set_read_timeout(None)
                    .and_then(|()| stream.set_write_timeout(None))
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(a)
            })();
            match outcome {
                Ok(a) => {
                    let _ = admitted.send((a, stream));
                }
                Err(reason) => {
                    tracing::warn!("cluster: dropped a connection from {from}: {reason}")
                }
            }
            pending.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Waits for both connections of every later process; a newer connection
/// of the same process and channel replaces an older one (it restarted).
fn wait_for_later(
    addresses: &[String],
    me: usize,
    arrivals: &mpsc::Receiver<(Admitted, TcpStream)>,
    deadline: Instant,
    options: &ClusterOptions,
    data: &mut [Option<TcpStream>],
    heartbeat: &mut [Option<TcpStream>],
) -> anyhow::Result<()> {
    let complete = |data: &[Option<TcpStream>], heartbeat: &[Option<TcpStream>]| {
        (me + 1..addresses.len()).all(|p| data[p].is_some() && heartbeat[p].is_some())
    };
    while !complete(data, heartbeat) {
        let left = deadline.saturating_duration_since(Instant::now());
        match arrivals.recv_timeout(left) {
            Ok((Admitted { peer, channel }, stream)) => {
                let slot = match channel {
                    Channel::Data => &mut data[peer],
                    Channel::Heartbeat => &mut heartbeat[peer],
                };
                if slot.replace(stream).is_some() {
                    tracing::info!("cluster: process {peer} connected again ({channel:?}); the newer connection is kept");
                }
            }
            Err(_) => {
                let missing: BTreeMap<usize, &String> = (me + 1..addresses.len())
                    .filter(|p| data[*p].is_none() || heartbeat[*p].is_none())
                    .map(|p| (p, &addresses[p]))
                    .collect();
                let names: Vec<String> = missing
                    .iter()
                    .map(|(p, a)| format!("process {p} ({a})"))
                    .collect();
                return Err(ClusterError::no_cluster(format!(
                    "eddy: cluster: process {me}: {} did not join within {:?}; they never came",
                    names.join(", "),
                    options.peer_wait
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addresses(n: usize) -> Vec<String> {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect()
    }

    fn identity(me: usize, processes: usize) -> Identity {
        Identity {
            me,
            processes,
            fingerprint: "{}".into(),
            secret: b"shared".to_vec(),
            resuming: false,
        }
    }

    fn options(wait_ms: u64) -> ClusterOptions {
        ClusterOptions {
            peer_wait: Duration::from_millis(wait_ms),
            secret: Some(b"shared".to_vec()),
            ..ClusterOptions::default()
        }
    }

    #[test]
    fn three_processes_connect_each_to_each_whatever_order_they_start_in() {
        let addresses = free_addresses(3);
        // The last process starts first: it must wait for the others' listeners.
        let handles: Vec<_> = [2usize, 0, 1]
            .into_iter()
            .map(|me| {
                let addresses = addresses.clone();
                std::thread::spawn(move || {
                    let own = (me == 0).then_some(41);
                    let f = form(&addresses, identity(me, 3), &options(10_000), own).unwrap();
                    (me, f)
                })
            })
            .collect();
        for h in handles {
            let (me, f) = h.join().unwrap();
            assert_eq!(
                f.generation, 41,
                "process {me} learnt process 0's generation"
            );
            for peer in 0..3 {
                assert_eq!(
                    f.data[peer].is_some(),
                    peer != me,
                    "process {me}, peer {peer}"
                );
                assert_eq!(f.heartbeat[peer].is_some(), peer != me);
            }
        }
    }

    #[test]
    fn a_stranger_sending_junk_first_changes_nothing() {
        let addresses = free_addresses(2);
        let first = addresses[0].clone();
        let zero = std::thread::spawn({
            let addresses = addresses.clone();
            move || form(&addresses, identity(0, 2), &options(10_000), Some(1))
        });
        // A stranger that connects and says nothing, and one that sends junk.
        let silent = loop {
            if let Ok(s) = TcpStream::connect(&first) {
                break s;
            }
            std::thread::sleep(RETRY);
        };
        let mut junk = TcpStream::connect(&first).unwrap();
        std::io::Write::write_all(&mut junk, b"\x16\x03\x01 hello there, any database?").unwrap();
        let one = form(&addresses, identity(1, 2), &options(10_000), None).unwrap();
        let zero = zero.join().unwrap().unwrap();
        assert!(one.data[0].is_some() && zero.data[1].is_some());
        drop(silent);
    }

    #[test]
    fn missing_peers_are_named_when_the_wait_runs_out() {
        let addresses = free_addresses(3);
        let e = form(&addresses, identity(0, 3), &options(100), Some(1)).unwrap_err();
        let line = e.to_string();
        assert!(
            line.contains("process 1 (")
                && line.contains("process 2 (")
                && line.contains("never came"),
            "{line}"
        );
        assert_eq!(
            e.downcast_ref::<ClusterError>().unwrap().code,
            super::super::exit::EXIT_NO_CLUSTER
        );
        let e = form(&addresses, identity(2, 3), &options(100), None).unwrap_err();
        assert!(e.to_string().contains("could not reach process 0"), "{e}");
    }

    #[test]
    fn a_peer_with_the_wrong_secret_is_refused_with_one_line() {
        let addresses = free_addresses(2);
        let zero = std::thread::spawn({
            let addresses = addresses.clone();
            move || form(&addresses, identity(0, 2), &options(1_000), Some(1))
        });
        let mut wrong = options(10_000);
        wrong.secret = Some(b"guessed".to_vec());
        let mut id = identity(1, 2);
        id.secret = b"guessed".to_vec();
        let e = form(&addresses, id, &wrong, None).unwrap_err();
        assert!(e.to_string().contains("refused process 1"), "{e}");
        assert!(e.to_string().contains("cluster secret"), "{e}");
        // Process 0 goes on waiting for its real peer, which never comes.
        assert!(zero.join().unwrap().is_err());
    }
}
