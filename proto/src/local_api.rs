//! The daemon's local API: what `GET /v1/status` returns and `warren status --json` prints.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::NodePublicKey;

/// The whole state of a running agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub public_key: NodePublicKey,
    pub interface: String,
    pub listen_port: u16,
    pub addresses: Vec<IpNet>,
    pub mtu: u16,
    /// Whether the TUN device runs with kernel offloads (TSO/GRO through a vnet header).
    pub offload: bool,
    pub peers: Vec<PeerStatus>,
    pub counters: Counters,
}

/// One peer as the agent sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub public_key: NodePublicKey,
    /// The peer's allowed IPs: the overlay prefixes routed to it.
    pub addresses: Vec<IpNet>,
    /// Where its packets go now: configured, or learnt from its latest authenticated packet.
    pub endpoint: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_handshake: Option<OffsetDateTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds, if set.
    pub persistent_keepalive: Option<u64>,
}

/// Agent-wide packet counters. Every dropped packet lands in exactly one `dropped_*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub tun_rx_packets: u64,
    pub udp_rx_datagrams: u64,
    pub udp_tx_datagrams: u64,
    /// Datagrams that are not WireGuard messages at all, or fail authentication.
    pub dropped_invalid: u64,
    /// Data packets whose counter was seen before (replays).
    pub dropped_replay: u64,
    /// Decrypted packets whose source address is outside the sending peer's allowed IPs.
    pub dropped_spoofed: u64,
    /// Packets from the TUN whose destination no peer serves.
    pub dropped_no_route: u64,
    /// Packets for a peer with no known endpoint.
    pub dropped_no_endpoint: u64,
    /// Handshakes from keys that are not configured peers.
    pub dropped_unknown_peer: u64,
}

/// The error body of every local-API failure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_handshake_is_rfc3339_or_null() {
        let peer = PeerStatus {
            public_key: crate::NodePrivateKey::generate().public_key(),
            addresses: vec!["10.99.0.2/32".parse().unwrap()],
            endpoint: None,
            last_handshake: Some(OffsetDateTime::UNIX_EPOCH),
            rx_bytes: 1,
            tx_bytes: 2,
            persistent_keepalive: None,
        };
        let json = serde_json::to_value(&peer).unwrap();
        assert_eq!(json["last_handshake"], "1970-01-01T00:00:00Z");
        let none = PeerStatus {
            last_handshake: None,
            ..peer
        };
        assert!(serde_json::to_value(&none).unwrap()["last_handshake"].is_null());
    }
}
