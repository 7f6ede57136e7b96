//! Subnet routes and exit nodes: what a member advertises and what its
//! network made of it, the local API of `warren routes` and
//! `warren exit-node`, and the prefix rules that both the agent and the
//! controller check (pure).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::{NetworkId, NodeId};

/// Most prefixes one node may advertise in one network.
pub const MAX_ADVERTISED: usize = 64;

/// A route this node advertised, as its network sees it (in `SelfNode`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SelfRoute {
    pub prefix: IpNet,
    /// An admin (or an auto-approval rule) approved it.
    pub approved: bool,
    /// Peers route this prefix to this node now. With several approved
    /// advertisers of one prefix only one is primary; exit routes
    /// (`0.0.0.0/0`, `::/0`) are primary on every approved exit node.
    pub primary: bool,
}

/// A default route: what an exit node offers.
pub fn is_exit(prefix: &IpNet) -> bool {
    prefix.prefix_len() == 0
}

/// Why a prefix can never be a route, whatever the network.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PrefixError {
    #[error("{prefix} has host bits set; did you mean {network}?")]
    HostBits { prefix: IpNet, network: IpNet },
    #[error("{prefix} overlaps {range}, the {what} range, which is never routed through a peer")]
    Special {
        prefix: IpNet,
        range: IpNet,
        what: &'static str,
    },
}

/// Ranges that belong to the host or the link, never to a peer.
fn special_ranges() -> [(IpNet, &'static str); 10] {
    let v4 = |a, b, c, d, len| {
        IpNet::V4(Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len).unwrap_or_default())
    };
    let v6 = |addr: Ipv6Addr, len| IpNet::V6(Ipv6Net::new(addr, len).unwrap_or_default());
    [
        (v4(0, 0, 0, 0, 8), "\"this network\""),
        (v4(127, 0, 0, 0, 8), "loopback"),
        (v4(169, 254, 0, 0, 16), "link-local"),
        (v4(224, 0, 0, 0, 4), "multicast"),
        (v4(240, 0, 0, 0, 4), "reserved"),
        (v6(Ipv6Addr::UNSPECIFIED, 128), "unspecified"),
        (v6(Ipv6Addr::LOCALHOST, 128), "loopback"),
        (
            v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
            "IPv4-mapped",
        ),
        (
            v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
            "link-local",
        ),
        (
            v6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
            "multicast",
        ),
    ]
}

/// True if one prefix contains the other (same family).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Checks what makes a prefix unusable anywhere: host bits, and ranges of
/// the host or the link (loopback, link-local, multicast...). Default
/// routes (`/0`) pass: they are exit routes.
pub fn check_prefix(prefix: &IpNet) -> Result<(), PrefixError> {
    if prefix.trunc() != *prefix {
        return Err(PrefixError::HostBits {
            prefix: *prefix,
            network: prefix.trunc(),
        });
    }
    if is_exit(prefix) {
        return Ok(());
    }
    for (range, what) in special_ranges() {
        if overlaps(prefix, &range) {
            return Err(PrefixError::Special {
                prefix: *prefix,
                range,
                what,
            });
        }
    }
    Ok(())
}

/// The first of `addresses` inside `prefix`.
pub fn captures<'a>(
    prefix: &IpNet,
    addresses: impl IntoIterator<Item = &'a IpAddr>,
) -> Option<IpAddr> {
    addresses.into_iter().find(|a| prefix.contains(*a)).copied()
}

/// `GET /v1/routes`: what `warren routes list --json` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RoutesStatus {
    pub networks: Vec<NetworkRoutes>,
    /// The exit node in use, if any.
    pub exit_node: Option<ExitNodeStatus>,
    /// The stateful filter of a subnet router or exit node.
    pub filter: FilterStatus,
    /// Whether the kernel forwards packets (a subnet router needs it).
    pub forwarding: Forwarding,
    /// The last failure to change the system's routes, rules or filter.
    pub error: Option<String>,
}

/// One joined network's routes on this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRoutes {
    pub network: NetworkId,
    /// Whether this node installs the subnet routes its peers serve.
    pub accept: bool,
    /// What this node advertises, and what the network made of it.
    pub advertised: Vec<AdvertisedRoute>,
    /// The site this node advertises its routes for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<crate::site::SiteSpec>,
    /// Of this node's routes, those the network reaches at a mapped
    /// prefix (they overlap another site's), which this node translates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped: Vec<crate::site::MappedPrefix>,
    /// Subnet routes that peers serve (primary advertisers only).
    pub peer_routes: Vec<PeerRoute>,
    /// Peers that offer to be exit nodes.
    pub exit_nodes: Vec<ExitNodeOffer>,
}

/// A prefix this node advertises.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdvertisedRoute {
    pub prefix: IpNet,
    /// `pending` (waiting for approval), `approved` (standby: another
    /// advertiser is primary), `primary`, or `unknown` (no netmap yet).
    pub state: AdvertisedState,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AdvertisedState {
    Unknown,
    Pending,
    Approved,
    Primary,
}

/// A subnet route a peer serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerRoute {
    pub prefix: IpNet,
    pub node_id: NodeId,
    pub name: String,
    pub online: bool,
    /// In the system's routing table and the engine's, pointing at the peer.
    pub installed: bool,
    /// Why it is not installed although routes are accepted.
    pub refused: Option<String>,
}

/// A peer that offers default routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitNodeOffer {
    pub node_id: NodeId,
    pub name: String,
    pub online: bool,
    /// `0.0.0.0/0`, `::/0` or both.
    pub prefixes: Vec<IpNet>,
}

/// The exit node this node sends its default traffic to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitNodeStatus {
    pub network: NetworkId,
    pub node_id: NodeId,
    pub name: String,
    /// Prefixes that bypass the exit node (besides the automatic ones).
    pub exclude: Vec<IpNet>,
    /// True while the default route points at it; false while the peer
    /// does not (or no longer) offer an approved exit route.
    pub active: bool,
    /// Why it is not active.
    pub message: Option<String>,
}

/// Packets the stateful filter dropped since the agent started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FilterStatus {
    /// The `warren` nftables table is in place.
    pub active: bool,
    /// Masquerade toward the LAN for forwarded overlay traffic.
    pub masquerade: bool,
    /// From the LAN (or anywhere not overlay) into the overlay: not a reply
    /// and not site-to-site, e.g. spoofed overlay sources.
    pub dropped_into_overlay_packets: u64,
    pub dropped_into_overlay_bytes: u64,
    /// From the overlay to somewhere this node does not route for it.
    pub dropped_from_overlay_packets: u64,
    pub dropped_from_overlay_bytes: u64,
}

/// Kernel forwarding switches.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Forwarding {
    pub ipv4: bool,
    pub ipv6: bool,
}

/// How `POST /v1/routes/advertise` changes the advertised set.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AdvertiseMode {
    /// Add these prefixes to what is advertised.
    Add,
    /// Stop advertising these prefixes.
    Remove,
    /// Advertise exactly these (none: withdraw everything).
    Replace,
}

/// `POST /v1/routes/advertise`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdvertiseRequest {
    /// Needed only when several networks are joined.
    pub network: Option<NetworkId>,
    pub mode: AdvertiseMode,
    pub routes: Vec<IpNet>,
    /// The site every route of this node in the network is for, from now
    /// on (`--site`); absent keeps the one set before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<crate::site::SiteSpec>,
    /// Advertise for no site any more (`--no-site`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_site: bool,
}

/// `POST /v1/routes/accept`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcceptRequest {
    /// All joined networks when absent.
    pub network: Option<NetworkId>,
    pub accept: bool,
}

/// `POST /v1/routes/masquerade`: NAT forwarded overlay traffic toward the LAN.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MasqueradeRequest {
    pub masquerade: bool,
}

/// `POST /v1/exit-node`: send default traffic through a peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitNodeRequest {
    /// Needed only when several networks are joined.
    pub network: Option<NetworkId>,
    /// A name, FQDN, node ID or overlay address.
    pub peer: String,
    /// Prefixes that keep using the normal default route.
    #[serde(default)]
    pub exclude: Vec<IpNet>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn host_bits_and_special_ranges_are_refused() {
        assert_eq!(
            check_prefix(&net("10.96.0.1/12")),
            Err(PrefixError::HostBits {
                prefix: net("10.96.0.1/12"),
                network: net("10.96.0.0/12")
            })
        );
        assert!(check_prefix(&net("10.96.0.0/12")).is_ok());
        assert!(check_prefix(&net("0.0.0.0/0")).is_ok());
        assert!(check_prefix(&net("::/0")).is_ok());
        assert!(check_prefix(&net("fd00:1::/48")).is_ok());
        for bad in [
            "127.0.0.0/8",
            "127.0.0.1/32",
            "169.254.0.0/16",
            "224.0.0.0/4",
            "0.0.0.0/1",
            "fe80::/64",
            "::1/128",
            "ff02::/16",
        ] {
            let err = check_prefix(&net(bad)).unwrap_err();
            assert!(matches!(err, PrefixError::Special { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn captures_finds_addresses_inside() {
        let ips: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap(), "10.0.1.2".parse().unwrap()];
        assert_eq!(
            captures(&net("10.0.0.0/8"), &ips),
            Some("10.0.1.2".parse().unwrap())
        );
        assert_eq!(captures(&net("10.96.0.0/12"), &ips), None);
    }
}
