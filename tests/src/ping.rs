//! ICMP echo ("ping") from inside a namespace, over raw sockets, so tests
//! need no ping binary and count replies exactly.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{LabError, Result};
use crate::netns::Netns;

const PAYLOAD_LEN: usize = 56;
static NEXT_ID: AtomicU16 = AtomicU16::new(0);

/// Outcome of a series of echo requests.
#[derive(Debug, Clone)]
pub struct PingReport {
    pub dst: IpAddr,
    pub sent: u32,
    pub received: u32,
    /// One line per request, in the style of ping(8).
    pub lines: Vec<String>,
}

impl PingReport {
    pub fn render(&self) -> String {
        let loss = (100 * (self.sent - self.received))
            .checked_div(self.sent)
            .unwrap_or(0);
        format!(
            "PING {dst}\n{}\n--- {dst} ping statistics ---\n{} packets transmitted, {} received, {loss}% packet loss\n",
            self.lines.join("\n"),
            self.sent,
            self.received,
            dst = self.dst,
        )
    }
}

/// A raw ICMP socket opened inside a namespace, aimed at one destination.
#[derive(Debug)]
pub struct Pinger {
    // A raw socket behaves like a datagram socket for send_to/recv_from;
    // std's UdpSocket gives those calls without unsafe buffer handling.
    sock: UdpSocket,
    dst: IpAddr,
    id: u16,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Truncation is the point: the folded sum fits in 16 bits.
    !(sum as u16)
}

impl Pinger {
    pub fn open(ns: &Netns, dst: IpAddr) -> Result<Pinger> {
        let (domain, proto) = match dst {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let sock = ns
            .run(|| Socket::new(domain, Type::RAW, Some(proto)))?
            .map_err(|e| LabError::io(format!("opening a raw ICMP socket in {}", ns.name()), e))?;
        let id = (std::process::id() as u16) ^ NEXT_ID.fetch_add(0x1357, Ordering::Relaxed);
        Ok(Pinger {
            sock: sock.into(),
            dst,
            id,
        })
    }

    fn request(&self, seq: u16) -> Vec<u8> {
        // Kernel fills the ICMPv6 checksum (it needs the pseudo-header);
        // for ICMPv4 it is ours to compute.
        let kind = if self.dst.is_ipv6() { 128 } else { 8 };
        let mut pkt = vec![kind, 0, 0, 0];
        pkt.extend_from_slice(&self.id.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend((0..PAYLOAD_LEN).map(|i| i as u8));
        if self.dst.is_ipv4() {
            let sum = checksum(&pkt);
            pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        pkt
    }

    /// Whether `buf` (from `from`) is the reply to request `seq`.
    fn is_reply(&self, buf: &[u8], from: IpAddr, seq: u16) -> bool {
        let icmp = match self.dst {
            IpAddr::V4(_) => {
                let Some(&first) = buf.first() else {
                    return false;
                };
                let ihl = usize::from(first & 0x0f) * 4;
                buf.get(ihl..).unwrap_or(&[])
            }
            IpAddr::V6(_) => buf,
        };
        let reply_type = if self.dst.is_ipv6() { 129 } else { 0 };
        from == self.dst
            && icmp.len() >= 8
            && icmp[0] == reply_type
            && icmp[4..6] == self.id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
    }

    /// Sends one echo request; the round-trip time, or `None` on timeout.
    pub fn ping_once(&self, seq: u16, timeout: Duration) -> Result<Option<Duration>> {
        let start = Instant::now();
        let target = SocketAddr::new(self.dst, 0);
        if let Err(e) = self.sock.send_to(&self.request(seq), target) {
            // No route yet (e.g. the overlay interface is still coming up)
            // counts as a lost probe, not a lab failure.
            if matches!(
                e.raw_os_error(),
                Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
            ) {
                thread::sleep(timeout);
                return Ok(None);
            }
            return Err(LabError::io(
                format!("sending echo request to {}", self.dst),
                e,
            ));
        }
        let deadline = start + timeout;
        let mut buf = [0u8; 2048];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.sock
                .set_read_timeout(Some(deadline - now))
                .map_err(|e| LabError::io("setting ICMP read timeout", e))?;
            match crate::eintr::restart(|| self.sock.recv_from(&mut buf)) {
                Ok((n, from)) if self.is_reply(&buf[..n], from.ip(), seq) => {
                    return Ok(Some(start.elapsed()));
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(LabError::io("receiving ICMP", e)),
            }
        }
    }
}

/// Sends `count` echo requests `interval` apart, each waiting up to
/// `timeout` for its reply.
pub fn ping(
    ns: &Netns,
    dst: IpAddr,
    count: u16,
    interval: Duration,
    timeout: Duration,
) -> Result<PingReport> {
    let pinger = Pinger::open(ns, dst)?;
    let mut report = PingReport {
        dst,
        sent: 0,
        received: 0,
        lines: Vec::new(),
    };
    for seq in 1..=count {
        let started = Instant::now();
        report.sent += 1;
        match pinger.ping_once(seq, timeout)? {
            Some(rtt) => {
                report.received += 1;
                report.lines.push(format!(
                    "{} bytes from {dst}: icmp_seq={seq} time={:.2} ms",
                    PAYLOAD_LEN + 8,
                    rtt.as_secs_f64() * 1000.0
                ));
            }
            None => report.lines.push(format!(
                "no reply from {dst}: icmp_seq={seq} (timeout {timeout:?})"
            )),
        }
        if seq < count {
            thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }
    Ok(report)
}

/// Pings once every `probe` until a reply arrives or `within` runs out;
/// returns how long it took. Used to wait for a tunnel's first handshake.
pub fn wait_reachable(ns: &Netns, dst: IpAddr, within: Duration) -> Result<Duration> {
    let pinger = Pinger::open(ns, dst)?;
    let start = Instant::now();
    let mut seq: u16 = 1;
    while start.elapsed() < within {
        if pinger.ping_once(seq, Duration::from_millis(500))?.is_some() {
            return Ok(start.elapsed());
        }
        seq = seq.wrapping_add(1);
    }
    Err(LabError::Timeout {
        what: format!("an echo reply from {dst} (from namespace {})", ns.name()),
        after: within,
    })
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn checksum_of_zeroed_echo_request() {
        // type 8, everything else zero: sum 0x0800, complement 0xf7ff.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 0, 0, 0]), 0xf7ff);
    }
}
