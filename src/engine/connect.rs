//! The connections of a cluster, made by eddy and handed to timely.
//!
//! timely's own set-up polls its listener and sleeps a whole second whenever
//! no peer has connected yet (and a connecting process sleeps a second after
//! each refused attempt), so a cluster on localhost used to spend about a
//! second before its first record. Here each process binds its address, connects to every
//! process before it (retrying every few milliseconds until the deadline) and
//! accepts those after it, each connection announcing its process index; the
//! sockets then go to timely's `initialize_networking_from_sockets`, which
//! runs the same send and receive threads as its own set-up.

use anyhow::{bail, Context};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};

/// How long a process waits for the others to start.
const PEERS_DEADLINE: Duration = Duration::from_secs(60);
/// The pause between attempts: short, so that a peer that is starting is met at once.
const RETRY: Duration = Duration::from_millis(5);

/// Timely's allocators for `workers` threads of process `process` of
/// `addresses`, and the guard that keeps the network threads alive.
pub fn cluster_allocators(
    addresses: &[String],
    process: usize,
    workers: usize,
) -> anyhow::Result<(Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>)> {
    let sockets = connect(addresses, process, PEERS_DEADLINE)?;
    let hooks = Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, process, workers, hooks)
            .context("cannot start the cluster's network threads")?;
    Ok((
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        Box::new(guard),
    ))
}

/// One connected socket per other process, in process order (`None` at `me`).
pub fn connect(
    addresses: &[String],
    me: usize,
    deadline: Duration,
) -> anyhow::Result<Vec<Option<TcpStream>>> {
    let give_up = Instant::now() + deadline;
    let listener = TcpListener::bind(&addresses[me])
        .with_context(|| format!("process {me}: cannot listen on {}", addresses[me]))?;
    let mut sockets: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    for (peer, address) in addresses.iter().enumerate().take(me) {
        let mut stream = loop {
            match TcpStream::connect(address) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= give_up => {
                    bail!("process {me}: cannot connect to process {peer} at {address}: {e}")
                }
                Err(_) => std::thread::sleep(RETRY),
            }
        };
        stream.set_nodelay(true)?;
        stream.write_all(&(me as u64).to_be_bytes())?;
        sockets[peer] = Some(stream);
    }
    listener.set_nonblocking(true)?;
    let mut waiting = addresses.len() - me - 1;
    while waiting > 0 {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_nodelay(true)?;
                let mut index = [0u8; 8];
                stream.read_exact(&mut index)?;
                let peer = u64::from_be_bytes(index) as usize;
                if peer <= me || peer >= addresses.len() || sockets[peer].is_some() {
                    bail!("process {me}: a connection announced itself as process {peer}, not expected");
                }
                sockets[peer] = Some(stream);
                waiting -= 1;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= give_up {
                    bail!("process {me}: {waiting} later process(es) did not connect within {deadline:?}");
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(e).context(format!("process {me}: accepting a peer")),
        }
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_processes_connect_each_to_each_whatever_order_they_start_in() {
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            })
            .collect();
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        // The last process starts first: it must wait for the others' listeners.
        let handles: Vec<_> = [2usize, 0, 1]
            .into_iter()
            .map(|me| {
                let addresses = addresses.clone();
                std::thread::spawn(move || {
                    let sockets = connect(&addresses, me, Duration::from_secs(10)).unwrap();
                    (me, sockets)
                })
            })
            .collect();
        for h in handles {
            let (me, sockets) = h.join().unwrap();
            for (peer, s) in sockets.iter().enumerate() {
                assert_eq!(s.is_some(), peer != me, "process {me}, peer {peer}");
            }
        }
    }

    #[test]
    fn a_missing_peer_is_a_clear_error_after_the_deadline() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let free_port = free.local_addr().unwrap().port();
        drop(free);
        let me = TcpListener::bind("127.0.0.1:0").unwrap();
        let my_port = me.local_addr().unwrap().port();
        drop(me);
        let addresses = vec![
            format!("127.0.0.1:{free_port}"),
            format!("127.0.0.1:{my_port}"),
        ];
        let e = connect(&addresses, 1, Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("cannot connect to process 0"), "{e}");
    }
}
