//! Real databases for the sink tests and their own command-line clients as
//! independent readers: `sqlite3`, and a PostgreSQL server from Debian's
//! package started in a temporary data directory on 127.0.0.1 (stopped and
//! removed when dropped). Missing packages (`sqlite3`, `postgresql`) are
//! installed with apt-get. PostgreSQL refuses to run as root: as root the
//! server runs as the `postgres` user the package creates.
#![allow(dead_code)]

#[path = "apt.rs"]
mod apt;

use super::common::temp_dir;
use super::tables::{normalise, Tables};
use apt::{apt_install, is_root};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Makes sure the `sqlite3` command is there.
pub fn sqlite3_cli() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let has = || Command::new("sqlite3").arg("--version").output().is_ok();
        assert!(
            has() || (apt_install(&["sqlite3"]) && has()),
            "the database tests need the sqlite3 command (apt-get install sqlite3)"
        );
    });
}

/// `sqlite3 -json FILE SQL`: rows as JSON objects (floats with every digit).
pub fn sqlite3_json(db: &Path, sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    sqlite3_cli();
    let o = Command::new("sqlite3")
        .arg("-json")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8(o.stdout).unwrap();
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str::<Vec<serde_json::Value>>(&text)
        .unwrap()
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect()
}

/// The directory of PostgreSQL's server programs, installed if missing.
fn postgres_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let find = || -> Option<PathBuf> {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|b| b.join("initdb").exists() && b.join("psql").exists())
                .collect();
            versions.sort();
            versions.pop()
        };
        find()
            .or_else(|| {
                apt_install(&["postgresql", "postgresql-client"]);
                find()
            })
            .expect(
                "the PostgreSQL tests need Debian's postgresql package \
                 (apt-get install postgresql); this test tried and could not",
            )
    })
    .clone()
}

/// A PostgreSQL server on 127.0.0.1 in a temporary directory.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = temp_dir();
        // The server's user must reach its directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            _dir: dir,
            data,
            port,
            bin,
        };
        let init = pg.as_server_user(
            &pg.bin.join("initdb"),
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-U",
                "eddy",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        pg.start_again();
        pg
    }

    /// Runs a server program as the user the server runs as.
    fn as_server_user(&self, program: &Path, args: &[&str]) -> Output {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.args(args).current_dir("/").output().unwrap()
    }

    /// Starts the server (again, after [`Postgres::stop`]) and waits for it.
    pub fn start_again(&self) {
        let log = self.data.parent().unwrap().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.parent().unwrap().display()
        );
        let o = self.as_server_user(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once (`-m immediate`: connections are cut).
    pub fn stop(&self) {
        let o = self.as_server_user(
            &self.bin.join("pg_ctl"),
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        assert!(
            o.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Turns TLS on with `cert` and `key` (PEM) and refuses every
    /// connection without it (`hostssl` only), then restarts the server.
    pub fn require_tls(&self, cert: &Path, key: &Path) {
        let (server_cert, server_key) =
            (self.data.join("server.crt"), self.data.join("server.key"));
        std::fs::copy(cert, &server_cert).unwrap();
        std::fs::copy(key, &server_key).unwrap();
        std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if is_root() {
            for file in [&server_cert, &server_key] {
                let chown = Command::new("chown").arg("postgres").arg(file).status();
                assert!(chown.is_ok_and(|s| s.success()), "chown postgres {file:?}");
            }
        }
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        std::fs::write(
            self.data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
        )
        .unwrap();
        self.stop();
        self.start_again();
    }

    pub fn url(&self) -> String {
        format!("postgresql://eddy@127.0.0.1:{}/postgres", self.port)
    }

    /// `psql --csv -c SQL`: the server's text of every value.
    pub fn psql(&self, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args([
                "--csv",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(),
                "-c",
                sql,
            ])
            .output()
            .unwrap()
    }

    /// Rows of `psql --csv` without the header.
    pub fn psql_rows(&self, sql: &str) -> Vec<Vec<String>> {
        let o = self.psql(sql);
        assert!(
            o.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        csv::Reader::from_reader(o.stdout.as_slice())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.as_server_user(
            &self.bin.join("pg_ctl"),
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

/// The same from an SQLite file, read with `sqlite3 -json`.
pub fn sqlite_tables(db: &Path, like: &Tables) -> Tables {
    like.iter()
        .map(|(t, (header, _))| {
            let mut rows: Vec<Vec<String>> = sqlite3_json(db, &format!("SELECT * FROM \"{t}\""))
                .iter()
                .map(|row| {
                    header
                        .iter()
                        .map(|c| match &row[c] {
                            serde_json::Value::Null => String::new(),
                            serde_json::Value::String(s) => normalise(s),
                            v => normalise(&v.to_string()),
                        })
                        .collect()
                })
                .collect();
            rows.sort();
            (t.clone(), (header.clone(), rows))
        })
        .collect()
}
