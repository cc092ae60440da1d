//! Debian packages for the tests that need programs from outside cargo
//! (chromium, PostgreSQL, sqlite3): installed with apt-get, as root or
//! through `sudo -n`.

use std::process::Command;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// Installs `packages`; whether it worked.
pub fn apt_install(packages: &[&str]) -> bool {
    let root = is_root();
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c.status().is_ok_and(|s| s.success())
    };
    apt(&["update", "-qq"]) && apt(&[&["install", "-y", "-qq"][..], packages].concat())
}
