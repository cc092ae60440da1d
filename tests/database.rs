//! Database sinks against real databases, read back with the databases' own
//! clients (`sqlite3`, `psql`), not eddy's:
//! - every query's table equals its CSV file, on 1 and 2 workers, for
//!   SQLite and PostgreSQL, for generated data and for the shared sample
//!   (when it is there);
//! - a run killed inside a checkpoint, after one, inside a sink transaction
//!   and after one, then resumed, leaves tables equal to an uninterrupted
//!   run's, and holds only final rows before the resume;
//! - a run resumed on other layouts (1 × 2 → 1 × 3 → 2 processes) leaves
//!   tables equal to an uninterrupted run's, for SQLite and PostgreSQL;
//! - PostgreSQL stopped and started mid-run: the sink waits, counts its
//!   retries, and the tables equal the run's files;
//! - a bad URL, a missing permission and a full disk fail the run with one line.

mod common;
#[path = "common/databases.rs"]
mod databases;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/tables.rs"]
mod tables;
#[path = "common/tls.rs"]
mod tls;

use common::*;
use databases::*;
use faults::*;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};
use tables::*;

/// The same from PostgreSQL's `schema`, read with `psql --csv` (a table
/// not created yet has no rows).
fn postgres_tables(pg: &Postgres, schema: &str, like: &Tables) -> Tables {
    like.iter()
        .map(|(t, (header, _))| {
            let columns: Vec<String> = header.iter().map(|c| format!("\"{c}\"")).collect();
            let sql = format!("SELECT {} FROM {schema}.\"{t}\"", columns.join(", "));
            let o = pg.psql(&sql);
            let mut rows: Vec<Vec<String>> = if o.status.success() {
                csv::Reader::from_reader(o.stdout.as_slice())
                    .records()
                    .map(|r| r.unwrap().iter().map(normalise).collect())
                    .collect()
            } else {
                Vec::new()
            };
            rows.sort();
            (t.clone(), (header.clone(), rows))
        })
        .collect()
}

#[test]
fn sqlite_and_postgres_tables_equal_the_csv_files_on_1_and_2_workers() {
    let data = data();
    let pg = Postgres::start();
    for workers in [1, 2] {
        let what = format!("{workers} worker(s)");
        let out = data.root.join(format!("out-{workers}"));
        let db = data.root.join(format!("r-{workers}.db"));
        let schema = format!("w{workers}");
        let o = data
            .replay(&out, workers, &["--sqlite", db.to_str().unwrap()])
            .args(["--postgres", &pg.url(), "--postgres-schema", &schema])
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("sqlite sink to"), "{}", stderr(&o));
        assert!(stderr(&o).contains("at least once"), "{}", stderr(&o));
        let files = csv_tables(&out);
        assert!(
            files["ewma"].1.len() > 1000 && files["alerts"].1.len() > 1,
            "{what}"
        );
        assert_same_tables(
            &files,
            &sqlite_tables(&db, &files),
            &format!("sqlite, {what}"),
        );
        let in_schema = postgres_tables(&pg, &schema, &files);
        assert_same_tables(&files, &in_schema, &format!("postgres, {what}"));
        let m = metrics(&out);
        let rows: usize = files.values().map(|(_, r)| r.len()).sum();
        assert_eq!(m["sinks"]["sqlite"]["rows"], rows as u64, "{what}");
        assert_eq!(m["sinks"]["postgres"]["rows"], rows as u64, "{what}");
        // One progress row per worker, each with every file's bytes.
        let progress = sqlite3_json(
            &db,
            "SELECT worker, epoch, published FROM eddy_progress ORDER BY worker",
        );
        assert_eq!(progress.len(), workers, "{what}: {progress:?}");
        let published: BTreeMap<String, u64> =
            serde_json::from_str(progress[0]["published"].as_str().unwrap()).unwrap();
        assert_eq!(
            published["ewma.csv"],
            std::fs::metadata(out.join("ewma.csv")).unwrap().len(),
            "{what}"
        );
    }
    // Replaying again into the same database replaces the rows: no doubles
    // (PostgreSQL: `COPY` meets the rows already there, so they are staged
    // and upserted).
    let out = data.root.join("again");
    let db = data.root.join("r-1.db");
    ok(data
        .replay(&out, 2, &["--sqlite", db.to_str().unwrap()])
        .args(["--postgres", &pg.url(), "--postgres-schema", "w1"])
        .output()
        .unwrap());
    let files = csv_tables(&out);
    assert_same_tables(
        &files,
        &sqlite_tables(&db, &files),
        "a second run into the same file",
    );
    assert_same_tables(
        &files,
        &postgres_tables(&pg, "w1", &files),
        "a second run into the same schema",
    );
}

#[test]
fn the_shared_sample_in_sqlite_and_postgres_equals_its_csv_files() {
    let Some(sample) = shared_sample() else {
        eprintln!(
            "../shared is not beside the project: the generated data of the other tests stands"
        );
        return;
    };
    let dir = temp_dir();
    let pg = Postgres::start();
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out-{workers}"));
        let db = dir.path().join(format!("s-{workers}.db"));
        let schema = format!("s{workers}");
        let (db_path, url) = (db.to_str().unwrap(), pg.url());
        let flags = [
            "--sqlite",
            db_path,
            "--postgres",
            &url,
            "--postgres-schema",
            &schema,
        ];
        let o = replay_sample(&sample, &out, workers, &flags);
        assert!(o.status.success(), "{}", stderr(&o));
        let files = csv_tables(&out);
        assert_same_tables(&files, &sqlite_tables(&db, &files), workers);
        assert_same_tables(&files, &postgres_tables(&pg, &schema, &files), workers);
        // eddy query answers from the same table.
        let o = eddy(&[
            "query",
            "--sqlite",
            db.to_str().unwrap(),
            "SELECT count(*) AS n FROM bars_1s",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            String::from_utf8(o.stdout).unwrap(),
            format!("n\n{}\n", files["bars_1s"].1.len())
        );
    }
}

/// Kills a checkpointed run at `point`, checks the database holds only final
/// rows, resumes it and checks the tables equal `expected`.
fn kill_and_resume(
    data: &Data,
    sink: &[&str],
    point: &str,
    workers: usize,
    read: &dyn Fn() -> Tables,
    expected: &Tables,
) {
    let what = format!("{} killed at {point} on {workers} worker(s)", sink[0]);
    let out = data.root.join(format!("out{}-{point}", sink[0]));
    let ck = data.root.join(format!("ck{}-{point}", sink[0]));
    let first = data
        .checkpointed(&out, &ck, workers, sink)
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
    let before = read();
    assert_subset(expected, &before, &what);
    if point.starts_with("sink-after-commit") {
        let rows: usize = before.values().map(|(_, r)| r.len()).sum();
        assert!(rows > 0, "{what}: the committed transaction left no rows");
    }
    let mut flags = sink.to_vec();
    flags.push("--resume");
    let resumed = data
        .checkpointed(&out, &ck, workers, &flags)
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{what}: {}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("resuming from the checkpoint of epoch"),
        "{what}: {}",
        stderr(&resumed)
    );
    assert_same_tables(expected, &read(), &what);
}

const KILL_POINTS: [(&str, usize); 4] = [
    ("mid-write@2", 2),
    ("after-manifest@4", 1),
    ("sink-before-commit@3", 2),
    ("sink-after-commit@2", 2),
];

/// A run with a database sink killed and resumed on other layouts: 1 × 2
/// → 1 × 3 → `cluster -n 2 -w 1`, each killed right after a sink
/// transaction but the last. The tables equal an uninterrupted
/// run's, and `eddy_progress` holds rows of the last layout's workers only
/// (`progress` reads its (process, worker) pairs).
fn rescaled_with_sink(
    data: &Data,
    sink: &[&str],
    read: &dyn Fn() -> Tables,
    progress: &dyn Fn() -> Vec<(String, String)>,
    expected: &Tables,
) {
    let what = format!("{} across rescales", sink[0]);
    let out = data.root.join(format!("rescaled{}", sink[0]));
    let ck = data.root.join(format!("ck-rescaled{}", sink[0]));
    let mut resume = sink.to_vec();
    resume.push("--resume");
    let runs = [
        (data.checkpointed(&out, &ck, 2, sink), "sink-after-commit@2"),
        // Its own first transaction: after its first checkpoint, or at its
        // end when the one it resumed from was the last.
        (
            data.checkpointed(&out, &ck, 3, &resume),
            "sink-after-commit@1",
        ),
    ];
    for (mut run, point) in runs {
        let o = run.env("EDDY_CRASH_AT", point).output().unwrap();
        assert_eq!(o.status.signal(), Some(9), "{what}: {}", stderr(&o));
        assert_subset(expected, &read(), &what);
    }
    let last = data
        .checkpointed_cluster(&out, &ck, 2, &resume)
        .output()
        .unwrap();
    assert!(last.status.success(), "{what}: {}", stderr(&last));
    // From 1 × 3's checkpoint, or from 1 × 2's when 1 × 3 took none.
    assert!(
        stderr(&last).contains("rescaling: the checkpoint of epoch")
            && stderr(&last).contains("this run is 2 processes × 1 worker"),
        "{what}: {}",
        stderr(&last)
    );
    assert_same_tables(expected, &read(), &what);
    let pairs = |v: &[(u8, u8)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(p, w)| (p.to_string(), w.to_string()))
            .collect()
    };
    assert_eq!(
        progress(),
        pairs(&[(0, 0), (1, 1)]),
        "{what}: eddy_progress"
    );
}

#[test]
fn sqlite_and_postgres_tables_after_rescales_equal_an_uninterrupted_run() {
    let data = data();
    let expected = csv_tables(&data.reference());
    let db = data.root.join("rescaled.db");
    let progress_sql = "SELECT process, worker FROM eddy_progress ORDER BY process, worker";
    rescaled_with_sink(
        &data,
        &["--sqlite", db.to_str().unwrap()],
        &|| sqlite_tables(&db, &expected),
        &|| {
            sqlite3_json(&db, progress_sql)
                .iter()
                .map(|r| (r["process"].to_string(), r["worker"].to_string()))
                .collect()
        },
        &expected,
    );
    let pg = Postgres::start();
    let url = pg.url();
    rescaled_with_sink(
        &data,
        &["--postgres", &url, "--postgres-schema", "rescaled"],
        &|| postgres_tables(&pg, "rescaled", &expected),
        &|| {
            pg.psql_rows(&progress_sql.replace("eddy_progress", "rescaled.eddy_progress"))
                .into_iter()
                .map(|r| (r[0].clone(), r[1].clone()))
                .collect()
        },
        &expected,
    );
}

#[test]
fn sqlite_tables_after_kills_and_resumes_equal_an_uninterrupted_run() {
    let data = data();
    let expected = csv_tables(&data.reference());
    for (point, workers) in KILL_POINTS {
        let db = data.root.join(format!("{point}.db"));
        let read = || sqlite_tables(&db, &expected);
        kill_and_resume(
            &data,
            &["--sqlite", db.to_str().unwrap()],
            point,
            workers,
            &read,
            &expected,
        );
    }
}

#[test]
fn postgres_tables_after_kills_and_resumes_equal_an_uninterrupted_run() {
    let data = data();
    let expected = csv_tables(&data.reference());
    let pg = Postgres::start();
    for (n, (point, workers)) in KILL_POINTS.into_iter().enumerate() {
        let schema = format!("k{n}");
        let read = || postgres_tables(&pg, &schema, &expected);
        let url = pg.url();
        kill_and_resume(
            &data,
            &["--postgres", &url, "--postgres-schema", &schema],
            point,
            workers,
            &read,
            &expected,
        );
    }
}

#[test]
fn postgres_stopped_and_started_mid_run_loses_and_doubles_nothing() {
    let pg = Postgres::start();
    let dir = temp_dir();
    let out = dir.path().join("out");
    let ck = dir.path().join("ck");
    // A live run (generators in real time, 10x): long enough to stop the
    // server under it.
    let run = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "run",
            "--quiet",
            "--no-dashboard",
            "--duration",
            "6",
            "--speed",
            "10",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--checkpoint-dir")
        .arg(&ck)
        .args(["--checkpoint-interval-ms", "2000", "--postgres", &pg.url()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = pg.psql("SELECT count(*) FROM eddy_progress");
        if o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("\n0\n") {
            break;
        }
        assert!(Instant::now() < deadline, "no transaction committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.stop();
    std::thread::sleep(Duration::from_millis(2500));
    pg.start_again();
    assert_sink_retried(&run.wait_with_output().unwrap(), &out, "postgres");
    // The demo keeps ewma out of its files (`files = false`): PostgreSQL
    // gets every row the query made, by the run's own count.
    let written: Vec<&str> = TABLES.iter().copied().filter(|t| *t != "ewma").collect();
    let files = csv_tables_of(&out, &written);
    assert!(files["bars_1s"].1.len() > 100);
    assert_same_tables(
        &files,
        &postgres_tables(&pg, "public", &files),
        "after the restart",
    );
    assert!(!out.join("ewma.csv").exists() && !out.join("ewma").exists());
    let made = metrics(&out)["queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "trades/ewma")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();
    let o = pg.psql("SELECT count(*) FROM public.ewma");
    let stored: u64 = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap();
    assert!(made > 1000, "ewma made {made} rows");
    assert_eq!(stored, made, "ewma rows in PostgreSQL");
}

/// The replay with `sink` flags must fail with one line containing `expected`.
fn assert_fails_with(data: &Data, sink: &[&str], expected: &str) {
    data.assert_fails_with(sink, "eddy: error:", expected);
}

#[test]
fn bad_urls_missing_permissions_and_full_disks_fail_with_one_line() {
    let data = data();
    let pg = Postgres::start();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_fails_with(
        &data,
        &[
            "--postgres",
            &format!("postgresql://eddy@127.0.0.1:{free}/postgres"),
        ],
        "cannot connect to eddy@127.0.0.1",
    );
    assert_fails_with(
        &data,
        &["--postgres", "postgresql://eddy@127.0.0.1:notaport/x"],
        "bad URL",
    );
    // A role that may connect but not create tables.
    assert!(pg.psql("CREATE ROLE reader LOGIN").status.success());
    let reader = format!("postgresql://reader@127.0.0.1:{}/postgres", pg.port);
    assert_fails_with(
        &data,
        &["--postgres", &reader],
        "permission denied for schema public",
    );
    let missing = data.root.join("no/such/dir/r.db");
    assert_fails_with(
        &data,
        &["--sqlite", missing.to_str().unwrap()],
        "cannot open",
    );
    // A full disk: the database on a 192 KiB file system.
    let small = data.root.join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=192k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success())
        || Command::new("sudo")
            .args(["-n", "mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs"])
            .arg(&small)
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "the full-disk check mounts a small tmpfs (as root or with sudo -n)"
    );
    let db = small.join("r.db");
    let o = data
        .replay(
            &data.root.join("full-out"),
            1,
            &["--sqlite", db.to_str().unwrap()],
        )
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(&small).status();
    let _ = Command::new("sudo")
        .args(["-n", "umount"])
        .arg(&small)
        .status();
    assert!(!o.status.success());
    let last = stderr(&o).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("eddy: error: sqlite sink:") && last.contains("full"),
        "{}",
        stderr(&o)
    );
}

/// `eddy query --postgres URL SQL`: its output, or its one-line error.
fn eddy_query(url: &str, sql: &str) -> Result<String, String> {
    let o = eddy(&["query", "--postgres", url, sql]);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(stderr(&o))
    }
}

#[test]
fn postgres_over_tls_checks_the_certificate_as_sslmode_says() {
    let data = data_of(20_000, 15_000);
    let pg = Postgres::start();
    let pki = tls::make_pki(&data.root.join("pki"), &["localhost"]);
    let stranger = tls::make_pki(&data.root.join("other-pki"), &["localhost"]);
    pg.require_tls(&pki.cert, &pki.key);
    let url =
        |host: &str, query: &str| format!("postgresql://eddy@{host}:{}/postgres?{query}", pg.port);
    let ca = pki.ca.to_str().unwrap();
    let full = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let is_tls = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let said = eddy_query(&full, is_tls).unwrap();
    assert!(said.starts_with("ssl,version\nt,TLSv1."), "{said}");
    // The server refuses plain text; verify-full refuses a name the
    // certificate does not hold and a CA that did not sign it.
    let e = eddy_query(&url("localhost", "sslmode=disable"), is_tls).unwrap_err();
    assert!(e.contains("no encryption"), "{e}");
    let by_ip = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let e = eddy_query(&by_ip, is_tls).unwrap_err();
    assert!(
        e.contains("NotValidForName") || e.contains("not valid for name"),
        "{e}"
    );
    let other = stranger.ca.to_str().unwrap();
    let e = eddy_query(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other}"),
        ),
        is_tls,
    )
    .unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
    // verify-ca checks the signer only; require without a root checks nothing.
    let ca_only = url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    assert!(eddy_query(&ca_only, is_tls).unwrap().contains("\nt,"));
    assert!(eddy_query(&url("127.0.0.1", "sslmode=require"), is_tls)
        .unwrap()
        .contains("\nt,"));
    let e = eddy_query(
        &url("localhost", &format!("sslmode=require&sslrootcert={other}")),
        is_tls,
    )
    .unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
    // The sink over verify-full: the tables equal the files, read back by psql.
    let out = data.root.join("out");
    let o = data
        .replay(&out, 2, &[])
        .args(["--postgres", &full, "--postgres-schema", "tls"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let files = csv_tables(&out);
    assert_same_tables(
        &files,
        &postgres_tables(&pg, "tls", &files),
        "postgres over TLS",
    );
    // A sink with the wrong CA fails in one line.
    data.assert_fails_with(
        &[
            "--postgres",
            &url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
        ],
        "eddy: error: postgres sink: cannot connect to eddy@localhost",
        "invalid peer certificate",
    );
}
