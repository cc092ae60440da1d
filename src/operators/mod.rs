//! The operators of eddy's dataflows, one a file. Each file's module doc states
//! the operator's semantics; its config struct serves both the pipeline TOML and
//! the CLI.

pub mod bars;
pub mod moments;
pub mod pane_window;
pub mod stats;
