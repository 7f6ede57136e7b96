//! Sites: named places behind subnet routers, such as one Kubernetes
//! cluster. Members that advertise one prefix for the same site are a
//! fail-over pair; for different sites they are different destinations.
//! Where two sites' prefixes overlap, the controller gives each a mapped
//! prefix that members use instead (names resolve to it), and the site's
//! router translates it back, statelessly.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Longest site name: one DNS label.
pub const MAX_SITE_NAME: usize = 63;

/// What a node says of the site it routes for, with its routes
/// (`warren routes advertise PREFIX --site m --dns-domain cluster.local
/// --dns-server 10.96.0.10`). One site per node and network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<SiteDns>,
}

/// A site's own DNS: the names under `domain` (for example
/// `cluster.local`) that `server` answers, reached through the mesh.
/// Members ask for `<name>.<site>.<zone>`; the stub asks `server` for
/// `<name>.<domain>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct SiteDns {
    pub domain: String,
    pub server: IpAddr,
}

/// A site as members of its network see it (in `NetworkSettings`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Site {
    pub name: String,
    /// Members whose approved routes are for this site, sorted.
    pub routers: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<SiteDns>,
    /// The site's approved prefixes that overlap another site's, each with
    /// the unique prefix members use instead. Members route `mapped` (not
    /// `real`) to the site's primary router, which rewrites destinations
    /// in `mapped` to the same offset in `real`, and sources in `real` back
    /// to `mapped` on the way out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped: Vec<MappedPrefix>,
}

/// A site's prefix and the same-sized prefix that stands for it in the mesh.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct MappedPrefix {
    pub real: Ipv4Net,
    pub mapped: Ipv4Net,
}

impl MappedPrefix {
    /// The address of `mapped` at the same offset as `real_addr` in `real`.
    pub fn to_mapped(&self, real_addr: std::net::Ipv4Addr) -> Option<std::net::Ipv4Addr> {
        shift(self.real, self.mapped, real_addr)
    }

    /// The address of `real` at the same offset as `mapped_addr` in `mapped`.
    pub fn to_real(&self, mapped_addr: std::net::Ipv4Addr) -> Option<std::net::Ipv4Addr> {
        shift(self.mapped, self.real, mapped_addr)
    }
}

fn shift(from: Ipv4Net, to: Ipv4Net, addr: std::net::Ipv4Addr) -> Option<std::net::Ipv4Addr> {
    if !from.contains(&addr) || from.prefix_len() != to.prefix_len() {
        return None;
    }
    let host = u32::from(addr) & u32::from(from.hostmask());
    Some((u32::from(to.network()) | host).into())
}

/// Why a site name is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SiteNameError {
    #[error("a site name must not be empty")]
    Empty,
    #[error("site name {0:?} is longer than {MAX_SITE_NAME} characters")]
    TooLong(String),
    #[error(
        "site name {0:?} may hold only lowercase letters, digits and '-', and may not start or end with '-'"
    )]
    Invalid(String),
}

/// Checks that `name` is one lowercase DNS label, so that
/// `<service>.<namespace>.svc.<site>.<zone>` is a name.
pub fn check_site_name(name: &str) -> Result<(), SiteNameError> {
    if name.is_empty() {
        return Err(SiteNameError::Empty);
    }
    if name.len() > MAX_SITE_NAME {
        return Err(SiteNameError::TooLong(
            crate::text::printable(name).into_owned(),
        ));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(SiteNameError::Invalid(
            crate::text::printable(name).into_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn site_names_are_dns_labels() {
        assert!(check_site_name("m").is_ok());
        assert!(check_site_name("eu-west-1").is_ok());
        assert_eq!(check_site_name(""), Err(SiteNameError::Empty));
        for bad in ["M", "-m", "m-", "a.b", "m m", "ü"] {
            assert!(check_site_name(bad).is_err(), "{bad}");
        }
        assert!(check_site_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn mapping_keeps_the_offset() {
        let m = MappedPrefix {
            real: "10.96.0.0/12".parse().unwrap(),
            mapped: "100.64.0.0/12".parse().unwrap(),
        };
        assert_eq!(
            m.to_mapped("10.96.0.10".parse().unwrap()),
            Some("100.64.0.10".parse().unwrap())
        );
        assert_eq!(
            m.to_real("100.79.255.1".parse().unwrap()),
            Some("10.111.255.1".parse().unwrap())
        );
        assert_eq!(m.to_real("10.96.0.10".parse().unwrap()), None);
    }
}
