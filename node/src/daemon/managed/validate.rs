//! What the agent accepts from a controller: a netmap's zone, MTU and
//! addresses are checked before it is applied, so that a controller cannot
//! take over a public domain's names or point the host at odd addresses.
//!
//! The rules (also in docs/dns.md and docs/config.md):
//! - the zone is a DNS name, neither a top-level domain nor a public suffix,
//!   and lies strictly under `warren.internal`, `internal` or `home.arpa`,
//!   or is (or lies under) a zone the user allowed for the network with
//!   `warren join --allow-zone`;
//! - the MTU is within 1280..=9000;
//! - the node's own addresses are not loopback, multicast, link-local,
//!   unspecified or broadcast, with prefixes of /8../30 (IPv4) and
//!   /48../120 (IPv6);
//! - every peer address is a host prefix (/32, /128) of a unicast address.

use std::net::IpAddr;

use ipnet::IpNet;
use warren_proto::netmap::Netmap;

/// Suffixes under which a controller may name a zone without the user's say.
pub const EXPECTED_SUFFIXES: [&str; 3] = ["warren.internal", "internal", "home.arpa"];

/// The MTUs a netmap may set: IPv6's minimum up to jumbo frames.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9000;
/// Prefix lengths of the node's own IPv4 address: a /8 pool at most, and
/// room for two hosts at least.
pub const IPV4_PREFIX: std::ops::RangeInclusive<u8> = 8..=30;
/// Prefix lengths of the node's own IPv6 address: a site's /48 at most.
pub const IPV6_PREFIX: std::ops::RangeInclusive<u8> = 48..=120;

/// Why a netmap was refused; shown in `warren status`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetmapRefusal {
    #[error("zone {0:?} is not a valid DNS name")]
    ZoneSyntax(String),
    #[error("zone {0:?} is a top-level domain")]
    ZoneTld(String),
    #[error("zone {0:?} is a public suffix")]
    ZonePublicSuffix(String),
    #[error("zone {0:?} is not under warren.internal, internal or home.arpa, nor allowed with `warren join --allow-zone`")]
    ZoneUnexpected(String),
    #[error("MTU {0} is outside 1280..=9000")]
    Mtu(u16),
    #[error("own address {0} is not a usable unicast address")]
    SelfAddress(IpNet),
    #[error("own prefix {0} is outside /8../30 (IPv4) or /48../120 (IPv6)")]
    SelfPrefix(IpNet),
    #[error("peer {peer} has address {address}, which is not a unicast host prefix")]
    PeerAddress { peer: String, address: IpNet },
}

/// What to do with a netmap from the network's own controller.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// A full map older than the one held: a replay or a rollback.
    IgnoreOlder {
        held: u64,
    },
    /// It breaks a rule; the map held (if any) stays.
    Refuse(NetmapRefusal),
}

/// Judges `map` against the version `held` (if a map is held) and the
/// rules above. `full` says it came whole, not as a delta on the held map
/// (whose base version was checked already).
pub fn judge(map: &Netmap, full: bool, held: Option<u64>, allowed_zones: &[String]) -> Verdict {
    if let (true, Some(held)) = (full, held) {
        if map.version < held {
            return Verdict::IgnoreOlder { held };
        }
    }
    match check_netmap(map, allowed_zones) {
        Ok(()) => Verdict::Apply,
        Err(refusal) => Verdict::Refuse(refusal),
    }
}

/// Checks a netmap against the rules above; `allowed_zones` are the zones
/// the user allowed for this network.
pub fn check_netmap(map: &Netmap, allowed_zones: &[String]) -> Result<(), NetmapRefusal> {
    check_zone(&map.dns.zone, allowed_zones)?;
    if !MTU_RANGE.contains(&map.settings.mtu) {
        return Err(NetmapRefusal::Mtu(map.settings.mtu));
    }
    for address in &map.self_node.addresses {
        if !usable_unicast(address.addr()) {
            return Err(NetmapRefusal::SelfAddress(*address));
        }
        let lengths = match address {
            IpNet::V4(_) => &IPV4_PREFIX,
            IpNet::V6(_) => &IPV6_PREFIX,
        };
        if !lengths.contains(&address.prefix_len()) {
            return Err(NetmapRefusal::SelfPrefix(*address));
        }
    }
    for peer in &map.peers {
        for address in &peer.addresses {
            if address.prefix_len() != address.max_prefix_len() || !usable_unicast(address.addr()) {
                return Err(NetmapRefusal::PeerAddress {
                    peer: peer.node_id.to_string(),
                    address: *address,
                });
            }
        }
    }
    Ok(())
}

/// A zone name as compared: lowercase, no trailing dot.
pub fn normalise_zone(zone: &str) -> String {
    zone.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `zone` is a syntactically valid zone name that a user may allow.
pub fn zone_syntax_ok(zone: &str) -> bool {
    let zone = normalise_zone(zone);
    !zone.is_empty()
        && zone.len() <= 253
        && zone.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn check_zone(zone: &str, allowed_zones: &[String]) -> Result<(), NetmapRefusal> {
    if !zone_syntax_ok(zone) {
        return Err(NetmapRefusal::ZoneSyntax(zone.chars().take(80).collect()));
    }
    let zone = normalise_zone(zone);
    if !zone.contains('.') {
        return Err(NetmapRefusal::ZoneTld(zone));
    }
    if psl::suffix(zone.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes() == zone.as_bytes())
    {
        return Err(NetmapRefusal::ZonePublicSuffix(zone));
    }
    let strictly_under = |suffix: &str| zone.ends_with(&format!(".{suffix}"));
    let expected = EXPECTED_SUFFIXES.iter().any(|s| strictly_under(s));
    let allowed = allowed_zones
        .iter()
        .map(|a| normalise_zone(a))
        .any(|a| zone == a || strictly_under(&a));
    if expected || allowed {
        Ok(())
    } else {
        Err(NetmapRefusal::ZoneUnexpected(zone))
    }
}

fn usable_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
                || v6.is_unspecified())
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
pub(super) mod tests;
