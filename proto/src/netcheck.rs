//! What `warren netcheck --controller` finds before any network is joined,
//! and the path verdict drawn from it.

use serde::{Deserialize, Serialize};

use crate::local_api::PortMapping;

/// `warren netcheck --controller HOST:PORT --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControllerNetcheck {
    /// `HOST:PORT` as given.
    pub controller: String,
    pub quic: QuicCheck,
    /// The same handshake as QUIC over TCP, the agent's fallback where
    /// UDP is blocked; `None` from agents without it.
    #[serde(default)]
    pub tcp: Option<QuicCheck>,
    pub udp: UdpCheck,
    pub port_mapping: PortMappingCheck,
    /// The path the agent would use, drawn from the three checks.
    pub path: PathVerdict,
}

/// Whether a QUIC handshake to the controller completed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QuicReach {
    /// The handshake completed (and the certificate matched the pin, if given).
    Connected,
    /// The controller answered with a certificate other than the pinned one.
    FingerprintMismatch,
    /// No handshake within the time allowed, or the name did not resolve.
    Unreachable,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuicCheck {
    pub reach: QuicReach,
    /// The address dialled, once `HOST` resolved.
    pub address: Option<String>,
    /// QUIC's round-trip estimate after the handshake.
    pub rtt_ms: Option<f64>,
    /// SHA-256 of the certificate the controller showed, lowercase hex.
    pub fingerprint: Option<String>,
    /// Whether it is the one given with `--fingerprint`; `None` without one.
    pub fingerprint_matches: Option<bool>,
    /// Why the handshake did not complete.
    pub error: Option<String>,
    /// For QUIC over TCP: the HTTP proxy it went through (`HTTPS_PROXY`),
    /// password left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

/// How the NAT in front of this host maps UDP (RFC 4787), as two STUN
/// servers on one host saw one local socket.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NatMapping {
    /// The servers saw this host's own address and port: no NAT.
    NoNat,
    /// Both servers saw the same address and port.
    EndpointIndependent,
    /// The servers saw different addresses or ports (a "symmetric" NAT).
    VariesByDestination,
    /// Only one server answered: the behaviour is unknown.
    Unknown,
    /// No server answered: UDP is blocked (or no STUN server runs there).
    UdpBlocked,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UdpCheck {
    /// The local port every binding request left from.
    pub local_port: Option<u16>,
    pub stun: Vec<StunProbe>,
    pub mapping: NatMapping,
}

/// One STUN server asked and what it answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StunProbe {
    pub server: String,
    /// The address it saw the request come from; `None`: no answer.
    pub mapped: Option<String>,
    pub rtt_ms: Option<f64>,
}

/// Whether the default gateway answered PCP or NAT-PMP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortMappingCheck {
    /// The default gateway asked; `None`: there is no IPv4 default route.
    pub gateway: Option<String>,
    /// The short mapping it granted (and was asked to delete at once).
    pub granted: Option<PortMapping>,
    /// Whether the gateway confirmed the delete.
    pub deleted: Option<bool>,
    /// Why no mapping was granted.
    pub error: Option<String>,
}

/// The path an agent here would use to its peers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PathVerdict {
    /// No NAT, one that keeps a mapping per socket, or a mapped port.
    DirectToMostPeers,
    /// A NAT that maps per destination, without a mapped port: direct only
    /// to peers behind easy NATs.
    DirectToEasyNatsOnly,
    /// Only one STUN server answered: direct where the NAT allows.
    DirectUndetermined,
    /// UDP to the STUN ports fails but QUIC to the controller works.
    RelayOnly,
    /// The controller showed a certificate other than the pinned one.
    FingerprintMismatch,
    /// No QUIC handshake with the controller over UDP, but one over TCP:
    /// the agent connects over TCP and relays everything through it.
    RelayOverTcp,
    /// No QUIC handshake with the controller.
    ControllerUnreachable,
}

impl PathVerdict {
    /// The verdict for these results: the controller first (no controller,
    /// no network), then a mapped port (peers can always reach it), then
    /// the NAT's mapping behaviour.
    pub fn of(quic: QuicReach, mapping: NatMapping, port_mapped: bool) -> PathVerdict {
        match quic {
            QuicReach::Unreachable => return PathVerdict::ControllerUnreachable,
            QuicReach::FingerprintMismatch => return PathVerdict::FingerprintMismatch,
            QuicReach::Connected => {}
        }
        match mapping {
            NatMapping::UdpBlocked => PathVerdict::RelayOnly,
            _ if port_mapped => PathVerdict::DirectToMostPeers,
            NatMapping::NoNat | NatMapping::EndpointIndependent => PathVerdict::DirectToMostPeers,
            NatMapping::VariesByDestination => PathVerdict::DirectToEasyNatsOnly,
            NatMapping::Unknown => PathVerdict::DirectUndetermined,
        }
    }

    /// The verdict once QUIC over TCP is known: a controller unreachable
    /// over UDP but reached over TCP is still a network, relayed over TCP.
    pub fn with_tcp(self, tcp: QuicReach) -> PathVerdict {
        match (self, tcp) {
            (PathVerdict::ControllerUnreachable, QuicReach::Connected) => PathVerdict::RelayOverTcp,
            (PathVerdict::ControllerUnreachable, QuicReach::FingerprintMismatch) => {
                PathVerdict::FingerprintMismatch
            }
            (verdict, _) => verdict,
        }
    }

    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            PathVerdict::DirectToMostPeers => "direct to most peers",
            PathVerdict::DirectToEasyNatsOnly => {
                "direct only to peers behind easy NATs, relayed otherwise"
            }
            PathVerdict::DirectUndetermined => {
                "direct where the NATs allow, relayed otherwise (one STUN port answered: the NAT's mapping is unknown)"
            }
            PathVerdict::RelayOnly => "relay only (UDP to the STUN ports gets no answer)",
            PathVerdict::FingerprintMismatch => {
                "cannot use the controller: its certificate does not match --fingerprint"
            }
            PathVerdict::RelayOverTcp => {
                "relay only, over TCP (no UDP answer from the controller: UDP is blocked)"
            }
            PathVerdict::ControllerUnreachable => "cannot reach the controller",
        }
    }
}

impl NatMapping {
    /// The behaviour that `mapped` (one entry per server asked, `None` for
    /// no answer) shows for a socket whose own address is `local`.
    pub fn of(
        local: Option<std::net::SocketAddr>,
        mapped: &[Option<std::net::SocketAddr>],
    ) -> NatMapping {
        let answers: Vec<_> = mapped.iter().flatten().collect();
        match answers.as_slice() {
            [] => NatMapping::UdpBlocked,
            [_] => NatMapping::Unknown,
            [first, rest @ ..] => {
                if rest.iter().any(|m| m != first) {
                    NatMapping::VariesByDestination
                } else if local == Some(**first) {
                    NatMapping::NoNat
                } else {
                    NatMapping::EndpointIndependent
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn addr(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    #[test]
    fn mapping_from_answers() {
        let local = addr("10.0.1.2:40000");
        let a = addr("203.0.113.1:40000");
        let b = addr("203.0.113.1:51234");
        assert_eq!(NatMapping::of(local, &[None, None]), NatMapping::UdpBlocked);
        assert_eq!(NatMapping::of(local, &[]), NatMapping::UdpBlocked);
        assert_eq!(NatMapping::of(local, &[a, None]), NatMapping::Unknown);
        assert_eq!(
            NatMapping::of(local, &[a, a]),
            NatMapping::EndpointIndependent
        );
        assert_eq!(
            NatMapping::of(local, &[a, b]),
            NatMapping::VariesByDestination
        );
        assert_eq!(NatMapping::of(a, &[a, a]), NatMapping::NoNat);
        // A different address, same port, is a different mapping too.
        let c = addr("198.51.100.1:40000");
        assert_eq!(
            NatMapping::of(local, &[a, c]),
            NatMapping::VariesByDestination
        );
    }

    #[test]
    fn controller_decides_first() {
        for mapping in [
            NatMapping::NoNat,
            NatMapping::EndpointIndependent,
            NatMapping::VariesByDestination,
            NatMapping::Unknown,
            NatMapping::UdpBlocked,
        ] {
            for mapped in [false, true] {
                assert_eq!(
                    PathVerdict::of(QuicReach::Unreachable, mapping, mapped),
                    PathVerdict::ControllerUnreachable
                );
                assert_eq!(
                    PathVerdict::of(QuicReach::FingerprintMismatch, mapping, mapped),
                    PathVerdict::FingerprintMismatch
                );
            }
        }
    }

    #[test]
    fn a_controller_reached_over_tcp_only_is_a_relayed_network() {
        let unreachable = PathVerdict::of(QuicReach::Unreachable, NatMapping::UdpBlocked, false);
        assert_eq!(
            unreachable.with_tcp(QuicReach::Connected),
            PathVerdict::RelayOverTcp
        );
        assert_eq!(
            unreachable.with_tcp(QuicReach::Unreachable),
            PathVerdict::ControllerUnreachable
        );
        // Reached over TCP only, with the wrong certificate: a mismatch.
        assert_eq!(
            unreachable.with_tcp(QuicReach::FingerprintMismatch),
            PathVerdict::FingerprintMismatch
        );
        // A mismatch over UDP is not rescued by TCP, nor is UDP that works
        // changed by it.
        for verdict in [
            PathVerdict::FingerprintMismatch,
            PathVerdict::DirectToMostPeers,
        ] {
            assert_eq!(verdict.with_tcp(QuicReach::Connected), verdict);
        }
    }

    #[test]
    fn verdicts_with_a_controller() {
        let of = |m, p| PathVerdict::of(QuicReach::Connected, m, p);
        assert_eq!(of(NatMapping::NoNat, false), PathVerdict::DirectToMostPeers);
        assert_eq!(
            of(NatMapping::EndpointIndependent, false),
            PathVerdict::DirectToMostPeers
        );
        assert_eq!(
            of(NatMapping::VariesByDestination, false),
            PathVerdict::DirectToEasyNatsOnly
        );
        // A mapped port is reachable from every peer, whatever the NAT does.
        assert_eq!(
            of(NatMapping::VariesByDestination, true),
            PathVerdict::DirectToMostPeers
        );
        assert_eq!(
            of(NatMapping::Unknown, false),
            PathVerdict::DirectUndetermined
        );
        assert_eq!(
            of(NatMapping::Unknown, true),
            PathVerdict::DirectToMostPeers
        );
        // No UDP answer: a gateway's mapping does not help a blocked path.
        assert_eq!(of(NatMapping::UdpBlocked, false), PathVerdict::RelayOnly);
        assert_eq!(of(NatMapping::UdpBlocked, true), PathVerdict::RelayOnly);
    }

    #[test]
    fn json_names_are_snake_case() {
        let text = serde_json::to_string(&PathVerdict::DirectToEasyNatsOnly).unwrap_or_default();
        assert_eq!(text, "\"direct_to_easy_nats_only\"");
        let text = serde_json::to_string(&NatMapping::VariesByDestination).unwrap_or_default();
        assert_eq!(text, "\"varies_by_destination\"");
    }
}
