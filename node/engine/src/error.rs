//! Why the engine refused a packet or a configuration.

use std::net::IpAddr;

use boringtun::noise::errors::WireGuardError;
use warren_proto::filter::{Direction, DropReason};
use warren_proto::NodePublicKey;

/// A packet the engine dropped. The shell counts these (the engine already
/// did, in its counters) and logs them at debug level; none is fatal.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("not an IP packet")]
    NotIp,
    #[error("no peer serves {0}")]
    NoRoute(IpAddr),
    #[error("peer {0:?} has no endpoint yet")]
    NoEndpoint(NodePublicKey),
    #[error("not a WireGuard message")]
    Malformed,
    #[error("message for unknown session index {0:#x}")]
    UnknownIndex(u32),
    #[error("handshake from a key that is not a peer")]
    UnknownPeer,
    #[error("replayed or too old packet (data or disco ping)")]
    Replay,
    #[error("peer {peer:?} sent a packet from {source_ip}, outside its allowed IPs")]
    Spoofed {
        peer: NodePublicKey,
        source_ip: IpAddr,
    },
    #[error("output buffer of {have} bytes is too small, need {need}")]
    BufferTooSmall { have: usize, need: usize },
    #[error("disco: {0}")]
    Disco(#[from] warren_proto::disco::DiscoError),
    #[error("WireGuard: {0:?}")]
    WireGuard(WireGuardError),
    /// The access policy refused it; the filter counted it in its stats.
    #[error("{direction:?} packet refused by the access policy: {reason:?}")]
    Filtered {
        direction: Direction,
        reason: DropReason,
    },
}

/// A peer configuration the engine cannot take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("peer {0} is configured twice")]
    DuplicatePeer(NodePublicKey),
    #[error("peer {0} is our own key")]
    OwnKey(NodePublicKey),
    #[error("too many peers")]
    TooManyPeers,
}
