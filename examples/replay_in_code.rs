//! Embedding eddy as a library: build a pipeline in code, run it, read the
//! measurements and the result files.
//!
//! cargo run --release --example replay_in_code [OUT_DIR]
//!
//! It generates 100 000 trades of 10 symbols (as fast as possible, 2 workers,
//! 100 ms of disorder), computes M1 bars and M2 stats, and prints the summary
//! and the first bars.

use eddy::engine::{self, Job};
use eddy::pipeline::{Pipeline, TradeSource};
use eddy::sources::market::MarketConfig;
use eddy::sources::schedule::Timing;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "out/example".into());

    // A market generator; every setting has a default, so name only what matters.
    let mut market = MarketConfig {
        symbols: 10,
        ..MarketConfig::default()
    };
    market.arrivals.rate = 20_000.0;
    market.arrivals.count = Some(100_000);
    market.arrivals.disorder_ms = 100;

    let mut pipeline = Pipeline::default();
    pipeline.sources.trades = Some(TradeSource::Market(market));
    pipeline.engine.workers = 2;
    pipeline.engine.timing = Timing::AsFast;
    pipeline.engine.max_delay_ms = 100;
    pipeline.engine.status = false;
    pipeline.output.dir = Some(out.clone().into());

    // Job::new runs until the sources end; its `stop` flag ends a run early (the CLI wires it to Ctrl-C).
    let summary = engine::run(Job::new(pipeline))?;
    println!("{}", summary.report());

    let bars = std::fs::read_to_string(format!("{out}/bars_1s.csv"))?;
    println!("\nfirst bars:");
    for line in bars.lines().take(4) {
        println!("  {line}");
    }
    assert_eq!(
        summary.records.processed, 100_000,
        "every trade reaches the queries"
    );
    Ok(())
}
