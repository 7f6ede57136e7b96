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
}

impl Wire {
    /// The WireGuard message type: 1 initiation, 2 response, 3 cookie, 4 data.
    pub fn message_type(&self) -> u8 {
        self.payload.first().copied().unwrap_or(0)
    }
}

/// A datagram on its way, ordered by arrival.
pub struct InFlight {
    pub at: Duration,
    /// Keeps datagrams due at the same instant in the order they were sent.
    pub seq: u64,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
