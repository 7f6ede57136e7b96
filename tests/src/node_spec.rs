//! What a lab node is configured with: its key, port, overlay addresses and
//! peers. Shared by the `warren` and wireguard-go wrappers so interop tests
//! describe both sides the same way.

use std::net::SocketAddr;

use crate::keys::KeyPair;

/// One peer as a node is told about it.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    /// Prefixes routed to this peer, e.g. "10.99.0.2/32".
    pub allowed_ips: Vec<String>,
    /// Seconds between keepalives, if any.
    pub persistent_keepalive: Option<u32>,
}

/// One node of the overlay.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Short role used in labels and interface names ("a", "b").
    pub name: String,
    pub key: KeyPair,
    pub listen_port: u16,
    /// Overlay addresses with prefix length, e.g. "10.99.0.1/24".
    pub addresses: Vec<String>,
    pub peers: Vec<PeerSpec>,
}

/// The overlay plan used by the suites: node `n` (1-based) gets
/// 10.99.0.n/24 and fd99::n/64.
pub mod overlay {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    pub fn v4(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, 0, n)
    }

    pub fn v6(n: u8) -> Ipv6Addr {
        Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, u16::from(n))
    }

    pub fn addr(n: u8, ipv6: bool) -> IpAddr {
        if ipv6 {
            v6(n).into()
        } else {
            v4(n).into()
        }
    }

    /// Interface addresses of node `n`.
    pub fn addresses(n: u8) -> Vec<String> {
        vec![format!("{}/24", v4(n)), format!("{}/64", v6(n))]
    }

    /// Allowed IPs that route node `n`'s addresses to it.
    pub fn allowed_ips(n: u8) -> Vec<String> {
        vec![format!("{}/32", v4(n)), format!("{}/128", v6(n))]
    }
}
