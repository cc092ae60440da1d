//! eddy: a real-time stream processing engine on timely-dataflow and
//! differential-dataflow. See README.md for a tour and docs/ for the design.

pub mod backpressure;
pub mod checkpoint;
pub mod cluster;
pub mod committed;
pub mod dashboard;
pub mod database;
pub mod engine;
pub mod evaluate;
pub mod extend;
pub mod framework;
pub mod generate;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod plot;
pub mod probes;
pub mod quality;
pub mod queries;
pub mod record;
pub mod rescale;
pub mod rolling;
pub mod security;
pub mod send;
pub mod sinks;
pub mod sources;
pub mod time;
pub mod traffic;
