//! A configured peer: its keys, allowed IPs, endpoint, session and counters.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use warren_proto::NodePublicKey;

use crate::tunnel::Session;

/// Identifies a peer inside one engine. It is also the upper 24 bits of every
/// WireGuard session index the engine hands out, so that an incoming message
/// finds its peer without a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub(crate) u32);

impl PeerId {
    /// The peer an incoming receiver index belongs to.
    pub(crate) fn from_receiver_index(index: u32) -> Self {
        Self(index >> 8)
    }
}

/// How a peer is configured: the static-mode `[[peer]]` table, or later a netmap entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: NodePublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<Duration>,
}

/// A read-only view of a peer for status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub id: PeerId,
    pub public_key: NodePublicKey,
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<SocketAddr>,
    /// How long ago the last handshake completed, if one has.
    pub since_last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<Duration>,
}

pub(crate) struct Peer {
    pub(crate) config: PeerConfig,
    pub(crate) session: Session,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    /// Set once the session expired, so that the event is raised once per expiry.
    pub(crate) expired: bool,
}
