//! A real Kafka-protocol broker for the tests, and an independent client.
//!
//! The broker is tansu (crates.io, Rust), started on 127.0.0.1 with its
//! memory storage and stopped when dropped. It is taken from PATH, or from
//! `~/.cache/eddy-test-tools/bin`, or installed there once with
//! `cargo install tansu --features dynostore` (about 10 minutes on 2 cores;
//! later runs reuse it). The independent client is kafka-python (PyPI),
//! installed with pip when missing: the tests publish inputs and read
//! results with it, not with eddy's own client.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TANSU_VERSION: &str = "0.6.0";

/// The tansu binary, installed once if missing.
pub fn tansu() -> PathBuf {
    static TANSU: OnceLock<PathBuf> = OnceLock::new();
    TANSU
        .get_or_init(|| {
            if let Ok(out) = Command::new("tansu").arg("--version").output() {
                if out.status.success() {
                    return PathBuf::from("tansu");
                }
            }
            let root = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
                .join(".cache/eddy-test-tools");
            let bin = root.join("bin/tansu");
            if !bin.exists() {
                eprintln!(
                    "installing tansu {TANSU_VERSION} into {} (once; about 10 minutes)",
                    root.display()
                );
                let status = Command::new("cargo")
                    .args([
                        "install",
                        "tansu",
                        "--locked",
                        "--features",
                        "dynostore",
                        "--version",
                        TANSU_VERSION,
                        "--root",
                    ])
                    .arg(&root)
                    .status()
                    .expect("cargo runs");
                assert!(status.success(), "cargo install tansu failed");
            }
            bin
        })
        .clone()
}

/// Makes sure `import kafka` works (kafka-python from PyPI).
pub fn kafka_python() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let has = |_: ()| {
            Command::new("python3")
                .args(["-c", "import kafka"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has(()) {
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "kafka-python==3.0.12",
                ])
                .status()
                .expect("pip runs");
            assert!(
                status.success() && has(()),
                "pip install kafka-python failed"
            );
        }
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker on 127.0.0.1, killed when dropped.
pub struct Broker {
    child: Child,
    pub address: String,
}

impl Broker {
    pub fn start() -> Broker {
        let tansu = tansu();
        kafka_python();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, address }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a kafka-python script with `args` (sys.argv[1:]); returns its stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Publishes the data rows of a CSV file to a new topic of `partitions`
/// partitions with kafka-python, keyed by symbol (trades) or item (interactions).
pub fn publish(broker: &Broker, topic: &str, partitions: u32, file: &Path) {
    python(
        r#"
import sys
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
brokers, topic, partitions, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
admin = KafkaAdminClient(bootstrap_servers=brokers)
admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
lines = open(path).read().splitlines()
key = 1 if lines[0].startswith("ts_ms,symbol") else 2
p = KafkaProducer(bootstrap_servers=brokers, linger_ms=5)
for line in lines[1:]:
    if line.strip():
        p.send(topic, key=line.split(",")[key].encode(), value=line.encode())
p.flush()
"#,
        &[
            &broker.address,
            topic,
            &partitions.to_string(),
            file.to_str().unwrap(),
        ],
    );
}

/// Every message of `topic`, read with kafka-python: (partition, offset, key, value).
pub fn read_topic(broker: &Broker, topic: &str) -> Vec<(u32, u64, String, String)> {
    let out = python(
        r#"
import sys, json
from kafka import KafkaConsumer, TopicPartition
brokers, topic = sys.argv[1], sys.argv[2]
c = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
c.assign(parts)
c.seek_to_beginning()
idle = 0
while idle < 6:
    got = c.poll(timeout_ms=500)
    idle = 0 if got else idle + 1
    for tp, msgs in got.items():
        for m in msgs:
            print(json.dumps([tp.partition, m.offset, (m.key or b"").decode(), m.value.decode()]))
"#,
        &[&broker.address, topic],
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The rows a Kafka sink published to `topic`: (header eddy-query, row), sorted.
pub fn read_results(broker: &Broker, topic: &str) -> Vec<(String, String)> {
    let out = python(
        r#"
import sys, json
from kafka import KafkaConsumer, TopicPartition
brokers, topic = sys.argv[1], sys.argv[2]
c = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
if parts:
    c.assign(parts)
    c.seek_to_beginning()
    idle = 0
    while idle < 4:
        got = c.poll(timeout_ms=500)
        idle = 0 if got else idle + 1
        for tp, msgs in got.items():
            for m in msgs:
                print(json.dumps([dict(m.headers)["eddy-query"].decode(), m.value.decode()]))
"#,
        &[&broker.address, topic],
    );
    let mut rows: Vec<(String, String)> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rows.sort();
    rows
}
