//! A real MongoDB-wire-protocol server for the MongoDB sink's tests, and the
//! official Python driver (pymongo) as the independent reader.
//!
//! MongoDB's own `mongod` cannot be installed on these machines; the server
//! is SecantusDB (PyPI), which speaks the wire protocol on a TCP socket,
//! reports MongoDB 8.2 and, by default, a single-node replica set (so
//! multi-document transactions), or with `--standalone` a standalone server.
//! Both come from a virtual environment made once in
//! `~/.cache/eddy-test-tools/venv-py` with pinned versions, together with
//! the Dash app's packages (`examples/dash/requirements.txt`); later runs
//! reuse it (about 35 s the first time).
#![allow(dead_code)]

use super::tables::{normalise, Tables};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The packages of the virtual environment, pinned.
const PACKAGES: [&str; 4] = [
    "secantusdb==0.7.0b3",
    "pymongo==4.20.1",
    "dash==4.4.1",
    "pandas==3.1.1",
];

/// The virtual environment's `bin` folder, made once when missing.
pub fn venv_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .join(".cache/eddy-test-tools/venv-py");
        let bin = root.join("bin");
        let ready = || {
            Command::new(bin.join("python"))
                .args(["-c", "import secantus, pymongo, dash, pandas"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ready() {
            eprintln!("installing {PACKAGES:?} into {} (once)", root.display());
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&root)
                .status()
                .is_ok_and(|s| s.success());
            assert!(made, "python3 -m venv {} failed", root.display());
            let installed = Command::new(bin.join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(PACKAGES)
                .status()
                .is_ok_and(|s| s.success());
            assert!(installed && ready(), "pip install {PACKAGES:?} failed");
        }
        bin
    })
    .clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A SecantusDB server on 127.0.0.1 with its data in a folder of its own
/// (kept across [`MongoServer::stop`] and [`MongoServer::start_again`]);
/// killed when dropped.
pub struct MongoServer {
    child: Option<Child>,
    pub port: u16,
    flags: &'static [&'static str],
    data: tempfile::TempDir,
}

impl MongoServer {
    /// A single-node replica set: transactions.
    pub fn start() -> MongoServer {
        MongoServer::started(&[])
    }

    /// A standalone server: no transactions.
    pub fn standalone() -> MongoServer {
        MongoServer::started(&["--standalone"])
    }

    /// A server that asks for SCRAM authentication (and has no users).
    pub fn with_auth() -> MongoServer {
        MongoServer::started(&["--auth"])
    }

    fn started(flags: &'static [&'static str]) -> MongoServer {
        let mut server = MongoServer {
            child: None,
            port: free_port(),
            flags,
            data: tempfile::tempdir().unwrap(),
        };
        server.start_again();
        server
    }

    /// Starts the server (again) on its port over its data.
    pub fn start_again(&mut self) {
        let mut command = Command::new(venv_bin().join("secantusd-py"));
        command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.data.path())
            .args(["--log-level", "ERROR"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .args(self.flags);
        self.child = Some(command.spawn().expect("secantusd-py starts"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "SecantusDB did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server; its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The URI of `database` for eddy and pymongo (a direct connection: the
    /// replica set names no other member).
    pub fn uri(&self, database: &str) -> String {
        format!(
            "mongodb://127.0.0.1:{}/{database}?directConnection=true",
            self.port
        )
    }

    /// Runs a pymongo `script` with `args` (sys.argv[1:]); returns its stdout.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new(venv_bin().join("python"))
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every document of each collection named in `like`, read with pymongo,
    /// as rows in `like`'s column order (an absent field empty); integers
    /// must be stored as 64-bit integers.
    pub fn collections(&self, database: &str, like: &Tables) -> Tables {
        let names: Vec<&str> = like.keys().map(String::as_str).collect();
        let text = self.python(READ_COLLECTIONS, &[&self.uri(database), &names.join(",")]);
        let mut tables: Tables = like
            .iter()
            .map(|(t, (header, _))| (t.clone(), (header.clone(), Vec::new())))
            .collect();
        for line in text.lines() {
            let (name, document) = line.split_once('\t').unwrap();
            let document: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(document).unwrap();
            let (header, rows) = tables.get_mut(name).unwrap();
            let row = header
                .iter()
                .map(|c| match document.get(c) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => normalise(s),
                    Some(v) => normalise(&v.to_string()),
                })
                .collect();
            rows.push(row);
        }
        for (_, rows) in tables.values_mut() {
            rows.sort();
        }
        tables
    }

    /// The documents of `eddy_progress` as (process, worker, epoch).
    pub fn progress(&self, database: &str) -> Vec<(i64, i64, Option<i64>)> {
        let text = self.python(READ_PROGRESS, &[&self.uri(database)]);
        let mut rows: Vec<(i64, i64, Option<i64>)> = text
            .lines()
            .map(|l| {
                let v: Vec<&str> = l.split(',').collect();
                (
                    v[0].parse().unwrap(),
                    v[1].parse().unwrap(),
                    v[2].parse().ok(),
                )
            })
            .collect();
        rows.sort();
        rows
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// argv: URI, collection names; prints `name<TAB>document as JSON` lines.
/// Types are checked here, where BSON's are still known: integers are
/// Int64, reals doubles.
const READ_COLLECTIONS: &str = r#"
import json, sys
from bson.int64 import Int64
from pymongo import MongoClient
client = MongoClient(sys.argv[1], serverSelectionTimeoutMS=20000)
db = client.get_default_database()
for name in sys.argv[2].split(","):
    for d in db[name].find():
        for k, v in d.items():
            if isinstance(v, int) and not isinstance(v, bool) and k != "_id":
                assert isinstance(v, Int64), (name, k, type(v))
        d.pop("_id")
        print(name + "\t" + json.dumps(d))
"#;

const READ_PROGRESS: &str = r#"
import sys
from pymongo import MongoClient
db = MongoClient(sys.argv[1], serverSelectionTimeoutMS=20000).get_default_database()
for d in db["eddy_progress"].find():
    print(f"{d['process']},{d['worker']},{d.get('epoch', '')}")
"#;
