//! Durable TCP ingest: records sent with `eddy send` to `eddy run --listen`
//! give the results the same files give when read directly; after the engine
//! is killed and resumed, the senders reconnect and every record is accounted
//! for exactly once; when the engine falls behind, senders are held back and
//! the logged backlog stays under its bound.

mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/tls.rs"]
mod tls;

use common::*;
use faults::*;
use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pipeline reading the data files directly; with --listen its sources are TCP.
fn pipeline(data: &Data) -> PathBuf {
    let path = data.root.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"tcp\"\n[engine]\nworkers = 2\nstatus = false\n\
             [sources.trades]\nkind = \"csv\"\npath = {:?}\n\
             [sources.interactions]\nkind = \"csv\"\npath = {:?}\n",
            data.trades, data.interactions
        ),
    )
    .unwrap();
    path
}

fn engine(pipeline: &Path, out: &Path, port: u16, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
    c.arg("run")
        .arg(pipeline)
        .args(["--quiet", "--no-dashboard", "--idle-exit", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "info");
    c
}

fn sender(file: &Path, port: u16, rate: Option<u64>) -> Running {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
    c.arg("send")
        .arg(file)
        .arg("--to")
        .arg(format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped());
    if let Some(r) = rate {
        c.args(["--rate", &r.to_string()]);
    }
    Running(Some(c.spawn().unwrap()))
}

/// A child process killed if the test fails before it ends.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn finish(mut child: Running) -> String {
    let o = child.0.take().unwrap().wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

/// The pipeline's results with the files read directly.
fn reference(data: &Data, pipeline: &Path) -> PathBuf {
    let out = data.root.join("reference");
    ok(Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "run",
            pipeline.to_str().unwrap(),
            "--quiet",
            "--no-dashboard",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap());
    out
}

/// Data lines of a CSV file.
fn data_lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).unwrap().lines().count() as u64 - 1
}

/// The TCP results equal the direct ones; malformed.csv names lines by
/// sender, so only its row count is compared.
fn assert_same_as_files(reference: &Path, out: &Path, what: &str) {
    let rows = |dir: &Path| {
        std::fs::read_to_string(dir.join("malformed.csv"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(rows(reference), rows(out), "{what}: malformed rows");
    let strip = |dir: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap();
            if p.is_file() && name != "malformed.csv" {
                std::fs::copy(&p, to.join(name)).unwrap();
            }
        }
        std::fs::write(to.join("malformed.csv"), "x\nx\n").unwrap();
    };
    let (a, b) = (reference.with_extension("cmp"), out.with_extension("cmp"));
    strip(reference, &a);
    strip(out, &b);
    assert_same_results(&a, &b, what);
}

#[test]
fn records_sent_over_tcp_give_the_results_of_the_files() {
    let data = data();
    let pipeline = pipeline(&data);
    let reference = reference(&data, &pipeline);
    let port = free_port();
    let out = data.root.join("tcp");
    let engine = Running(Some(
        engine(&pipeline, &out, port, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // The sender retries until the engine listens.
    let trades = sender(&data.trades, port, None);
    let interactions = sender(&data.interactions, port, None);
    let said = finish(trades) + &finish(interactions);
    assert!(said.contains("over 1 connection"), "{said}");
    let log = finish(engine);
    assert!(log.contains("listening for records on"), "{log}");
    assert_same_as_files(&reference, &out, "over TCP");
    let ingest = &metrics(&out)["ingest"];
    assert_eq!(ingest["lines"]["trades"], data_lines(&data.trades));
    assert_eq!(
        ingest["lines"]["interactions"],
        data_lines(&data.interactions)
    );
    let segments = std::fs::read_dir(out.join("input-log/trades"))
        .unwrap()
        .count();
    assert!(segments >= 1, "the trades log is a folder of segments");
}

#[test]
fn a_killed_engine_resumes_from_its_log_and_nothing_is_lost_or_doubled() {
    let log = killed_and_resumed(&[], &[]).log;
    assert!(!log.contains("rescaling"), "{log}");
}

#[test]
fn a_killed_engine_resumed_on_more_or_fewer_workers_takes_each_line_once() {
    for workers in ["3", "1"] {
        let log = killed_and_resumed(&[], &["--workers", workers]).log;
        assert!(
            log.contains("rescaling") && log.contains("this run is 1 process × "),
            "{log}"
        );
    }
}

/// Input log segments of 20 KiB: trimmed many times over in a run.
const SMALL_SEGMENT_MIB: &str = "0.02";
const SMALL_SEGMENT_BYTES: u64 = 20_971;

#[test]
fn the_input_log_is_trimmed_behind_the_checkpoints_and_a_resume_after_a_trim_is_exact() {
    let run = killed_and_resumed(&["--input-log-segment-mib", SMALL_SEGMENT_MIB], &[]);
    // When the engine was killed (checkpoints up to event time 6 s, a
    // dozen lines a millisecond), the oldest segments were gone already.
    assert!(
        run.first_segment_at_kill > 0,
        "no trades segment was removed before the kill"
    );
    // The run ends without a checkpoint at the end of its streams: what is
    // left is what the two newest checkpoints still read. The interactions
    // (20 s of event time) ended long before the trades (40 s) and their
    // readers stood at the end in the last checkpoints.
    let ingest = &run.metrics["ingest"];
    let left = |stream: &str| ingest["log_bytes"][stream].as_u64().unwrap();
    assert!(
        left("interactions") <= 3 * SMALL_SEGMENT_BYTES,
        "interactions: {run:?}"
    );
    assert!(
        2 * left("trades") < run.sent_bytes["trades"],
        "trades: {run:?}"
    );
}

/// What [`killed_and_resumed`] saw.
#[derive(Debug)]
struct Resumed {
    /// The resumed run's log.
    log: String,
    /// The resumed run's metrics.json.
    metrics: serde_json::Value,
    /// The base offset of the first trades log segment at the kill.
    first_segment_at_kill: u64,
    /// Bytes of each data file sent.
    sent_bytes: std::collections::BTreeMap<&'static str, u64>,
}

/// The engine on 2 workers (with `first_flags`), killed after event time
/// 6 s while senders keep sending, resumed with `resume_flags`: equal to
/// the files read directly.
fn killed_and_resumed(first_flags: &[&str], resume_flags: &[&str]) -> Resumed {
    let data = data();
    let pipeline = pipeline(&data);
    let reference = reference(&data, &pipeline);
    let port = free_port();
    let out = data.root.join("tcp");
    let ck = data.root.join("ck");
    let flags = [
        "--checkpoint-dir",
        ck.to_str().unwrap(),
        "--checkpoint-interval-ms",
        "500",
    ];
    let first_run = [&flags[..], first_flags].concat();
    let mut first = Running(Some(
        engine(&pipeline, &out, port, &first_run)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let process = first.0.as_mut().unwrap();
    // About 2 s of sending; the engine dies part-way.
    let trades = sender(&data.trades, port, Some(40_000));
    let interactions = sender(&data.interactions, port, Some(30_000));
    while eddy::checkpoint::last_complete_epoch(&ck, 0).is_none_or(|e| e < 1_700_000_006_000) {
        assert!(process.try_wait().unwrap().is_none(), "the first run ended");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    process.kill().unwrap();
    assert_eq!(process.wait().unwrap().signal(), Some(9));
    drop(first);
    let first_segment_at_kill = std::fs::read_dir(ck.join("input-log/trades"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.trim_end_matches(".seg").parse::<u64>().unwrap()
        })
        .min()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut resume = first_run.clone();
    resume.push("--resume");
    resume.extend_from_slice(resume_flags);
    let second = Running(Some(
        engine(&pipeline, &out, port, &resume)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let said = finish(trades) + &finish(interactions);
    assert_eq!(said.matches("over 2 connection(s)").count(), 2, "{said}");
    let log = finish(second);
    assert!(log.contains("resuming from the checkpoint"), "{log}");
    assert_same_as_files(&reference, &out, "killed and resumed");
    let m = metrics(&out);
    let lines = data_lines(&data.trades) + data_lines(&data.interactions);
    let r = &m["records"];
    assert_eq!(
        r["generated"], lines,
        "every line sent was taken exactly once"
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    Resumed {
        log,
        metrics: m,
        first_segment_at_kill,
        sent_bytes: [
            ("trades", size(&data.trades)),
            ("interactions", size(&data.interactions)),
        ]
        .into(),
    }
}

#[test]
fn senders_are_held_back_when_the_engine_falls_behind() {
    let data = data();
    let pipeline = pipeline(&data);
    let port = free_port();
    let out = data.root.join("tcp");
    let engine = Running(Some(
        engine(&pipeline, &out, port, &["--max-backlog-mib", "1"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let trades = sender(&data.trades, port, None);
    let interactions = sender(&data.interactions, port, None);
    finish(trades);
    finish(interactions);
    finish(engine);
    let m = metrics(&out);
    let ingest = &m["ingest"];
    // The bound, plus at most one frame appended by each of the two senders.
    let bound = (1 << 20) + 2 * 300_000;
    let backlog = ingest["max_backlog_bytes"].as_u64().unwrap();
    assert!(backlog <= bound, "backlog {backlog} bytes over {bound}");
    assert!(
        ingest["senders_held_s"].as_f64().unwrap() > 0.0,
        "senders were never held back: {ingest}"
    );
    assert_eq!(m["records"]["unaccounted"], 0);
    assert_eq!(
        m["records"]["generated"],
        data_lines(&data.trades) + data_lines(&data.interactions)
    );
}

/// Connects to the engine, writes `first`, and returns the last line it
/// answers before it closes (empty when none).
fn answer_to(port: u16, first: &[u8]) -> String {
    use std::io::{BufRead, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let _ = socket.write_all(first);
    let lines = std::io::BufReader::new(socket).lines();
    let answers: Vec<String> = lines.map_while(Result::ok).collect();
    answers.last().cloned().unwrap_or_default()
}

#[test]
fn hostile_senders_are_refused_counted_and_change_nothing() {
    let data = data();
    let pipeline = pipeline(&data);
    let reference = reference(&data, &pipeline);
    let port = free_port();
    let out = data.root.join("guarded");
    let token = data.root.join("token");
    std::fs::write(&token, "9f8e7d6c5b4a\n").unwrap();
    let wrong = data.root.join("wrong");
    std::fs::write(&wrong, "9f8e7d6c5b4b\n").unwrap();
    let flags = [
        "--ingest-token-file",
        token.to_str().unwrap(),
        "--max-line-kib",
        "64",
        "--max-connections",
        "3",
        "--max-pending",
        "3",
        "--hello-timeout",
        "2",
        "--ingest-idle-timeout",
        "2",
    ];
    let engine = Running(Some(
        engine(&pipeline, &out, port, &flags)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let send = |file: &Path, token: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
        c.arg("send")
            .arg(file)
            .args(["--to", &format!("127.0.0.1:{port}"), "--rate", "8000"])
            .arg("--token-file")
            .arg(token)
            .stderr(Stdio::piped());
        Running(Some(c.spawn().unwrap()))
    };
    // The good senders stay connected about 7–10 s (and retry until the
    // engine listens); the hostile ones come meanwhile.
    let trades = send(&data.trades, &token);
    let interactions = send(&data.interactions, &token);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let refused = send(&data.trades, &wrong)
        .0
        .take()
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("refused the sender: wrong token"),
        "{}",
        stderr(&refused)
    );
    // A TLS sender on this plain-text port: refused at once, not after the idle timeout.
    let pki = tls::make_pki(&data.root.join("pki"), &["localhost"]);
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("send")
        .arg(&data.trades)
        .args(["--to", &format!("localhost:{port}"), "--tls-ca"])
        .arg(&pki.ca)
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("TLS with localhost:"), "{}", stderr(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(answer_to(port, b"trades\n").contains("no token"));
    assert!(answer_to(port, b"GET / HTTP/1.1\r\n").contains("must name the stream"));
    // One byte over the limit (more, unread when the engine closes, would
    // reset the connection before its answer is read).
    let mut long = b"trades hostile token=9f8e7d6c5b4a\n".to_vec();
    long.extend(vec![b'7'; (64 << 10) + 1]);
    let answer = answer_to(port, &long);
    assert!(
        answer.contains("a line longer than 64 KiB (after 0 lines)"),
        "{answer}"
    );
    let connect = || {
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        std::io::BufReader::new(c)
    };
    let told = |c: &mut std::io::BufReader<std::net::TcpStream>| {
        let mut line = String::new();
        c.read_line(&mut line).unwrap();
        line
    };
    // The two good senders and one more fill the three sender slots.
    // (Every connection waits among the pending until its first line.)
    let mut holder = connect();
    holder
        .get_mut()
        .write_all(b"trades holder token=9f8e7d6c5b4a\n")
        .unwrap();
    assert_eq!(told(&mut holder), "ok 0\n");
    let busy = answer_to(port, b"trades token=9f8e7d6c5b4a\n");
    assert!(
        busy.contains("busy: 3 senders are connected already"),
        "{busy}"
    );
    // Connections that never speak wait apart from senders: a fourth
    // pushes out the oldest.
    let mut silent: Vec<_> = (0..3).map(|_| connect()).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    silent.push(connect());
    assert!(told(&mut silent[0]).starts_with("error: pushed out by newer connections"));
    // Past the hello timeout the silent ones are closed; past the idle
    // timeout the quiet sender is dropped.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    for c in &mut silent[1..] {
        assert_eq!(told(c), "error: no first line within 2 s\n");
    }
    assert!(told(&mut holder).contains("sent nothing for the idle timeout"));
    let started = std::time::Instant::now();
    assert_eq!(answer_to(port, b""), "error: no first line within 2 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let said = finish(trades) + &finish(interactions);
    assert!(said.contains("over 1 connection"), "{said}");
    let log = finish(engine);
    assert!(log.contains("refused (token): wrong token"), "{log}");
    assert_same_as_files(&reference, &out, "with hostile senders");
    let ingest = &metrics(&out)["ingest"];
    // Nothing of the refused connections reached the log.
    assert_eq!(ingest["lines"]["trades"], data_lines(&data.trades));
    assert_eq!(
        ingest["lines"]["interactions"],
        data_lines(&data.interactions)
    );
    let refused = &ingest["refused"];
    assert_eq!(refused["token"], 2, "{ingest}");
    assert_eq!(refused["hello"], 1, "{ingest}");
    assert_eq!(refused["line_too_long"], 1, "{ingest}");
    assert_eq!(refused["connections"], 1, "{ingest}");
    assert_eq!(refused["pushed_out"], 1, "{ingest}");
    assert_eq!(refused["hello_timeout"], 4, "{ingest}");
    assert_eq!(refused["idle"], 1, "{ingest}");
    assert_eq!(refused["tls"], 1, "{ingest}");
}

#[test]
fn a_tls_port_takes_tls_senders_with_the_token_and_refuses_the_rest() {
    tls_senders(&data(), None);
    match shared_sample() {
        Some(sample) => tls_senders(
            &data_from(&sample.join("trades.csv"), &sample.join("interactions.csv")),
            Some(&sample),
        ),
        None => {
            println!("the shared sample is not beside the project: checked on generated data only")
        }
    }
}

/// A TLS engine with a token: plain-text, wrong-token, untrusting and
/// wrong-name senders are refused and counted; the two good TLS senders
/// give the files' results (and the shared sample's expected ones).
fn tls_senders(data: &Data, sample: Option<&Path>) {
    let pipeline = pipeline(data);
    // The sample's own expected results are the reference there.
    let reference = match sample {
        None => reference(data, &pipeline),
        Some(_) => PathBuf::new(),
    };
    let port = free_port();
    let out = data.root.join("tls");
    // The certificate names `localhost` only: 127.0.0.1 is a wrong name.
    let pki = tls::make_pki(&data.root.join("pki"), &["localhost"]);
    let stranger = tls::make_pki(&data.root.join("other-pki"), &["localhost"]);
    let token = data.root.join("token");
    std::fs::write(&token, "c0ffee-7e57\n").unwrap();
    let wrong = data.root.join("wrong");
    std::fs::write(&wrong, "c0ffee-7e58\n").unwrap();
    let engine = Running(Some(
        engine(
            &pipeline,
            &out,
            port,
            &[
                "--tls-cert",
                pki.cert.to_str().unwrap(),
                "--tls-key",
                pki.key.to_str().unwrap(),
                "--ingest-token-file",
                token.to_str().unwrap(),
            ],
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    let send = |file: &Path, host: &str, ca: Option<&Path>, token: &Path, rate: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
        c.arg("send")
            .arg(file)
            .args(["--to", &format!("{host}:{port}"), "--rate", rate])
            .arg("--token-file")
            .arg(token)
            .stderr(Stdio::piped());
        if let Some(ca) = ca {
            c.arg("--tls-ca").arg(ca);
        }
        Running(Some(c.spawn().unwrap()))
    };
    let refusal = |file: &Path, host: &str, ca: Option<&Path>, token: &Path| {
        let o = send(file, host, ca, token, "1000")
            .0
            .take()
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert!(!o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let rate = (data_lines(&data.trades) / 6).max(100).to_string();
    let trades = send(&data.trades, "localhost", Some(&pki.ca), &token, &rate);
    let interactions = send(
        &data.interactions,
        "localhost",
        Some(&pki.ca),
        &token,
        &rate,
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let said = refusal(&data.trades, "localhost", None, &token);
    assert!(said.contains("answered in TLS: give --tls-ca"), "{said}");
    let said = refusal(&data.trades, "localhost", Some(&pki.ca), &wrong);
    assert!(said.contains("refused the sender: wrong token"), "{said}");
    let said = refusal(&data.trades, "localhost", Some(&stranger.ca), &token);
    assert!(said.contains("invalid peer certificate"), "{said}");
    let said = refusal(&data.trades, "127.0.0.1", Some(&pki.ca), &token);
    assert!(said.contains("not valid for name"), "{said}");
    let said = finish(trades) + &finish(interactions);
    assert!(said.contains("over 1 connection"), "{said}");
    let log = finish(engine);
    assert!(log.contains("over TLS"), "{log}");
    assert!(log.contains("refused (tls): TLS:"), "{log}");
    let ingest = &metrics(&out)["ingest"];
    assert_eq!(ingest["lines"]["trades"], data_lines(&data.trades));
    assert_eq!(ingest["refused"]["tls"], 3, "{ingest}");
    assert_eq!(ingest["refused"]["token"], 1, "{ingest}");
    let Some(sample) = sample else {
        return assert_same_as_files(&reference, &out, "over TLS");
    };
    assert_matches_sample(sample, &out, "the shared sample sent over TLS");
}
