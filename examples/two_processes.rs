//! Two processes of one timely cluster on localhost, launched from code.
//!
//! cargo run --release --example two_processes [TRADES] [OUT_DIR]
//!
//! Run without flags, the program is the launcher: it picks two free ports on
//! 127.0.0.1, starts itself twice (`--process 0` and `--process 1`, two
//! workers each: four workers in all, exchanging records over TCP), waits for
//! both, then runs the same pipeline in one process with one worker and
//! checks that the two processes' result files together hold exactly the
//! single process's rows. On real hosts the same children run one per host,
//! with the hosts' addresses; `eddy cluster` does this launch from the
//! command line and merges the files.

use eddy::engine::{self, ClusterPlace, Job};
use eddy::pipeline::{Pipeline, TradeSource};
use eddy::sources::market::MarketConfig;
use eddy::sources::schedule::Timing;
use std::path::Path;
use std::process::Command;

/// The pipeline every process runs: a generated market, every trade query.
/// Generators are partitioned by global worker index, so the layout does not
/// change the stream.
fn pipeline(trades: u64, workers: usize, out: &Path) -> Pipeline {
    let mut market = MarketConfig {
        symbols: 10,
        ..MarketConfig::default()
    };
    market.arrivals.rate = 5_000.0;
    market.arrivals.count = Some(trades);
    market.arrivals.disorder_ms = 50;
    let mut p = Pipeline::default();
    p.sources.trades = Some(TradeSource::Market(market));
    p.engine.workers = workers;
    p.engine.timing = Timing::AsFast;
    p.engine.status = false;
    p.output.dir = Some(out.to_path_buf());
    p
}

/// A result file's rows, without the header, sorted.
fn rows(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let mut rows: Vec<String> = text.lines().skip(1).map(String::from).collect();
    rows.sort();
    Ok(rows)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, process, addresses, trades, out] = &args[..] {
        if flag == "--process" {
            // A child: one process of the cluster.
            let process: usize = process.parse()?;
            let cluster = ClusterPlace {
                process,
                addresses: addresses.split(',').map(String::from).collect(),
                origin_ms: None,
                options: Default::default(),
            };
            let out = Path::new(out).join(format!("process-{process}"));
            let job = Job {
                cluster: Some(cluster),
                ..Job::new(pipeline(trades.parse()?, 2, &out))
            };
            let summary = engine::run(job)?;
            println!(
                "[process {process}] {}",
                summary.report().lines().next().unwrap_or("")
            );
            return Ok(());
        }
    }
    let trades: u64 = args.first().map_or(Ok(100_000), |a| a.parse())?;
    let out = Path::new(args.get(1).map_or("out/two_processes", String::as_str)).to_path_buf();

    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", free_port()?, free_port()?);
    println!("launching 2 processes x 2 workers on {addresses}");
    let me = std::env::current_exe()?;
    let children: Vec<_> = (0..2)
        .map(|i| {
            Command::new(&me)
                .args(["--process", &i.to_string(), &addresses, &trades.to_string()])
                .arg(&out)
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for (i, mut child) in children.into_iter().enumerate() {
        anyhow::ensure!(child.wait()?.success(), "process {i} failed");
    }

    let single = out.join("single");
    engine::run(Job::new(pipeline(trades, 1, &single)))?;
    let mut files: Vec<_> = std::fs::read_dir(&single)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    files.retain(|f| f.ends_with(".csv"));
    files.sort();
    for file in files {
        let expected = rows(&single.join(&file))?;
        let mut merged = rows(&out.join("process-0").join(&file))?;
        merged.extend(rows(&out.join("process-1").join(&file))?);
        merged.sort();
        anyhow::ensure!(merged == expected, "{file}: the processes' rows differ");
        println!(
            "{file}: {} rows from 2 processes = 1 process",
            expected.len()
        );
    }
    println!("the cluster's results equal a single process's");
    Ok(())
}
