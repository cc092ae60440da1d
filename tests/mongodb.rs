//! The MongoDB sink against a real MongoDB-wire-protocol server (SecantusDB,
//! see `common/mongodb.rs`), read back with pymongo, not with eddy:
//! - every query's collection equals its CSV file, on 1 and 2 workers, and a
//!   second run over the same input replaces instead of doubling; the shared
//!   sample too, when it is there;
//! - a run killed inside a checkpoint, after one, inside a sink transaction
//!   and after one, then resumed, leaves collections equal to an
//!   uninterrupted run's, on a replica set (transactions) and on a
//!   standalone server (upserts by `_id`, then `eddy_progress`), and after a
//!   rescale from 2 to 3 workers;
//! - the server killed and started again mid-run: the sink waits, counts its
//!   retries, and the collections equal the run's files;
//! - a bad URI, a server that is not there and a refused authentication fail
//!   the run with one line.

mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/mongodb.rs"]
mod mongodb;
#[path = "common/tables.rs"]
mod tables;

use common::*;
use faults::*;
use mongodb::*;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use tables::*;

/// Generated data small enough for the Python server (about 1 300 rows/s
/// here): 16 000 trades, 12 000 interactions, every result file non-empty.
fn small_data() -> Data {
    data_of(16_000, 12_000)
}

fn uri_flags(uri: &str) -> [&str; 2] {
    ["--mongodb", uri]
}

#[test]
fn collections_equal_the_csv_files_on_1_and_2_workers_and_a_second_run_replaces() {
    let data = small_data();
    let server = MongoServer::start();
    for workers in [1, 2] {
        let what = format!("{workers} worker(s)");
        let out = data.root.join(format!("out-{workers}"));
        let database = format!("w{workers}");
        let o = data
            .replay(&out, workers, &uri_flags(&server.uri(&database)))
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("mongodb sink to") && stderr(&o).contains("at least once"),
            "{}",
            stderr(&o)
        );
        let files = csv_tables(&out);
        assert!(
            files["ewma"].1.len() > 1000 && files["alerts"].1.len() > 1,
            "{what}"
        );
        assert_same_tables(&files, &server.collections(&database, &files), &what);
        let rows: usize = files.values().map(|(_, r)| r.len()).sum();
        assert_eq!(metrics(&out)["sinks"]["mongodb"]["rows"], rows as u64);
        let progress = server.progress(&database);
        let workers_seen: Vec<i64> = progress.iter().map(|p| p.1).collect();
        assert_eq!(
            workers_seen,
            (0..workers as i64).collect::<Vec<_>>(),
            "{what}"
        );
    }
    // The same input again into w1, on 2 workers: every `_id` is replaced.
    let out = data.root.join("again");
    ok(data
        .replay(&out, 2, &uri_flags(&server.uri("w1")))
        .output()
        .unwrap());
    let files = csv_tables(&out);
    assert_same_tables(
        &files,
        &server.collections("w1", &files),
        "a second run into the same database",
    );
    // The indexes by key and by time, as pymongo sees them.
    let indexes = server.python(
        "import sys\nfrom pymongo import MongoClient\n\
         db = MongoClient(sys.argv[1]).get_default_database()\n\
         print(sorted(db['bars_1s'].index_information()))",
        &[&server.uri("w1")],
    );
    assert_eq!(
        indexes.trim(),
        "['_id_', 'bars_1s_by_key', 'bars_1s_by_time']"
    );
}

#[test]
fn the_shared_sample_in_mongodb_equals_its_csv_files() {
    let Some(sample) = shared_sample() else {
        eprintln!(
            "../shared is not beside the project: the generated data of the other tests stands"
        );
        return;
    };
    let dir = temp_dir();
    let server = MongoServer::start();
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out-{workers}"));
        let database = format!("s{workers}");
        let uri = server.uri(&database);
        let o = replay_sample(&sample, &out, workers, &["--mongodb", &uri]);
        assert!(o.status.success(), "{}", stderr(&o));
        let files = csv_tables(&out);
        assert_same_tables(&files, &server.collections(&database, &files), workers);
    }
}

/// Kills a checkpointed run at `point`, checks the database holds only final
/// rows, resumes it and checks the collections equal `expected`. Without
/// transactions a sink's rows are there before it commits.
fn kill_and_resume(
    data: &Data,
    server: &MongoServer,
    database: &str,
    point: &str,
    expected: &Tables,
) {
    let transactions = !database.starts_with("standalone");
    let what = format!("killed at {point} ({database})");
    let out = data.root.join(format!("out-{database}"));
    let ck = data.root.join(format!("ck-{database}"));
    let uri = server.uri(database);
    let first = data
        .checkpointed(&out, &ck, 2, &uri_flags(&uri))
        .env("EDDY_CRASH_AT", point)
        .output()
        .unwrap();
    assert_eq!(
        first.status.signal(),
        Some(9),
        "{what}: not killed: {}",
        stderr(&first)
    );
    assert!(
        stderr(&first).contains("exactly once"),
        "{what}: {}",
        stderr(&first)
    );
    let before = server.collections(database, expected);
    assert_subset(expected, &before, &what);
    if point.starts_with("sink-after-commit") || (!transactions && point.starts_with("sink-")) {
        let rows: usize = before.values().map(|(_, r)| r.len()).sum();
        assert!(rows > 0, "{what}: the sink's first write left no rows");
    }
    let resumed = data
        .checkpointed(&out, &ck, 2, &["--mongodb", &uri, "--resume"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{what}: {}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("resuming from the checkpoint of epoch"),
        "{what}: {}",
        stderr(&resumed)
    );
    assert_same_tables(expected, &server.collections(database, expected), &what);
    assert_same_files(&data.reference(), &out, &what, &[]);
}

#[test]
fn collections_after_kills_and_resumes_equal_an_uninterrupted_run() {
    let data = small_data();
    let expected = csv_tables(&data.reference());
    let server = MongoServer::start();
    for (n, point) in [
        "mid-write@2",
        "after-manifest@3",
        // The sink's first transaction: a slow server makes it the last
        // but one, taking every epoch committed meanwhile.
        "sink-before-commit@1",
        "sink-after-commit@1",
    ]
    .into_iter()
    .enumerate()
    {
        kill_and_resume(&data, &server, &format!("k{n}"), point, &expected);
    }
}

#[test]
fn a_standalone_server_without_transactions_is_exactly_once_by_upserts() {
    let data = small_data();
    let expected = csv_tables(&data.reference());
    let server = MongoServer::standalone();
    let o = data
        .replay(
            &data.root.join("mode"),
            1,
            &[
                "--checkpoint-dir",
                data.root.join("ck-mode").to_str().unwrap(),
            ],
        )
        .args(["--mongodb", &server.uri("mode")])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("a standalone server without transactions"),
        "{}",
        stderr(&o)
    );
    // Killed after the rows and progress of a checkpoint are written but
    // before the sink says so: the resumed run writes that epoch again.
    kill_and_resume(
        &data,
        &server,
        "standalone0",
        "sink-before-commit@1",
        &expected,
    );
    kill_and_resume(&data, &server, "standalone1", "mid-write@2", &expected);
}

#[test]
fn the_server_killed_and_started_again_mid_run_loses_and_doubles_nothing() {
    let data = small_data();
    let mut server = MongoServer::start();
    let out = data.root.join("out");
    let ck = data.root.join("ck");
    // The sink is slower than the replay (the server is): it is still
    // writing when the server goes away.
    let run = data
        .checkpointed(&out, &ck, 2, &uri_flags(&server.uri("restarted")))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.progress("restarted").is_empty() {
        assert!(Instant::now() < deadline, "no transaction committed");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    std::thread::sleep(Duration::from_millis(3000));
    server.start_again();
    assert_sink_retried(&run.wait_with_output().unwrap(), &out, "mongodb");
    let files = csv_tables(&out);
    assert_same_tables(
        &files,
        &server.collections("restarted", &files),
        "after the restart",
    );
    assert_same_files(&data.reference(), &out, "after the restart", &[]);
}

/// The small replay with `--mongodb uri` must fail within 30 s with one
/// line containing `expected`.
fn assert_fails_with(data: &Data, uri: &str, expected: &str) {
    data.assert_fails_with(&uri_flags(uri), "eddy: error: mongodb sink:", expected);
}

#[test]
fn a_bad_uri_no_server_and_refused_authentication_fail_with_one_line() {
    let data = data_of(400, 300);
    assert_fails_with(&data, "mongodb://127.0.0.1:notaport/x", "port");
    assert_fails_with(&data, "postgres://127.0.0.1/x", "mongodb");
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_fails_with(
        &data,
        &format!("mongodb://127.0.0.1:{nobody}/x?directConnection=true"),
        "Server selection timeout",
    );
    let server = MongoServer::with_auth();
    let uri = format!(
        "mongodb://eddy:wrong@127.0.0.1:{}/x?directConnection=true",
        server.port
    );
    assert_fails_with(&data, &uri, "authentication failed");
}

#[test]
fn collections_after_a_rescale_from_2_to_3_workers_equal_an_uninterrupted_run() {
    let data = small_data();
    let expected = csv_tables(&data.reference());
    let server = MongoServer::start();
    let uri = server.uri("rescaled");
    let out = data.root.join("out-rescaled");
    let ck = data.root.join("ck-rescaled");
    let first = data
        .checkpointed(&out, &ck, 2, &uri_flags(&uri))
        .env("EDDY_CRASH_AT", "sink-after-commit@1")
        .output()
        .unwrap();
    assert_eq!(first.status.signal(), Some(9), "{}", stderr(&first));
    let resumed = data
        .checkpointed(&out, &ck, 3, &["--mongodb", &uri, "--resume"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("rescaling: the checkpoint of epoch"),
        "{}",
        stderr(&resumed)
    );
    assert_same_tables(
        &expected,
        &server.collections("rescaled", &expected),
        "2 -> 3",
    );
    let workers: Vec<(i64, i64)> = server
        .progress("rescaled")
        .iter()
        .map(|p| (p.0, p.1))
        .collect();
    assert_eq!(workers, vec![(0, 0), (0, 1), (0, 2)]);
}
