//! A throwaway PostgreSQL cluster for the tests: Debian's initdb and pg_ctl
//! (`make postgres` installs them), a cluster in a temporary folder owned by
//! the `postgres` user when the tests run as root (PostgreSQL refuses to run
//! as root), listening on a free loopback port with its socket in that
//! folder. Stopped and removed when dropped, a failed test included.
//! `start_tls` also serves TLS, with a server certificate for 127.0.0.1
//! signed by a CA made for the test (openssl).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Whether commands run as the `postgres` user (the tests run as root).
    as_postgres: bool,
    /// Server options beyond the defaults (TLS).
    extra: String,
}

/// The folder of Debian's PostgreSQL programs (the newest version), or of
/// the ones on PATH.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(b) = found.pop() {
        return b;
    }
    let out = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .expect("sh");
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !p.is_empty(),
        "PostgreSQL is not installed: run `make postgres`"
    );
    Path::new(&p).parent().unwrap().to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pg {
    /// Creates and starts a cluster.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A cluster that also serves TLS; its CA's certificate is `ca()`.
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn start_with(tls: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("otklik-pg-")
            .tempdir()
            .unwrap();
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let mut extra = String::new();
        if tls {
            let d = dir.path();
            let sh = |cmd: &str| {
                let out = Command::new("sh")
                    .args(["-c", cmd])
                    .current_dir(d)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{cmd}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=otklik-test-ca");
            sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1");
            sh("printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile ext.cnf");
            sh("chmod 600 server.key");
            extra = format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                d.display()
            );
        }
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:", dir.path().to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot give the cluster's folder to the postgres user");
        }
        let pg = Self {
            dir,
            bin: bindir(),
            port: free_port(),
            as_postgres,
            extra,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data().to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(program);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // psql's own connections in plain text (they are not counted as TLS)
        c.args(args)
            .current_dir(self.dir.path())
            .env("PGSSLMODE", "disable");
        c
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .cmd(program, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again, after `stop`), waiting until it accepts.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB{}",
            self.port,
            self.dir.path().display(),
            self.extra
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once (connections are cut, as in a crash).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Creates a database; its URL.
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// The URL of `db` over TLS (verified against `ca()`).
    pub fn tls_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=require",
            self.port
        )
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL in `db`; what it prints (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .cmd(
                "psql",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-Atqc",
                    sql,
                ],
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .cmd(
                "pg_ctl",
                &[
                    "-D",
                    self.data().to_str().unwrap(),
                    "-m",
                    "immediate",
                    "stop",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
