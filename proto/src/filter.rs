//! The access policy compiled for one member of one network: the rules its
//! engine enforces. The controller compiles it from the network's policy
//! document (which nodes never see) and ships it in the netmap.
//!
//! A rule admits the first packet of a flow; replies to an admitted flow
//! pass by connection tracking in the engine. Anything no rule admits is
//! denied.

use std::fmt;
use std::net::IpAddr;
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

/// Which way a packet or a flow goes, seen from the member that filters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a peer, after decryption, to this member or a route it serves.
    Inbound,
    /// From this member's TUN towards a peer, before encryption.
    Outbound,
}

/// Whether a filter lets a new flow through.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
}

/// The answer to "would this new flow pass, and why": the verdict and the
/// rule that decides it (none when no rule admits it, or when the member
/// has no filter and everything passes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Explanation {
    pub verdict: Verdict,
    pub rule: Option<String>,
}

impl PacketFilter {
    /// The rules for one direction.
    pub fn rules(&self, direction: Direction) -> &[FilterRule] {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    /// The reference matcher: the first rule, in order, that admits a new
    /// flow from `src` to `dst` of `protocol` to `port` (ignored for ICMP).
    /// The engine's indexed matcher must agree with it.
    pub fn decide(
        &self,
        direction: Direction,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Option<&FilterRule> {
        self.rules(direction)
            .iter()
            .find(|r| r.admits(src, dst, protocol, port))
    }

    /// [`PacketFilter::decide`] as an [`Explanation`].
    pub fn explain(
        &self,
        direction: Direction,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Explanation {
        match self.decide(direction, src, dst, protocol, port) {
            Some(rule) => Explanation {
                verdict: Verdict::Allow,
                rule: Some(rule.rule.clone()),
            },
            None => Explanation {
                verdict: Verdict::Deny,
                rule: None,
            },
        }
    }
}

impl FilterRule {
    /// True if this rule admits a new flow from `src` to `dst` of `protocol` to `port`.
    pub fn admits(&self, src: IpAddr, dst: IpAddr, protocol: Protocol, port: u16) -> bool {
        self.ports.iter().any(|p| p.admits(protocol, port))
            && self.src.iter().any(|n| n.contains(&src))
            && self.dst.iter().any(|n| n.contains(&dst))
    }
}

/// Why the engine's filter dropped a packet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The packet starts a flow (or belongs to none that is tracked) and no
    /// rule admits it.
    NoRule,
    /// The packet is too short for the headers it claims, or not IP.
    Malformed,
}

/// Packets one direction of the filter dropped, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DropCounts {
    pub no_rule: u64,
    pub malformed: u64,
}

impl DropCounts {
    pub fn count(&mut self, reason: DropReason) {
        match reason {
            DropReason::NoRule => self.no_rule += 1,
            DropReason::Malformed => self.malformed += 1,
        }
    }
}

/// How often one rule admitted a new flow, by its name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleHits {
    pub rule: String,
    pub direction: Direction,
    /// New flows admitted since the agent started (kept across policy
    /// changes while the rule keeps its name).
    pub flows: u64,
}

/// One recently dropped packet, for `warren explain`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecentDrop {
    /// Milliseconds between the drop and the moment the stats were taken.
    pub age_ms: u64,
    pub direction: Direction,
    pub reason: DropReason,
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub ip_protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The destination port (TCP, UDP); 0 otherwise.
    pub port: u16,
}

/// What the engine's filter has done, for `warren status --json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FilterStats {
    /// The policy version enforced; `None` when the member has no filter
    /// and every packet passes.
    pub policy_version: Option<u64>,
    pub tracked_flows: u64,
    /// The most flows tracked at once; a new flow beyond it evicts one.
    pub flow_limit: u64,
    /// Roughly the bytes the flow table holds now (by capacity).
    #[serde(default)]
    pub flow_table_bytes: u64,
    /// Flows removed to make room for new ones.
    pub flows_evicted: u64,
    /// Flows that timed out.
    pub flows_expired: u64,
    /// Open flows that a policy change no longer allowed.
    pub flows_cut: u64,
    pub rule_hits: Vec<RuleHits>,
    pub dropped_inbound: DropCounts,
    pub dropped_outbound: DropCounts,
    /// Packets written back to the TUN for denied outbound packets (ICMP
    /// administratively prohibited, TCP resets).
    pub rejects_sent: u64,
    /// The latest drops, newest first.
    pub recent_drops: Vec<RecentDrop>,
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

    #[test]
    fn the_reference_matcher_takes_the_first_rule_that_admits_all_three() {
        let rule = |name: &str, src: &str, ports: &str| FilterRule {
            rule: name.into(),
            src: vec![src.parse().unwrap()],
            dst: vec!["10.96.0.0/12".parse().unwrap()],
            ports: vec![ports.parse().unwrap()],
        };
        let filter = PacketFilter {
            policy_version: 1,
            inbound: vec![
                rule("a", "10.0.0.1/32", "tcp:80"),
                rule("b", "10.0.0.0/24", "*"),
            ],
            outbound: vec![],
        };
        let (ops, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let redis: IpAddr = "10.96.0.10".parse().unwrap();
        let explain = |src, dst, protocol, port| {
            filter
                .explain(Direction::Inbound, src, dst, protocol, port)
                .rule
        };
        assert_eq!(explain(ops, redis, Protocol::Tcp, 80).as_deref(), Some("a"));
        assert_eq!(
            explain(other, redis, Protocol::Tcp, 80).as_deref(),
            Some("b")
        );
        assert_eq!(explain(ops, other, Protocol::Tcp, 80), None);
        assert_eq!(
            filter
                .explain(Direction::Outbound, ops, redis, Protocol::Tcp, 80)
                .verdict,
            Verdict::Deny
        );
        let json = serde_json::to_string(&FilterStats::default()).unwrap();
        assert!(json.contains("\"policy_version\":null"), "{json}");
    }
}
