//! The operators of eddy's dataflows, one a file. Each file's module doc states
//! the operator's semantics; its config struct serves both the pipeline TOML and
//! the CLI.

pub mod activity;
pub mod alerts;
pub mod bars;
pub mod correlation;
pub mod ewma;
pub mod item_counts;
pub mod item_totals;
pub mod moments;
pub mod ordered;
pub mod pane_window;
pub mod stats;
pub mod volatility;
