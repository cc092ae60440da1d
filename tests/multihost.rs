//! eddy on several hosts with their own addresses: three network namespaces
//! on a bridge (tests/netns.sh), one eddy process in each, 1 worker apiece.
//!
//! - a replay split over the hosts and put together by `eddy merge` equals
//!   the single-process results (generated data with disorder, malformed
//!   and late rows; the shared sample, checked by its own comparator, when
//!   it is beside the project), also with one host 20 ± 5 ms away;
//! - a host's process SIGKILLed: the others exit with code 3 and one line
//!   naming it, no panic text, within twice the peer timeout;
//! - a host's cable pulled (no FIN, no RST): every process exits with code 3
//!   within twice the peer timeout; a host's process hung (SIGSTOP): the
//!   others do;
//! - under supervisor loops (deploy/supervise.sh), a SIGKILL and then a 15 s
//!   cut each end with merged results equal to an uninterrupted run;
//! - strangers on a cluster port (junk, a process with the wrong secret)
//!   are dropped with a logged line and change nothing.
//!
//! Needs root and iproute2 (CI runs as root); elsewhere each test prints one
//! line saying it was not tested. The tests take turns: their timing bounds
//! assume the machine's two cores are theirs.

mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/netns.rs"]
mod netns;

use common::*;
use faults::*;
use netns::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
const PORT: u16 = 7100;
const HOSTS: usize = 3;
/// The peer timeout of the failure tests (seconds).
const TIMEOUT_S: u64 = 2;

/// A hostfile of the hosts' own addresses.
fn hostfile(net: &TestNet, dir: &Path) -> PathBuf {
    let path = dir.join("hosts.txt");
    let lines: Vec<String> = (0..HOSTS)
        .map(|h| format!("{}:{PORT}", net.ip(h)))
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `eddy ARGS --processes 3 --process H --hostfile F` inside host H, its
/// stderr to `log`.
fn start(net: &TestNet, host: usize, hosts: &Path, args: &[String], log: &Path) -> Child {
    net.on(host, EDDY)
        .args(args)
        .args([
            "--processes",
            &HOSTS.to_string(),
            "--process",
            &host.to_string(),
        ])
        .arg("--hostfile")
        .arg(hosts)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn replay_args(data: &Data, out: &Path) -> Vec<String> {
    [
        "replay",
        "--quiet",
        "--trades",
        data.trades.to_str().unwrap(),
        "--interactions",
        data.interactions.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--workers",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

/// Merges the hosts' folders with `eddy merge`.
fn merge(dirs: &[PathBuf], out: &Path) {
    let mut args = vec!["merge".to_string()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap().to_string()));
    args.extend(["--out".to_string(), out.to_str().unwrap().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(eddy(&args));
}

fn log_of(dir: &Path, host: usize) -> PathBuf {
    dir.join(format!("host{host}.log"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn three_hosts_give_the_single_process_results_also_with_one_host_20ms_away() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(net) = TestNet::up("rs", HOSTS) else {
        return;
    };
    let data = data();
    let reference = data.reference();
    let dir = temp_dir();
    let hosts = hostfile(&net, dir.path());
    let run_all = |name: &str, hostfiles: &[PathBuf]| -> Vec<PathBuf> {
        let outs: Vec<PathBuf> = (0..HOSTS)
            .map(|h| dir.path().join(format!("{name}-{h}")))
            .collect();
        let mut children: Vec<Child> = (0..HOSTS)
            .map(|h| {
                let log = dir.path().join(format!("{name}-{h}.log"));
                start(&net, h, &hostfiles[h], &replay_args(&data, &outs[h]), &log)
            })
            .collect();
        for (h, c) in children.iter_mut().enumerate() {
            let code = wait_at_most(c, Duration::from_secs(120));
            let log = read(&dir.path().join(format!("{name}-{h}.log")));
            assert_eq!(code, Some(0), "{name}: host {h}:\n{log}");
        }
        outs
    };
    let outs = run_all("plain", &[hosts.clone(), hosts.clone(), hosts.clone()]);
    let merged = dir.path().join("merged");
    merge(&outs, &merged);
    assert_same_results(&reference, &merged, "3 hosts, merged");
    let m = metrics(&merged);
    assert_eq!(m["run"]["process"], serde_json::json!([0, 1, 2]));
    assert_eq!(
        m["cluster"]["peer_timeout_s"], 10.0,
        "the default, recorded"
    );

    // Host 2 reaches hosts 0 and 1 through relays that add 20 ± 5 ms each way
    // (this kernel has no netem); every connection of host 2 is its own
    // (later processes connect to earlier ones), so all its traffic is delayed.
    let far = dir.path().join("hosts-far.txt");
    std::fs::write(
        &far,
        format!("127.0.0.1:7200\n127.0.0.1:7201\n{}:{PORT}\n", net.ip(2)),
    )
    .unwrap();
    let mut relays = [
        net.relay(2, 7200, &format!("{}:{PORT}", net.ip(0)), 20, 5),
        net.relay(2, 7201, &format!("{}:{PORT}", net.ip(1)), 20, 5),
    ];
    let outs = run_all("far", &[hosts.clone(), hosts.clone(), far]);
    for r in relays.iter_mut() {
        let _ = r.kill();
        let _ = r.wait();
    }
    let merged = dir.path().join("merged-far");
    merge(&outs, &merged);
    assert_same_results(&reference, &merged, "3 hosts, one 20 ms away, merged");

    if let Some(sample) = shared_sample() {
        let outs: Vec<PathBuf> = (0..HOSTS)
            .map(|h| dir.path().join(format!("sample-{h}")))
            .collect();
        let mut children: Vec<Child> = (0..HOSTS)
            .map(|h| {
                let args: Vec<String> = [
                    "replay",
                    "--quiet",
                    "--trades",
                    sample.join("trades.csv").to_str().unwrap(),
                    "--interactions",
                    sample.join("interactions.csv").to_str().unwrap(),
                    "--out",
                    outs[h].to_str().unwrap(),
                ]
                .map(String::from)
                .to_vec();
                start(&net, h, &hosts, &args, &log_of(dir.path(), h))
            })
            .collect();
        for c in children.iter_mut() {
            assert_eq!(wait_at_most(c, Duration::from_secs(120)), Some(0));
        }
        let merged = dir.path().join("sample-merged");
        merge(&outs, &merged);
        assert_matches_sample(&sample, &merged, "the shared sample on 3 hosts, merged");
    } else {
        println!("multihost: the shared sample is not beside the project; checked on generated data only");
    }
}

/// A real-time pipeline of `seconds` of event time: long enough to be hit mid-run.
fn slow_pipeline(dir: &Path, seconds: u64) -> PathBuf {
    let path = dir.join("slow.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "slow"
[engine]
timing = "real_time"
speed = 1.0
max_delay_ms = 200
tick_ms = 10

[sources.trades]
kind = "market"
symbols = 10
rate = 1000.0
count = {trades}
seed = 1
disorder_ms = 100

[sources.interactions]
kind = "generator"
users = 200
items = 50
rate = 500.0
count = {interactions}
seed = 2
disorder_ms = 100
"#,
            trades = 1000 * seconds,
            interactions = 500 * seconds
        ),
    )
    .unwrap();
    path
}

fn slow_args(pipeline: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        pipeline.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--start-ms",
        "1700000000000",
        "--peer-timeout-s",
        &TIMEOUT_S.to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The one line a survivor prints, and that nothing of a panic reached stderr.
fn assert_one_line(log: &str, lost: &str, what: &str) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("eddy: cluster: lost"))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: one line, got:\n{log}");
    assert!(lines[0].contains(lost), "{what}: {}", lines[0]);
    assert!(
        !log.contains("panicked") && !log.contains("backtrace") && !log.contains("RUST_BACKTRACE"),
        "{what}: panic text reached the user:\n{log}"
    );
}

/// Waits for each of `hosts` of run `name` to exit, at most `limit`: code 3,
/// one line containing `lost`, and (`silent`) a loss by timeout, not by a
/// closed connection. Returns how long the last one took from `since`.
#[allow(clippy::too_many_arguments)]
fn expect_stopped(
    children: &mut [Child],
    hosts: &[usize],
    dir: &Path,
    name: &str,
    lost: &dyn Fn(usize) -> String,
    silent: bool,
    limit: Duration,
    since: Instant,
) -> Duration {
    for &h in hosts {
        let code = wait_at_most(&mut children[h], limit);
        let log = read(&dir.join(format!("{name}-{h}.log")));
        assert_eq!(code, Some(3), "host {h} after the {name}:\n{log}");
        assert_one_line(&log, &lost(h), name);
        // The heartbeat's read timeout, or TCP_USER_TIMEOUT on data in flight.
        assert!(
            !silent || log.contains("no heartbeat for ") || log.contains("timed out"),
            "host {h}:\n{log}"
        );
    }
    since.elapsed()
}

#[test]
fn a_killed_hung_or_cut_off_host_stops_every_other_within_twice_the_peer_timeout() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(net) = TestNet::up("lo", HOSTS) else {
        return;
    };
    let dir = temp_dir();
    let d = dir.path();
    let hosts = hostfile(&net, d);
    let pipeline = slow_pipeline(d, 60);
    let limit = Duration::from_secs(2 * TIMEOUT_S);
    let start_all = |name: &str| -> Vec<Child> {
        let children: Vec<Child> = (0..HOSTS)
            .map(|h| {
                let out = d.join(format!("{name}-out-{h}"));
                let log = d.join(format!("{name}-{h}.log"));
                start(&net, h, &hosts, &slow_args(&pipeline, &out, &[]), &log)
            })
            .collect();
        for h in 0..HOSTS {
            let log = d.join(format!("{name}-{h}.log"));
            assert!(
                wait_for_text(&log, "joined generation", Duration::from_secs(30)),
                "{name}: host {h} never joined:\n{}",
                read(&log)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
        children
    };

    // SIGKILL on host 1: the kernel closes its sockets.
    let mut children = start_all("kill");
    children[1].kill().unwrap();
    let at = Instant::now();
    let lost_1 = |_| format!("lost process 1 ({}:{PORT})", net.ip(1));
    let took = expect_stopped(&mut children, &[0, 2], d, "kill", &lost_1, false, limit, at);
    println!("multihost: after a SIGKILL the others exited within {took:?}");
    let _ = children[1].wait();

    // Host 2's cable pulled: nothing is refused or reset, nothing arrives.
    let mut children = start_all("cut");
    net.cut(2);
    let at = Instant::now();
    let lost_2 = |h| {
        if h == 2 {
            "lost process ".to_string()
        } else {
            "lost process 2".to_string()
        }
    };
    let took = expect_stopped(
        &mut children,
        &[0, 1, 2],
        d,
        "cut",
        &lost_2,
        true,
        limit,
        at,
    );
    println!("multihost: after a cut every process exited within {took:?}");
    net.heal(2);

    // Host 0's process hung (SIGSTOP): its sockets stay open, it says nothing.
    let mut children = start_all("hung");
    let hung = children[0].id().to_string();
    Command::new("kill")
        .args(["-STOP", &hung])
        .status()
        .unwrap();
    let at = Instant::now();
    let lost_0 = |_| format!("lost process 0 ({}:{PORT})", net.ip(0));
    let took = expect_stopped(&mut children, &[1, 2], d, "hung", &lost_0, true, limit, at);
    println!("multihost: after a hang the others exited within {took:?}");
    let _ = children[0].kill();
    Command::new("kill")
        .args(["-CONT", &hung])
        .status()
        .unwrap();
    let _ = children[0].wait();
}

#[test]
fn under_supervisors_a_kill_and_a_15s_cut_end_with_the_uninterrupted_results() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(net) = TestNet::up("sv", HOSTS) else {
        return;
    };
    let dir = temp_dir();
    let d = dir.path();
    let hosts = hostfile(&net, d);
    let pipeline = slow_pipeline(d, 40);
    let reference = d.join("reference");
    let as_fast = slow_args(&pipeline, &reference, &["--timing", "as-fast"]);
    ok(eddy(
        &as_fast.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let supervise = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/supervise.sh");
    let outs: Vec<PathBuf> = (0..HOSTS).map(|h| d.join(format!("out-{h}"))).collect();
    let pid_file = |h: usize| d.join(format!("eddy-{h}.pid"));
    let mut loops: Vec<Child> = (0..HOSTS)
        .map(|h| {
            let ck = d.join(format!("ck-{h}"));
            let args = slow_args(
                &pipeline,
                &outs[h],
                &[
                    "--checkpoint-dir",
                    ck.to_str().unwrap(),
                    "--checkpoint-interval-ms",
                    "1000",
                ],
            );
            net.on(h, "bash")
                .arg(&supervise)
                .arg(EDDY)
                .args(&args)
                .args(["--processes", "3", "--process", &h.to_string()])
                .arg("--hostfile")
                .arg(&hosts)
                .env("EDDY_PID_FILE", pid_file(h))
                .env("EDDY_RESTART_DELAY_S", "0.2")
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log_of(d, h)).unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    let generations = |h: usize| read(&log_of(d, h)).matches("joined generation").count();
    let wait_generations = |n: usize, what: &str| {
        let until = Instant::now() + Duration::from_secs(60);
        while (0..HOSTS).any(|h| generations(h) < n) {
            assert!(
                Instant::now() < until,
                "{what}: the cluster did not form for the {n}th time:\n{}",
                (0..HOSTS)
                    .map(|h| read(&log_of(d, h)))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_generations(1, "start");
    std::thread::sleep(Duration::from_secs(5));
    let pid = read(&pid_file(1)).trim().to_string();
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    wait_generations(2, "after the kill");
    std::thread::sleep(Duration::from_secs(3));
    net.cut(2);
    std::thread::sleep(Duration::from_secs(15));
    net.heal(2);
    for (h, l) in loops.iter_mut().enumerate() {
        let code = wait_at_most(l, Duration::from_secs(180));
        assert_eq!(
            code,
            Some(0),
            "host {h}'s supervisor:\n{}",
            read(&log_of(d, h))
        );
    }
    assert!(
        generations(0) >= 3,
        "the cluster re-formed after the cut:\n{}",
        read(&log_of(d, 0))
    );
    let merged = d.join("merged");
    merge(&outs, &merged);
    // No late or malformed records in generated data within the disorder bound.
    let empty = ["late.csv", "malformed.csv", "anomalies.csv"];
    assert_same_files(
        &reference,
        &merged,
        "supervised, after a kill and a 15 s cut",
        &empty,
    );
}

#[test]
fn strangers_on_a_cluster_port_are_dropped_and_change_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Host 3 runs no eddy of the cluster: it is the stranger.
    let Some(net) = TestNet::up("st", HOSTS + 1) else {
        return;
    };
    let data = data();
    let reference = data.reference();
    let dir = temp_dir();
    let d = dir.path();
    let hosts = hostfile(&net, d);
    let secret = d.join("secret");
    std::fs::write(&secret, "a secret of the cluster's own\n").unwrap();
    let wrong = d.join("wrong");
    std::fs::write(&wrong, "a guess at the cluster's secret\n").unwrap();
    let with_secret = |out: &Path, file: &Path| {
        let mut a = replay_args(&data, out);
        a.extend([
            "--cluster-secret-file".to_string(),
            file.to_str().unwrap().to_string(),
        ]);
        a
    };
    let outs: Vec<PathBuf> = (0..HOSTS).map(|h| d.join(format!("out-{h}"))).collect();
    // Process 1 starts alone; it listens while it waits for process 0.
    let mut one = start(
        &net,
        1,
        &hosts,
        &with_secret(&outs[1], &secret),
        &log_of(d, 1),
    );
    let port1 = format!("{}:{PORT}", net.ip(1));
    let junk = net
        .on(HOSTS, "python3")
        .args([
            "-c",
            "import socket,sys,time\n\
             for i in range(50):\n\
             \x20   try: s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1); break\n\
             \x20   except OSError: time.sleep(0.1)\n\
             s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n' + bytes(range(256)))\n\
             time.sleep(0.5)",
            &net.ip(1),
            &PORT.to_string(),
        ])
        .status()
        .unwrap();
    assert!(junk.success());
    // An eddy with the wrong secret claims to be process 2 and is refused.
    let impostor_log = d.join("impostor.log");
    let mut impostor = net
        .on(HOSTS, EDDY)
        .args(with_secret(&d.join("impostor-out"), &wrong))
        .args(["--processes", "3", "--process", "2", "--peer-wait-s", "5"])
        .arg("--hostfile")
        .arg({
            let f = d.join("impostor-hosts.txt");
            std::fs::write(
                &f,
                format!("{}:{PORT}\n{port1}\n{}:{PORT}\n", net.ip(0), net.ip(3)),
            )
            .unwrap();
            f
        })
        .stderr(std::fs::File::create(&impostor_log).unwrap())
        .spawn()
        .unwrap();
    // Process 0 comes; the impostor meets it first and is refused there.
    let mut zero = start(
        &net,
        0,
        &hosts,
        &with_secret(&outs[0], &secret),
        &log_of(d, 0),
    );
    let code = wait_at_most(&mut impostor, Duration::from_secs(30));
    assert_eq!(code, Some(4), "the impostor:\n{}", read(&impostor_log));
    assert!(
        read(&impostor_log).contains("cluster secret"),
        "{}",
        read(&impostor_log)
    );
    let mut two = start(
        &net,
        2,
        &hosts,
        &with_secret(&outs[2], &secret),
        &log_of(d, 2),
    );
    for (h, c) in [&mut zero, &mut one, &mut two].into_iter().enumerate() {
        assert_eq!(
            wait_at_most(c, Duration::from_secs(120)),
            Some(0),
            "host {h}:\n{}",
            read(&log_of(d, h))
        );
    }
    let stranger = net.ip(HOSTS);
    assert!(
        read(&log_of(d, 1)).contains(&format!("dropped a connection from {stranger}")),
        "process 1 logs the junk:\n{}",
        read(&log_of(d, 1))
    );
    assert!(
        read(&log_of(d, 0)).contains("could not prove the cluster secret"),
        "process 0 logs the impostor:\n{}",
        read(&log_of(d, 0))
    );
    let merged = d.join("merged");
    merge(&outs, &merged);
    assert_same_results(&reference, &merged, "strangers first, then the cluster");
}
