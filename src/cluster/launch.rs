//! `eddy cluster`: runs one job as N local processes of a timely cluster, the
//! way it would run on N hosts, and merges what they write (`merge.rs`).
//!
//! It picks N free ports on 127.0.0.1, writes a hostfile, starts
//! `eddy <run|replay ...> --processes N --process I --hostfile F --workers W
//! --out DIR/process-I` for each I, forwards their output with a `[pI]`
//! prefix, and fails (stopping the others) as soon as one process fails. When
//! all succeed, each result file is the concatenation of the processes' files
//! under one header, and `metrics.json` is their merged summary (counts added,
//! latency histograms merged). Generators and file sources are partitioned by
//! global worker index, so the merged results equal a single process's.

use crate::checkpoint;
use crate::metrics::{Recovery, Summary};
use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What `eddy cluster` was asked.
pub struct Launch {
    pub processes: usize,
    pub workers: usize,
    /// The `run ...` or `replay ...` command line each process runs.
    pub command: Vec<String>,
    /// When a process dies, restart all of them from the last checkpoint, at
    /// most this many times (0: fail instead).
    pub max_restarts: usize,
}

/// The value of `flag` (`--flag V` or `--flag=V`) in a command line.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(flag)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_string)
        }
    })
}

/// The value of `--out`/`-o` in a command line, and the command line without it.
fn take_out(args: &[String]) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let mut rest = Vec::new();
    let mut out = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--out" || a == "-o" {
            out = Some(
                args.get(i + 1)
                    .ok_or_else(|| anyhow!("--out needs a folder"))?
                    .into(),
            );
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("--out=") {
            out = Some(v.into());
        } else {
            rest.push(a.clone());
        }
        i += 1;
    }
    let out = out.ok_or_else(|| anyhow!("eddy cluster needs --out DIR in the command it runs"))?;
    Ok((out, rest))
}

fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    // Hold all listeners at once so that the ports differ, then release them.
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("cannot find free local ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Starts the processes, waits for them (restarting them all from the last
/// checkpoint when one dies, if asked), merges their results.
pub fn launch(launch: &Launch) -> anyhow::Result<Summary> {
    let first = launch.command.first().map(String::as_str);
    if !matches!(first, Some("run") | Some("replay")) {
        bail!(
            "eddy cluster runs `run ...` or `replay ...` after `--`, got {:?}",
            first.unwrap_or("")
        );
    }
    if launch.processes == 0 || launch.workers == 0 {
        bail!("--processes and --workers must be at least 1");
    }
    let (out, command) = take_out(&launch.command)?;
    let checkpoint_dir = match flag_value(&command, "--checkpoint-dir") {
        Some(d) => Some(PathBuf::from(d)),
        None if launch.max_restarts > 0 => bail!(
            "--restart-on-failure needs --checkpoint-dir DIR in the command it runs: \
             the restarted processes resume from its last checkpoint"
        ),
        None => None,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let dirs: Vec<PathBuf> = (0..launch.processes)
        .map(|i| out.join(format!("process-{i}")))
        .collect();
    let mut recoveries = Vec::new();
    // The death the current attempt recovers from.
    let mut last_failure: Option<Failure> = None;
    let mut attempt = 1;
    loop {
        let mut args = command.clone();
        if attempt > 1 && !args.iter().any(|a| a == "--resume") {
            args.push("--resume".into());
        }
        // A restart resumes from the checkpoint every process has complete.
        let resumed_epoch = (attempt > 1)
            .then(|| last_epoch_of_all(checkpoint_dir.as_deref(), launch.processes))
            .flatten();
        let running = start(launch, &out, &dirs, &args, attempt)?;
        let mut back_at = None;
        let outcome = running.wait(|| {
            // Recovered once every process has completed a checkpoint past the one resumed from.
            if back_at.is_none() && attempt > 1 {
                let now = last_epoch_of_all(checkpoint_dir.as_deref(), launch.processes);
                if now.is_some() && now > resumed_epoch {
                    back_at = Some(Instant::now());
                }
            }
        });
        if let Some(failure) = last_failure.take() {
            let back = back_at.unwrap_or_else(Instant::now);
            recoveries.push(Recovery {
                failed_process: failure.process,
                status: failure.status,
                resumed_epoch,
                recovery_s: back.duration_since(failure.noticed).as_secs_f64(),
            });
        }
        match outcome {
            Ok(()) => break,
            Err(failure) if attempt <= launch.max_restarts => {
                eprintln!(
                    "eddy cluster: process {} died ({}); restarting all {} processes from the last checkpoint (restart {attempt} of at most {})",
                    failure.process, failure.status, launch.processes, launch.max_restarts
                );
                last_failure = Some(failure);
                attempt += 1;
            }
            Err(failure) => {
                let restarts = if launch.max_restarts > 0 {
                    format!(" after {} restart(s)", attempt - 1)
                } else {
                    String::new()
                };
                bail!(
                    "process {} failed ({}){restarts}; stopped the others",
                    failure.process,
                    failure.status
                );
            }
        }
    }
    let mut summary = super::merge::merge_folders(&dirs, &out, super::merge::Inputs::Consume)?;
    summary.recoveries = recoveries;
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    Ok(summary)
}

/// The least last complete checkpoint epoch over the processes; none until each has one.
fn last_epoch_of_all(dir: Option<&Path>, processes: usize) -> Option<u64> {
    let dir = dir?;
    (0..processes)
        .map(|p| checkpoint::last_complete_epoch(dir, p))
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .min()
}

/// The processes of one attempt, with the threads that forward their output.
struct Running {
    children: Vec<Child>,
    forwarders: Vec<std::thread::JoinHandle<()>>,
    /// A forwarder's output ended: its process has most likely exited (the
    /// wait wakes at once rather than at its next poll).
    output_ended: std::sync::mpsc::Receiver<()>,
}

/// How a process died.
struct Failure {
    process: usize,
    status: String,
    noticed: Instant,
}

/// Starts one process per index on fresh ports; attempt `k` > 1 is told so
/// in `EDDY_ATTEMPT` (injected crash points fire in the first attempt only).
fn start(
    launch: &Launch,
    out: &Path,
    dirs: &[PathBuf],
    command: &[String],
    attempt: usize,
) -> anyhow::Result<Running> {
    let hostfile = out.join("hostfile.txt");
    let hosts: Vec<String> = free_ports(launch.processes)?
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    std::fs::write(&hostfile, hosts.join("\n") + "\n")?;
    // Real-time generators of all processes share one clock origin.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let exe = std::env::current_exe().context("cannot find the eddy executable")?;
    let (ended, output_ended) = std::sync::mpsc::channel();
    let mut running = Running {
        children: Vec::new(),
        forwarders: Vec::new(),
        output_ended,
    };
    for (i, dir) in dirs.iter().enumerate() {
        let mut child = Command::new(&exe)
            .args(command)
            .args(["--origin-ms", &now.to_string()])
            .args(["--workers", &launch.workers.to_string()])
            .args([
                "--processes",
                &launch.processes.to_string(),
                "--process",
                &i.to_string(),
            ])
            .arg("--hostfile")
            .arg(&hostfile)
            .arg("--out")
            .arg(dir)
            .env("EDDY_ATTEMPT", attempt.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start process {i}"))?;
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let ended = ended.clone();
            running.forwarders.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = writeln!(std::io::stderr(), "[p{i}] {line}");
                }
                let _ = ended.send(());
            }));
        }
        running.children.push(child);
    }
    Ok(running)
}

impl Running {
    /// Waits for every process, calling `poll` every few ms; on the first
    /// failure kills the others and says which failed.
    fn wait(mut self, mut poll: impl FnMut()) -> Result<(), Failure> {
        let outcome = self.wait_children(&mut poll);
        for f in self.forwarders.drain(..) {
            let _ = f.join();
        }
        outcome
    }

    fn wait_children(&mut self, poll: &mut impl FnMut()) -> Result<(), Failure> {
        let mut done = vec![false; self.children.len()];
        loop {
            poll();
            let mut failed = None;
            for (i, (child, done)) in self.children.iter_mut().zip(done.iter_mut()).enumerate() {
                if *done {
                    continue;
                }
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => *done = true,
                    Ok(Some(status)) => failed = Some((i, status.to_string())),
                    Ok(None) => {}
                    Err(e) => failed = Some((i, format!("cannot be waited for: {e}"))),
                }
                if failed.is_some() {
                    break;
                }
            }
            if let Some((process, status)) = failed {
                let noticed = Instant::now();
                for other in self.children.iter_mut() {
                    let _ = other.kill();
                    let _ = other.wait();
                }
                return Err(Failure {
                    process,
                    status,
                    noticed,
                });
            }
            if done.iter().all(|d| *d) {
                return Ok(());
            }
            // Polled every 20 ms, or at once when an output ends; once all
            // have, the exits follow within moments.
            let wait = self.output_ended.recv_timeout(Duration::from_millis(20));
            if wait == Err(RecvTimeoutError::Disconnected) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
