//! `eddy cluster`: runs one job as N local processes of a timely cluster, the
//! way it would run on N hosts, and merges what they write.
//!
//! It picks N free ports on 127.0.0.1, writes a hostfile, starts
//! `eddy <run|replay ...> --processes N --process I --hostfile F --workers W
//! --out DIR/process-I` for each I, forwards their output with a `[pI]`
//! prefix, and fails (stopping the others) as soon as one process fails. When
//! all succeed, each result file is the concatenation of the processes' files
//! under one header, and `metrics.json` is their merged summary (counts added,
//! latency histograms merged). Generators and file sources are partitioned by
//! global worker index, so the merged results equal a single process's.

use crate::metrics::Summary;
use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `eddy cluster` was asked.
pub struct Launch {
    pub processes: usize,
    pub workers: usize,
    /// The `run ...` or `replay ...` command line each process runs.
    pub command: Vec<String>,
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

/// Starts the processes, waits for them, merges their results.
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
    let (out, mut command) = take_out(&launch.command)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let hostfile = out.join("hostfile.txt");
    let hosts: Vec<String> = free_ports(launch.processes)?
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    std::fs::write(&hostfile, hosts.join("\n") + "\n")?;
    // Real-time generators of all processes share one clock origin.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    command.extend(["--origin-ms".to_string(), now.to_string()]);
    let exe = std::env::current_exe().context("cannot find the eddy executable")?;
    let mut children: Vec<Child> = Vec::new();
    let mut forwarders = Vec::new();
    for i in 0..launch.processes {
        let dir = out.join(format!("process-{i}"));
        let mut child = Command::new(&exe)
            .args(&command)
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
            .arg(&dir)
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
            forwarders.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = writeln!(std::io::stderr(), "[p{i}] {line}");
                }
            }));
        }
        children.push(child);
    }
    let failure = wait_all(&mut children);
    for f in forwarders {
        let _ = f.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let dirs: Vec<PathBuf> = (0..launch.processes)
        .map(|i| out.join(format!("process-{i}")))
        .collect();
    merge_csv_files(&dirs, &out)?;
    let parts: Vec<Summary> = dirs
        .iter()
        .map(|d| {
            let path = d.join("metrics.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let summary = Summary::merge(&parts)?;
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    for d in &dirs {
        std::fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
    }
    Ok(summary)
}

/// Waits for every process; on the first failure stops the others and says which failed.
fn wait_all(children: &mut [Child]) -> Option<anyhow::Error> {
    let mut done = vec![false; children.len()];
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) if status.success() => done[i] = true,
                Ok(Some(status)) => {
                    for other in children.iter_mut() {
                        let _ = other.kill();
                        let _ = other.wait();
                    }
                    return Some(anyhow!("process {i} failed ({status}); stopped the others"));
                }
                Ok(None) => {}
                Err(e) => return Some(anyhow!("cannot wait for process {i}: {e}")),
            }
        }
        if done.iter().all(|d| *d) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Concatenates each CSV file of the process folders under a single header.
fn merge_csv_files(dirs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    let names: Vec<String> = std::fs::read_dir(&dirs[0])?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".csv"))
        .collect();
    for name in names {
        let mut merged = std::io::BufWriter::new(std::fs::File::create(out.join(&name))?);
        for (i, dir) in dirs.iter().enumerate() {
            let file = std::fs::File::open(dir.join(&name))
                .with_context(|| format!("process {i} wrote no {name}"))?;
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = line?;
                if n > 0 || i == 0 {
                    writeln!(merged, "{line}")?;
                }
            }
        }
        merged.flush()?;
    }
    Ok(())
}
