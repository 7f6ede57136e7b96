//! Links between nodes: latency, loss and MTU, and the datagrams they carry.

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::time::Duration;

/// What a one-way link does to the datagrams it carries.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub latency: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Datagrams with a larger UDP payload are dropped, as a path that does not fragment would.
    pub mtu: Option<usize>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            loss: 0.0,
            mtu: None,
        }
    }
}

/// What became of a datagram a node sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    Lost,
    TooBig,
    /// Nobody owned the destination address when it arrived.
    NoHost,
    /// A NAT's inbound filter dropped it: no mapping, or not from a permitted remote.
    Filtered,
    /// A NAT's outbound firewall dropped it (UDP blocked except to the controller).
    Blocked,
}

/// One datagram the links carried (or dropped).
#[derive(Debug, Clone)]
pub struct Wire {
    /// When it was delivered, or when it was dropped.
    pub at: Duration,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
    pub fate: Fate,
    /// Carried by the relay: `from` and `to` are then the nodes' own addresses.
    pub relayed: bool,
}

impl Wire {
    /// The WireGuard message type: 1 initiation, 2 response, 3 cookie, 4 data;
    /// 0 for anything else. The three reserved zero bytes tell WireGuard from
    /// STUN responses, which also start with a 1.
    pub fn message_type(&self) -> u8 {
        match self.payload.get(..4) {
            Some([kind @ 1..=4, 0, 0, 0]) => *kind,
            _ => 0,
        }
    }
}

/// Something due at `at`: a datagram on its way or a message through the controller.
pub struct Scheduled<T> {
    pub at: Duration,
    /// Keeps what is due at the same instant in the order it was sent.
    pub seq: u64,
    pub what: T,
}

impl<T> PartialEq for Scheduled<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Scheduled<T> {}
impl<T> PartialOrd for Scheduled<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Scheduled<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
