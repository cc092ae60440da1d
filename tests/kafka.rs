//! Kafka in, against a real broker (tansu on 127.0.0.1, see common/kafka.rs)
//! with kafka-python as the independent client:
//! - topics of 1 and 4 partitions, published by kafka-python from generated
//!   files, read by `eddy run` on 1 and 2 workers and on a 2-process cluster,
//!   give the results of the file replay;
//! - `eddy produce` publishes every row once, keyed, and creates the topic;
//! - a run killed at injected points inside checkpoints and resumed from its
//!   offsets ends with results equal to an uninterrupted run;
//! - bad messages are counted with their partition and offset; an unreachable
//!   broker or a missing topic fail fast with one line.

mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/kafka.rs"]
mod kafka;

use common::*;
use kafka::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A pipeline file reading `trades` and `interactions` topics to their end.
fn kafka_pipeline(
    dir: &Path,
    name: &str,
    broker: &str,
    trades: &str,
    interactions: &str,
) -> String {
    let path = dir.join(format!("{name}.toml"));
    let mut text = String::new();
    for (stream, topic) in [("trades", trades), ("interactions", interactions)] {
        text += &format!(
            "[sources.{stream}]\nkind = \"kafka\"\nbrokers = \"{broker}\"\ntopic = \"{topic}\"\nstop = \"end\"\n"
        );
    }
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Result files equal as sorted lines (every file of `expected`).
fn assert_same_files(expected: &Path, got: &Path, what: &str) {
    let mut names: Vec<String> = std::fs::read_dir(expected)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    assert!(names.len() >= 13, "{what}: {names:?}");
    for name in names {
        let sorted = |dir: &Path| {
            let text = std::fs::read_to_string(dir.join(&name))
                .unwrap_or_else(|e| panic!("{what}: {name} in {}: {e}", dir.display()));
            // ewma's last column, `seq`, is the source's own arrival number
            // (a row index in a file, offset x partitions + partition in a topic).
            let row = |l: &str| match name.as_str() {
                "ewma.csv" => l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_string(),
                _ => l.to_string(),
            };
            let mut lines: Vec<String> = text.lines().map(row).collect();
            lines.sort();
            lines
        };
        let (e, g) = (sorted(expected), sorted(got));
        assert!(
            e == g,
            "{what}: {name} differs ({} rows expected, {} got)",
            e.len(),
            g.len()
        );
    }
}

#[test]
fn topics_give_the_file_replay_answers_on_any_layout() {
    let dir = temp_dir();
    let root = dir.path();
    let trades = root.join("trades.csv");
    let interactions = root.join("interactions.csv");
    generate(
        "trades",
        &trades,
        30_000,
        &["--symbols", "12", "--rate", "3000", "--seed", "7"],
    );
    generate(
        "interactions",
        &interactions,
        20_000,
        &["--users", "300", "--items", "40", "--rate", "2000"],
    );
    let expected = root.join("file");
    let o = eddy(&[
        "replay",
        "--quiet",
        "--trades",
        trades.to_str().unwrap(),
        "--interactions",
        interactions.to_str().unwrap(),
        "--out",
        expected.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let broker = Broker::start();
    for partitions in [1, 4] {
        publish(&broker, &format!("t{partitions}"), partitions, &trades);
        publish(
            &broker,
            &format!("i{partitions}"),
            partitions,
            &interactions,
        );
        let file = kafka_pipeline(
            root,
            &format!("k{partitions}"),
            &broker.address,
            &format!("t{partitions}"),
            &format!("i{partitions}"),
        );
        for layout in ["1", "2", "2x1"] {
            let what = format!("{partitions} partition(s), layout {layout}");
            let out = root.join(format!("out-{partitions}-{layout}"));
            let out_s = out.to_str().unwrap();
            let o = if layout == "2x1" {
                eddy(&[
                    "cluster",
                    "--processes",
                    "2",
                    "--workers",
                    "1",
                    "--",
                    "run",
                    &file,
                    "--quiet",
                    "--out",
                    out_s,
                ])
            } else {
                eddy(&["run", &file, "--quiet", "--workers", layout, "--out", out_s])
            };
            assert!(o.status.success(), "{what}: {}", stderr(&o));
            assert_same_files(&expected, &out, &what);
            let m = metrics(&out);
            assert_eq!(m["records"]["generated"].as_u64(), Some(50_000), "{what}");
            // Every partition of both topics reports its lag: none left at the end.
            let lag = m["kafka_consumer_lag"]
                .as_object()
                .expect("kafka_consumer_lag");
            let mut want: Vec<String> = (0..partitions)
                .flat_map(|p| [format!("t{partitions}/{p}"), format!("i{partitions}/{p}")])
                .collect();
            want.sort();
            let mut keys: Vec<String> = lag.keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, want, "{what}");
            assert!(
                lag.values().all(|v| v.as_i64() == Some(0)),
                "{what}: {lag:?}"
            );
        }
    }
}

#[test]
fn produce_publishes_every_row_once_keyed_and_creates_the_topic() {
    let dir = temp_dir();
    let trades = dir.path().join("trades.csv");
    generate("trades", &trades, 5_000, &["--symbols", "9"]);
    let broker = Broker::start();
    let o = eddy(&[
        "produce",
        "--file",
        trades.to_str().unwrap(),
        "--brokers",
        &broker.address,
        "--topic",
        "recorded",
        "--partitions",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let messages = read_topic(&broker, "recorded");
    let mut got: Vec<String> = messages.iter().map(|m| m.3.clone()).collect();
    let text = std::fs::read_to_string(&trades).unwrap();
    let mut want: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every row exactly once");
    // The key is the symbol, and a symbol lives in one partition.
    let mut home = std::collections::BTreeMap::new();
    for (partition, _, key, value) in &messages {
        assert_eq!(key, value.split(',').nth(1).unwrap());
        assert_eq!(
            *home.entry(key.clone()).or_insert(*partition),
            *partition,
            "{key}"
        );
    }
    let partitions: std::collections::BTreeSet<u32> = messages.iter().map(|m| m.0).collect();
    assert!(
        partitions.len() > 1 && partitions.iter().all(|p| *p < 3),
        "{partitions:?}"
    );
    // A generator, with a rate: 1 500 interactions at 3 000/s take about half a second.
    let started = Instant::now();
    let o = eddy(&[
        "produce",
        "interactions",
        "--brokers",
        &broker.address,
        "--topic",
        "live",
        "--count",
        "1500",
        "--send-rate",
        "3000",
        "--partitions",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "the rate was not kept"
    );
    let live = read_topic(&broker, "live");
    assert_eq!(live.len(), 1500);
    assert!(live
        .iter()
        .all(|(_, _, key, value)| key == value.split(',').nth(2).unwrap()));
}

#[test]
fn a_killed_run_resumes_from_its_offsets_with_nothing_lost_or_doubled() {
    let data = faults::data();
    let broker = Broker::start();
    // One message per record batch: tansu 0.6 cannot serve a fetch that
    // starts inside a batch, which resuming from an offset needs (see
    // src/kafka/source.rs); with one-message batches every offset is a
    // batch's first, as any offset is for a Kafka broker.
    for (stream, file) in [
        ("trades", &data.trades),
        ("interactions", &data.interactions),
    ] {
        let o = eddy(&[
            "produce",
            "--file",
            file.to_str().unwrap(),
            "--brokers",
            &broker.address,
            "--topic",
            stream,
            "--partitions",
            "4",
            "--option",
            "batch.num.messages=1",
            "--option",
            "linger.ms=0",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let file = kafka_pipeline(&data.root, "k", &broker.address, "trades", "interactions");
    let reference = data.root.join("reference");
    let o = eddy(&[
        "run",
        &file,
        "--quiet",
        "--workers",
        "2",
        "--out",
        reference.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Malformed messages are named by partition and offset.
    let malformed = std::fs::read_to_string(reference.join("malformed.csv")).unwrap();
    assert!(malformed.lines().count() > 10, "{malformed}");
    assert!(
        malformed
            .lines()
            .skip(1)
            .all(|l| l.contains("partition ") && l.contains(" offset ")),
        "{malformed}"
    );
    // The rows the Kafka sink must hold: those of the uninterrupted run.
    let published = ["bars_1s", "alerts", "activity_60s"];
    let expected: Vec<(String, String)> = {
        let mut rows: Vec<(String, String)> = published
            .iter()
            .flat_map(|q| {
                let text = std::fs::read_to_string(reference.join(format!("{q}.csv"))).unwrap();
                text.lines()
                    .skip(1)
                    .map(|l| (q.to_string(), l.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        rows
    };
    for (n, (point, workers)) in [
        ("mid-write@2", 2),
        ("after-manifest@4", 1),
        ("before-manifest@3", 2),
        ("after-manifest@20", 2),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("{point} on {workers} worker(s)");
        let out = data.root.join(format!("out-{point}"));
        let ck = data.root.join(format!("ck-{point}"));
        let topic = format!("results-{n}");
        let file = data.root.join(format!("k-{n}.toml"));
        let text = std::fs::read_to_string(data.root.join("k.toml")).unwrap()
            + &format!(
                "[sinks.kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\nqueries = {published:?}\n",
                broker.address
            );
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap().to_string();
        let run = |resume: bool| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
            c.args(["run", &file, "--quiet", "--workers", &workers.to_string()])
                .arg("--out")
                .arg(&out)
                .arg("--checkpoint-dir")
                .arg(&ck)
                .args(["--checkpoint-interval-ms", "500"]);
            if resume {
                c.arg("--resume");
            } else {
                c.env("EDDY_CRASH_AT", point);
            }
            c.output().unwrap()
        };
        let first = run(false);
        assert_eq!(
            first.status.signal(),
            Some(9),
            "{what}: not killed: {}",
            stderr(&first)
        );
        // Only committed rows were published: each is one of the final rows.
        let before = read_results(&broker, &topic);
        let mut left = expected.clone();
        for row in &before {
            let at = left.binary_search(row).unwrap_or_else(|_| {
                panic!("{what}: {row:?} published but not a final row (or twice)")
            });
            left.remove(at);
        }
        let resumed = run(true);
        assert!(resumed.status.success(), "{what}: {}", stderr(&resumed));
        assert_eq!(
            read_results(&broker, &topic),
            expected,
            "{what}: the sink's topic"
        );
        assert!(
            stderr(&resumed).contains("resuming from the checkpoint of epoch"),
            "{what}: {}",
            stderr(&resumed)
        );
        assert_same_files(&reference, &out, &what);
    }
    // The 4-partition topics moved from one process to two: a run on one
    // worker killed after a checkpoint resumes as a 2-process cluster, each
    // process reading its partitions from the checkpoint's offsets, killed
    // again, and resumed on one process with 2 workers; the sink's topic
    // holds each final row once.
    let out = data.root.join("out-rescaled");
    let ck = data.root.join("ck-rescaled");
    let topic = "results-rescaled";
    let sinking = data.root.join("k-rescaled.toml");
    let text = std::fs::read_to_string(&file).unwrap()
        + &format!(
            "[sinks.kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\nqueries = {published:?}\n",
            broker.address
        );
    std::fs::write(&sinking, text).unwrap();
    let file = sinking.to_str().unwrap().to_string();
    let run = |command: &mut Command| {
        command
            .arg("--out")
            .arg(&out)
            .arg("--checkpoint-dir")
            .arg(&ck)
            .args(["--checkpoint-interval-ms", "500"])
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    };
    let first = run(Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", &file, "--quiet", "--workers", "1"])
        .env("EDDY_CRASH_AT", "after-manifest@4"));
    assert_eq!(first.status.signal(), Some(9), "{}", stderr(&first));
    let rescaled = run(Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "cluster", "-n", "2", "-w", "1", "--", "run", &file, "--quiet", "--resume",
        ])
        .env("EDDY_CRASH_AT", "after-manifest@2/p0"));
    assert!(!rescaled.status.success(), "{}", stderr(&rescaled));
    assert!(
        stderr(&rescaled).contains("written by 1 process × 1 worker; this run is 2 processes"),
        "{}",
        stderr(&rescaled)
    );
    let last = run(Command::new(env!("CARGO_BIN_EXE_eddy")).args([
        "run",
        &file,
        "--quiet",
        "--workers",
        "2",
        "--resume",
    ]));
    assert!(last.status.success(), "{}", stderr(&last));
    assert!(
        stderr(&last).contains("written by 2 processes × 1 worker; this run is 1 process")
            && stderr(&last).contains("published by another layout"),
        "{}",
        stderr(&last)
    );
    assert_same_files(&reference, &out, "4 partitions, 1 process then 2, then 1");
    assert_eq!(
        read_results(&broker, topic),
        expected,
        "the sink's topic across rescales"
    );
}

#[test]
fn a_transactional_sink_is_refused_in_one_line_by_a_broker_without_transactions() {
    let dir = temp_dir();
    let broker = Broker::start();
    let trades = dir.path().join("trades.csv");
    generate("trades", &trades, 100, &[]);
    publish(&broker, "tx-trades", 1, &trades);
    let file = kafka_pipeline(dir.path(), "tx", &broker.address, "tx-trades", "tx-trades");
    let text = std::fs::read_to_string(&file).unwrap()
        + &format!(
            "[sinks.kafka]\nbrokers = \"{}\"\ntopic = \"tx-results\"\ntransactions = true\n",
            broker.address
        );
    let text = text.replace("[sources.interactions]", "[sources.unused]");
    let text = text.split("[sources.unused]").next().unwrap().to_string()
        + &text[text.find("[sinks.kafka]").unwrap()..];
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let started = Instant::now();
    let o = eddy(&["run", &file, "--quiet", "--out", out.to_str().unwrap()]);
    let last = stderr(&o).lines().last().unwrap_or_default().to_string();
    assert!(!o.status.success());
    assert!(last.contains("needs --checkpoint-dir"), "{last}");
    let ck = dir.path().join("ck");
    let o = eddy(&[
        "run",
        &file,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--checkpoint-dir",
        ck.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    let last = stderr(&o).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("eddy: error: kafka sink:") && last.contains("refuse transactions"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_brokers_and_topics_fail_fast_with_one_line() {
    let dir = temp_dir();
    let broker = Broker::start();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = free.to_string();
    for (brokers, topic, expected) in [
        (unreachable.as_str(), "t", "cannot reach brokers"),
        (
            broker.address.as_str(),
            "no-such-topic",
            "topic no-such-topic",
        ),
    ] {
        let file = kafka_pipeline(dir.path(), "bad", brokers, topic, topic);
        let started = Instant::now();
        let o = eddy(&[
            "run",
            &file,
            "--quiet",
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{expected}: took {:?}",
            started.elapsed()
        );
        let last = stderr(&o).lines().last().unwrap_or_default().to_string();
        assert!(
            last.starts_with("eddy: error:") && last.contains(expected),
            "{last}"
        );
    }
}
