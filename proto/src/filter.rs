//! The access policy compiled for one member of one network: the rules its
//! engine enforces. The controller compiles it from the network's policy
//! document (which nodes never see) and ships it in the netmap.
//!
//! A rule admits the first packet of a flow; replies to an admitted flow
//! pass by connection tracking in the engine. Anything no rule admits is
//! denied.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What one member enforces in one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct PacketFilter {
    /// The version of the policy document this was compiled from.
    pub policy_version: u64,
    /// New flows that arrive from peers (after decryption), to this
    /// member's own addresses or to the routes it serves.
    pub inbound: Vec<FilterRule>,
    /// New flows this member starts towards peers and the routes they serve.
    pub outbound: Vec<FilterRule>,
}

/// One compiled rule: any source in `src` to any destination in `dst` on
/// any of `ports`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct FilterRule {
    /// A stable name for counters and explanations: `allow[2]` is the
    /// third `[[allow]]` block of the document, `grant:<id>` a grant.
    pub rule: String,
    pub src: Vec<IpNet>,
    pub dst: Vec<IpNet>,
    pub ports: Vec<PortRange>,
}

/// The protocols a rule can name. `Icmp` covers ICMPv4 and ICMPv6.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    /// Every protocol, every port.
    Any,
}

/// A protocol with a port range, written `tcp:5432`, `tcp:8000-8100`,
/// `udp:*`, `icmp` or `*`. ICMP and `*` have no ports (the range is
/// `0-65535`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

/// Why a port specification could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortRangeError {
    #[error("{0:?}: expected tcp:PORT, tcp:FIRST-LAST, udp:..., icmp or *")]
    Syntax(String),
    #[error("{0:?}: the range's first port is above its last")]
    Reversed(String),
    #[error("{0:?}: port 0 is not a port")]
    PortZero(String),
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        protocol: Protocol::Any,
        first: 0,
        last: u16::MAX,
    };

    /// True if a packet of `protocol` to `port` (ignored for ICMP) matches.
    pub fn admits(&self, protocol: Protocol, port: u16) -> bool {
        match self.protocol {
            Protocol::Any => true,
            Protocol::Icmp => protocol == Protocol::Icmp,
            p => p == protocol && (self.first..=self.last).contains(&port),
        }
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || PortRangeError::Syntax(text.to_string());
        let t = text.trim();
        if t == "*" {
            return Ok(PortRange::ANY);
        }
        if t.eq_ignore_ascii_case("icmp") {
            return Ok(PortRange {
                protocol: Protocol::Icmp,
                first: 0,
                last: u16::MAX,
            });
        }
        let (proto, ports) = t.split_once(':').ok_or_else(syntax)?;
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(syntax()),
        };
        let (first, last) = if ports == "*" {
            (1, u16::MAX)
        } else {
            let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
            let a: u16 = a.parse().map_err(|_| syntax())?;
            let b: u16 = b.parse().map_err(|_| syntax())?;
            (a, b)
        };
        if first == 0 {
            return Err(PortRangeError::PortZero(text.to_string()));
        }
        if first > last {
            return Err(PortRangeError::Reversed(text.to_string()));
        }
        Ok(PortRange {
            protocol,
            first,
            last,
        })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Any => return f.write_str("*"),
            Protocol::Icmp => return f.write_str("icmp"),
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        if self.first == 1 && self.last == u16::MAX {
            write!(f, "{proto}:*")
        } else if self.first == self.last {
            write!(f, "{proto}:{}", self.first)
        } else {
            write!(f, "{proto}:{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_round_trip_through_text() {
        for text in ["tcp:5432", "tcp:8000-8100", "udp:53", "udp:*", "icmp", "*"] {
            let range: PortRange = text.parse().unwrap();
            assert_eq!(range.to_string(), text);
        }
        assert_eq!("TCP:80".parse::<PortRange>().unwrap().to_string(), "tcp:80");
    }

    #[test]
    fn bad_port_ranges_say_why() {
        assert!(matches!(
            "tcp".parse::<PortRange>(),
            Err(PortRangeError::Syntax(_))
        ));
        assert!(matches!(
            "sctp:1".parse::<PortRange>(),
            Err(PortRangeError::Syntax(_))
        ));
        assert!(matches!(
            "tcp:70000".parse::<PortRange>(),
            Err(PortRangeError::Syntax(_))
        ));
        assert!(matches!(
            "tcp:0".parse::<PortRange>(),
            Err(PortRangeError::PortZero(_))
        ));
        assert!(matches!(
            "tcp:9-3".parse::<PortRange>(),
            Err(PortRangeError::Reversed(_))
        ));
    }

    #[test]
    fn ranges_admit_their_protocol_and_ports_only() {
        let redis: PortRange = "tcp:6379".parse().unwrap();
        assert!(redis.admits(Protocol::Tcp, 6379));
        assert!(!redis.admits(Protocol::Tcp, 6380));
        assert!(!redis.admits(Protocol::Udp, 6379));
        assert!(PortRange::ANY.admits(Protocol::Icmp, 0));
        let icmp: PortRange = "icmp".parse().unwrap();
        assert!(icmp.admits(Protocol::Icmp, 0));
        assert!(!icmp.admits(Protocol::Tcp, 1));
    }

    #[test]
    fn filters_serialise_ports_as_text() {
        let filter = PacketFilter {
            policy_version: 3,
            inbound: vec![FilterRule {
                rule: "allow[0]".into(),
                src: vec!["10.147.0.2/32".parse().unwrap()],
                dst: vec!["10.96.0.0/12".parse().unwrap()],
                ports: vec!["tcp:6379".parse().unwrap()],
            }],
            outbound: vec![],
        };
        let json = serde_json::to_string(&filter).unwrap();
        assert!(json.contains("\"tcp:6379\""), "{json}");
        assert_eq!(serde_json::from_str::<PacketFilter>(&json).unwrap(), filter);
    }
}
