//! eddy on several processes and hosts: the cluster's own sockets, the
//! handshake that admits only peers of this run, the heartbeat that notices a
//! lost peer, the exit codes and one-line reports of a failed cluster, the
//! merge of the processes' result folders, and `eddy cluster`, which runs N
//! local processes.
//!
//! - `sockets.rs`: forms the cluster (connect, admit, wait for peers) and
//!   hands timely its data connections;
//! - `handshake.rs`: what a connection must say and prove first;
//! - `heartbeat.rs`: beats and watches every peer on a connection of its own;
//! - `exit.rs`: exit codes 3 (peer lost) and 4 (no cluster), the panic hook
//!   for timely's communication errors;
//! - `merge.rs`: `eddy merge` and the end of `eddy cluster`;
//! - `launch.rs`: `eddy cluster`.
//!
//! docs/CLUSTER.md walks through a set-up on several machines.

pub mod exit;
pub mod handshake;
pub mod heartbeat;
pub mod launch;
pub mod merge;
pub mod sockets;

pub use launch::{launch, Launch};
pub use sockets::ClusterOptions;
