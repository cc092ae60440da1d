//! Test hosts with their own addresses, in network namespaces on a bridge
//! (tests/netns.sh does the work; benches/multihost.sh uses it too).
#![allow(dead_code)]

#[path = "apt.rs"]
mod apt;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// N hosts at 10.77.0.1 .. N, removed (with what runs in them) when dropped.
pub struct TestNet {
    pub tag: String,
    pub hosts: usize,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns.sh")
}

fn netns(args: &[&str]) -> Result<(), String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl TestNet {
    /// Makes the hosts; None, with one printed line saying why, where this
    /// machine cannot (not root, no iproute2, no namespaces).
    pub fn up(tag: &str, hosts: usize) -> Option<TestNet> {
        let tag = format!("{tag}{}", std::process::id() % 10_000);
        let has_ip = Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_ip && !apt::apt_install(&["iproute2"]) {
            println!("multihost: NOT TESTED: no `ip` (iproute2), and it could not be installed");
            return None;
        }
        let _ = netns(&["down", &tag]);
        match netns(&["up", &tag, &hosts.to_string()]) {
            Ok(()) => Some(TestNet { tag, hosts }),
            Err(e) => {
                let _ = netns(&["down", &tag]);
                println!(
                    "multihost: NOT TESTED: this machine cannot make network namespaces ({e})"
                );
                None
            }
        }
    }

    pub fn ip(&self, host: usize) -> String {
        format!("10.77.0.{}", host + 1)
    }

    pub fn namespace(&self, host: usize) -> String {
        format!("eddy-{}-h{host}", self.tag)
    }

    /// A command run inside host `host`.
    pub fn on(&self, host: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespace(host)])
            .arg(program);
        c
    }

    /// Takes host `host`'s cable out of the switch: nothing arrives, nothing is refused.
    pub fn cut(&self, host: usize) {
        netns(&["cut", &self.tag, &host.to_string()]).unwrap();
    }

    pub fn heal(&self, host: usize) {
        netns(&["heal", &self.tag, &host.to_string()]).unwrap();
    }

    /// Starts the delay relay (tests/delay_relay.py) inside `host`: 127.0.0.1:`port`
    /// reaches `target` `delay_ms` ± `jitter_ms` later, both ways.
    pub fn relay(
        &self,
        host: usize,
        port: u16,
        target: &str,
        delay_ms: u32,
        jitter_ms: u32,
    ) -> Child {
        let relay = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delay_relay.py");
        let child = self
            .on(host, "python3")
            .arg(relay)
            .args([
                port.to_string(),
                target.to_string(),
                delay_ms.to_string(),
                jitter_ms.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Listening within a moment: a peer that connects too early retries anyway.
        std::thread::sleep(Duration::from_millis(300));
        child
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Err(e) = netns(&["down", &self.tag]) {
            eprintln!(
                "multihost: could not remove the test hosts {}: {e}",
                self.tag
            );
        }
    }
}

/// Waits for `child` at most `limit`; its exit code, or None if it still runs.
pub fn wait_at_most(child: &mut Child, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `path` holds `text` (a log line), at most `limit`.
pub fn wait_for_text(path: &Path, text: &str, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(text)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
