//! Rescaling from a checkpoint: resuming on more or fewer workers, processes
//! and hosts than the run that wrote it.
//!
//! - `groups.rs`: keys fall into a fixed number of key groups (`[engine]
//!   key_groups`), each worker owns a contiguous range of them, and the
//!   exchanges route records by the same function, so the worker that owns
//!   a key's group is where its records and its state meet, whatever the
//!   layout.
//! - `parts.rs`: operator state is saved cut into key groups (and an
//!   unkeyed rest with a rule for joining the rests of several workers);
//!   a resumed worker restores the groups it now owns.
//! - `layout.rs`: what an epoch was written by (processes, workers, key
//!   groups, result folders), what each new worker and process takes over
//!   from the old ones, and the result files a new process adopts.

pub mod groups;
pub mod layout;
pub mod parts;
