//! The real `warren-controller serve` as a child process: start, read its
//! addresses, sample its memory and CPU from /proc, and kill it on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The controller binary: `WARREN_CONTROLLER_BIN`, else the one cargo
/// built for this bench with the same profile.
pub fn binary() -> PathBuf {
    std::env::var_os("WARREN_CONTROLLER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_warren-controller")))
}

/// A running controller. Dropping it (also while unwinding from a panic)
/// kills the process by its PID and removes its data directory.
pub struct Controller {
    child: Child,
    pub pid: u32,
    pub fingerprint: String,
    pub quic: SocketAddr,
    pub api: SocketAddr,
    pub token: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    /// With `DATABASE=postgres`: the server the controller keeps its state
    /// in (dropped after the controller, so it stops last).
    _postgres: Option<warren_lab::postgres::Postgres>,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    /// Starts `serve` on SQLite, or with `postgres` on a PostgreSQL server
    /// of its own (Debian's, started here).
    pub fn start(bin: &Path, postgres: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("making a temp dir")?;
        let data = dir.path().join("data");
        let postgres = postgres
            .then(|| -> anyhow::Result<_> {
                let server = warren_lab::postgres::Postgres::start()?;
                let url = server.create_database("bench")?;
                Ok((server, url))
            })
            .transpose()
            .context("starting PostgreSQL")?;
        let database: Vec<String> = match &postgres {
            Some((_, url)) => vec!["--database".into(), url.clone()],
            None => vec![],
        };
        let out = Command::new(bin)
            .args(["token", "create", "--scope", "admin", "--name", "bench"])
            .arg("--data-dir")
            .arg(&data)
            .args(&database)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!("token create: {}", String::from_utf8_lossy(&out.stderr));
        }
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        let log = dir.path().join("controller.log");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(&database)
            .args([
                "--listen-quic",
                "127.0.0.1:0",
                "--listen-api",
                "127.0.0.1:0",
            ])
            // The default log level (info), whatever the caller's shell says.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).context("creating the log")?)
            .spawn()
            .context("starting warren-controller serve")?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // From here on the guard owns the child, so an error still kills it.
        let mut controller = Self {
            child,
            pid,
            fingerprint: String::new(),
            quic: ([0, 0, 0, 0], 0).into(),
            api: ([0, 0, 0, 0], 0).into(),
            token,
            log,
            _dir: dir,
            _postgres: postgres.map(|(server, _)| server),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = 0;
        while seen < 3 {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .context("controller did not print its addresses")?;
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            match key {
                "fingerprint" => controller.fingerprint = value.to_owned(),
                "quic" => controller.quic = value.parse().context("quic address")?,
                "api" => {
                    let addr = value.trim_start_matches("http://");
                    controller.api = addr.parse().context("api address")?;
                }
                _ => continue,
            }
            seen += 1;
        }
        Ok(controller)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the controller exited: {status}"),
            None => Ok(()),
        }
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        Memory::of(self.pid)
    }

    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.pid.to_string())
    }

    /// Waits until the controller has used less than 10 ms of CPU in a
    /// 300 ms window, so that one measurement does not pay for the last.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.cpu_seconds()?;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.cpu_seconds()?;
            if now - last < 0.010 {
                return Ok(());
            }
            last = now;
        }
        bail!("the controller stayed busy for 30 s")
    }

    /// The last lines of the controller's log, for error reports.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib = line.split_whitespace().nth(1).context("empty field")?;
            Ok(kib.parse()?)
        };
        Ok(Self {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }
}

/// User plus system CPU time of a process (all its threads), in seconds.
/// `pid` may be `self`.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let (_, rest) = stat.rsplit_once(')').context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            // USER_HZ is 100 on every architecture Warren runs on.
            .unwrap_or(100.0)
    })
}
