//! A TCP bulk transfer between two namespaces, checked end to end: the
//! receiver must see exactly the bytes the sender generated (length and
//! FNV-1a digest of a seeded stream).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{LabError, Result};
use crate::netns::Netns;
use crate::prng::{Fnv64, XorShift};

const CHUNK: usize = 64 * 1024;

/// What to move and how.
#[derive(Debug, Clone)]
pub struct TransferSpec {
    pub bytes: u64,
    pub port: u16,
    /// Bytes per second to pace the sender at; `None` sends flat out.
    pub rate: Option<u64>,
    /// Bound on the whole transfer, connection setup included.
    pub timeout: Duration,
    pub seed: u64,
}

impl TransferSpec {
    /// `mib` MiB flat out on port 5201 with a 45 s bound.
    pub fn mib(mib: u64) -> TransferSpec {
        TransferSpec {
            bytes: mib << 20,
            port: 5201,
            rate: None,
            timeout: Duration::from_secs(45),
            seed: 0x5eed,
        }
    }
}

/// A finished, verified transfer.
#[derive(Debug, Clone)]
pub struct TransferReport {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl TransferReport {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// A transfer in flight.
#[derive(Debug)]
pub struct Transfer {
    spec: TransferSpec,
    dst: SocketAddr,
    started: Instant,
    received: Arc<AtomicU64>,
    sender: JoinHandle<io::Result<(u64, u64)>>,
    receiver: JoinHandle<io::Result<(u64, u64)>>,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

fn receive(
    listener: TcpListener,
    deadline: Instant,
    received: &AtomicU64,
) -> io::Result<(u64, u64)> {
    listener.set_nonblocking(true)?;
    let (mut stream, _) = loop {
        match listener.accept() {
            Ok(conn) => break conn,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(timed_out("no connection arrived"));
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    let mut digest = Fnv64::default();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out("transfer did not finish in time"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = crate::eintr::restart(|| stream.read(&mut buf))?;
        if n == 0 {
            return Ok((total, digest.finish()));
        }
        digest.update(&buf[..n]);
        total += n as u64;
        received.store(total, Ordering::Relaxed);
    }
}

fn send(
    sock: Socket,
    dst: SocketAddr,
    spec: &TransferSpec,
    deadline: Instant,
) -> io::Result<(u64, u64)> {
    let left = deadline.saturating_duration_since(Instant::now());
    sock.connect_timeout(&dst.into(), left.max(Duration::from_millis(1)))?;
    let mut stream: TcpStream = sock.into();
    let mut rng = XorShift::new(spec.seed);
    let mut digest = Fnv64::default();
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < spec.bytes {
        let n = usize::try_from(spec.bytes - sent).map_or(CHUNK, |left| left.min(CHUNK));
        rng.fill(&mut buf[..n]);
        digest.update(&buf[..n]);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out("transfer did not finish in time"));
        }
        stream.set_write_timeout(Some(left))?;
        stream.write_all(&buf[..n])?;
        sent += n as u64;
        if let Some(rate) = spec.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            thread::sleep(due.saturating_sub(start.elapsed()));
        }
    }
    stream.shutdown(Shutdown::Write)?;
    Ok((sent, digest.finish()))
}

impl Transfer {
    /// Listens on `dst:port` inside `to` and starts sending from `from`.
    pub fn start(from: &Netns, to: &Netns, dst: IpAddr, spec: TransferSpec) -> Result<Transfer> {
        let addr = SocketAddr::new(dst, spec.port);
        let listener = to
            .run(|| TcpListener::bind(addr))?
            .map_err(|e| LabError::io(format!("listening on {addr} in {}", to.name()), e))?;
        let domain = Domain::for_address(addr);
        let sock = from
            .run(|| Socket::new(domain, Type::STREAM, Some(Protocol::TCP)))?
            .map_err(|e| LabError::io(format!("opening a TCP socket in {}", from.name()), e))?;
        let started = Instant::now();
        let deadline = started + spec.timeout;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let receiver = thread::spawn(move || receive(listener, deadline, &counter));
        let send_spec = spec.clone();
        let sender = thread::spawn(move || send(sock, addr, &send_spec, deadline));
        Ok(Transfer {
            spec,
            dst: addr,
            started,
            received,
            sender,
            receiver,
        })
    }

    /// Bytes the receiver has read so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits for both ends and checks that every byte arrived intact.
    pub fn wait(self) -> Result<TransferReport> {
        let join = |h: JoinHandle<io::Result<(u64, u64)>>, side: &str| -> Result<(u64, u64)> {
            h.join()
                .map_err(|_| LabError::Invalid(format!("transfer {side} thread panicked")))?
                .map_err(|e| LabError::io(format!("TCP transfer to {} ({side})", self.dst), e))
        };
        let sent = join(self.sender, "sender");
        let got = join(self.receiver, "receiver");
        let elapsed = self.started.elapsed();
        let ((sent, sent_digest), (got, got_digest)) = (sent?, got?);
        if sent != self.spec.bytes || got != sent || got_digest != sent_digest {
            return Err(LabError::Output {
                what: format!("TCP transfer to {}", self.dst),
                detail: format!(
                    "sent {sent} bytes (digest {sent_digest:016x}), received {got} (digest {got_digest:016x})"
                ),
            });
        }
        Ok(TransferReport {
            bytes: got,
            elapsed,
        })
    }
}

/// Moves `spec.bytes` from `from` to `dst` in `to` and verifies them.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    dst: IpAddr,
    spec: TransferSpec,
) -> Result<TransferReport> {
    Transfer::start(from, to, dst, spec)?.wait()
}
