//! A real PostgreSQL server for tests, from Debian's packages: `initdb`
//! into a temporary directory, then `pg_ctl start` on a loopback port with
//! a socket directory of its own. PostgreSQL refuses to run as root, so a
//! root test runs it as the `postgres` user (who must be able to reach the
//! directory); anyone else runs it as themselves. Trust authentication on
//! loopback, user `warren`. Dropping the server stops it and removes the
//! directory.
//!
//! Environment: `WARREN_PG_BIN`, the directory of `initdb`, `pg_ctl` and
//! `psql` (default: the newest `/usr/lib/postgresql/*/bin`, else `PATH`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::command::{output, run};
use crate::{LabError, Result};

/// The role tests connect as.
pub const USER: &str = "warren";

/// One running server; stopped when dropped.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `Some("postgres")` when the test runs as root.
    run_as: Option<String>,
    running: bool,
}

impl Postgres {
    /// Initialises a cluster and starts it.
    pub fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let run_as = crate::lab::is_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("warren-pg-")
            .tempdir()
            .map_err(|e| LabError::io("making PostgreSQL's directory", e))?;
        if let Some(user) = &run_as {
            give_to(dir.path(), user)?;
        }
        let mut server = Postgres {
            dir,
            bin,
            port: free_port()?,
            run_as,
            running: false,
        };
        let data = server.data_dir();
        let mut initdb = server.tool("initdb");
        initdb.arg("-D").arg(&data).args([
            "--no-sync",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "-U",
            USER,
        ]);
        run(&mut initdb)?;
        server.resume()?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for one of the server's tools, as the server's user.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The URL of database `name` through the server's Unix socket, which
    /// reaches it from any network namespace on this machine.
    pub fn socket_url(&self, name: &str) -> String {
        format!(
            "postgres://{USER}@localhost/{name}?host={}&port={}",
            self.dir.path().display(),
            self.port
        )
    }

    /// Makes an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(LabError::Invalid(format!("database name {name:?}")));
        }
        self.sql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// Runs `sql` in database `name` with `psql`; returns what it printed
    /// (unaligned, tuples only).
    pub fn sql(&self, name: &str, sql: &str) -> Result<String> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(name))
            .args(["-c", sql]);
        let out = run(&mut psql)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops the server at once, as a crash would (`-m immediate`): the
    /// next start recovers from its write-ahead log.
    pub fn kill(&mut self) -> Result<()> {
        self.stop_with("immediate")
    }

    /// Starts a stopped server again on the same port and data.
    pub fn resume(&mut self) -> Result<()> {
        let data = self.data_dir();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut start = self.tool("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "30", "-o", &options, "start"]);
        if let Err(e) = run(&mut start) {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            return Err(LabError::Output {
                what: "pg_ctl start".into(),
                detail: format!("{e}\nserver log:\n{log}"),
            });
        }
        self.running = true;
        Ok(())
    }

    fn stop_with(&mut self, mode: &str) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut stop = self.tool("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "30", "-m", mode, "stop"]);
        run(&mut stop)?;
        self.running = false;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop_with("immediate") {
            eprintln!("stopping PostgreSQL in {}: {e}", self.dir.path().display());
        }
    }
}

/// A server shared by the tests of one process that overlap in time, each
/// with a database of its own: it starts with the first and stops when the
/// last [`TestDatabase`] is dropped.
static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(1);

/// A fresh, empty database; its server stays up while this lives.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub server: Arc<Postgres>,
}

impl TestDatabase {
    pub fn new() -> Result<TestDatabase> {
        let server = {
            let mut shared = SHARED
                .lock()
                .map_err(|_| LabError::Invalid("the shared PostgreSQL lock is poisoned".into()))?;
            match shared.upgrade() {
                Some(server) => server,
                None => {
                    let server = Arc::new(Postgres::start()?);
                    *shared = Arc::downgrade(&server);
                    server
                }
            }
        };
        let n = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
        let url = server.create_database(&format!("test_{}_{n}", std::process::id()))?;
        Ok(TestDatabase { url, server })
    }
}

/// The directory of PostgreSQL's server binaries.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WARREN_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let version: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("pg_ctl").exists().then_some((version, bin))
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some((_, bin)) = versions.into_iter().max_by_key(|(v, _)| *v) {
        return Ok(bin);
    }
    // On PATH, then: an empty directory joins to the bare name.
    let found = output(Command::new("sh").args(["-c", "command -v pg_ctl"]))?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    match Path::new(&path).parent() {
        Some(dir) if !path.is_empty() => Ok(dir.to_path_buf()),
        _ => Err(LabError::Invalid(
            "PostgreSQL's server binaries are missing: apt-get install postgresql, \
             or set WARREN_PG_BIN"
                .into(),
        )),
    }
}

/// Gives `dir` to `user`, so the server running as them can write it.
fn give_to(dir: &Path, user: &str) -> Result<()> {
    let mut chown = Command::new("chown");
    chown.arg(format!("{user}:")).arg(dir);
    run(&mut chown).map(|_| ())
}

/// A loopback TCP port nothing listens on now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LabError::io("finding a free port for PostgreSQL", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LabError::io("finding a free port for PostgreSQL", e))
}
