//! What protects eddy's ports on a shared network: TLS for the TCP ingest,
//! `eddy send` and the dashboard (`tls.rs`), and the tokens senders and
//! dashboard clients present (`token.rs`). The cluster's own secret lives
//! with the cluster (`cluster/handshake.rs`); docs/SECURITY.md says which
//! port is protected by what.

pub mod tls;
pub mod token;
