//! Reading what the filter decides by from an IP packet: addresses, protocol, ports, TCP flags, ICMP kind, and the flow it belongs to.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use warren_proto::filter::Protocol;

pub(crate) const ICMP: u8 = 1;
pub(crate) const TCP: u8 = 6;
pub(crate) const UDP: u8 = 17;
pub(crate) const ICMPV6: u8 = 58;

pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

/// IPv6 extension headers followed before giving up on a packet.
const MAX_EXTENSION_HEADERS: usize = 8;

/// The transport part of a packet, as far as the filter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        /// Payload bytes plus one for SYN and one for FIN: what an ACK of it covers.
        seg_len: u32,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// An ICMP or ICMPv6 echo; its identifier stands in for the asker's port.
    Echo {
        id: u16,
        request: bool,
    },
    /// An ICMP error quoting a packet, and the flow of that packet if it
    /// could be read.
    IcmpError {
        quoted: Option<FlowKey>,
    },
    /// Any other ICMP message.
    IcmpOther,
    /// A fragment after the first: it carries no transport header.
    LaterFragment,
    /// Another protocol, tracked by addresses alone.
    Other,
}

/// A packet's addresses and transport, read without copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number of the transport (after IPv6 extension headers).
    pub protocol: u8,
    /// Where the IP header (with its extensions) ends.
    pub header_len: usize,
    /// The packet's length by its own header (a TUN may hand over more).
    pub total_len: usize,
    pub transport: Transport,
}

/// The packet is not an IP packet the filter can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

/// A flow, the same whichever way its packets go: the lower endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub protocol: u8,
    pub low: Endpoint,
    pub high: Endpoint,
}

impl Hash for FlowKey {
    /// Three wide writes instead of a dozen small ones: this hash is most
    /// of a tracked packet's cost. (An IPv4 address and its IPv4-mapped
    /// IPv6 form hash alike; equality still tells them apart.)
    fn hash<H: Hasher>(&self, h: &mut H) {
        let wide = |a: IpAddr| match a {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        h.write_u128(wide(self.low.addr));
        h.write_u128(wide(self.high.addr));
        h.write_u64(
            u64::from(self.protocol) << 32
                | u64::from(self.low.port) << 16
                | u64::from(self.high.port),
        );
    }
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and whether `src` is the low end.
    pub fn new(protocol: u8, src: Endpoint, dst: Endpoint) -> (FlowKey, bool) {
        if src <= dst {
            (
                FlowKey {
                    protocol,
                    low: src,
                    high: dst,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    protocol,
                    low: dst,
                    high: src,
                },
                false,
            )
        }
    }
}

/// The protocol a rule names for an IP protocol number; `Any` stands for
/// the protocols only `*` admits.
pub(crate) fn rule_protocol(protocol: u8) -> Protocol {
    match protocol {
        TCP => Protocol::Tcp,
        UDP => Protocol::Udp,
        ICMP | ICMPV6 => Protocol::Icmp,
        _ => Protocol::Any,
    }
}

impl Parsed {
    /// The flow this packet belongs to and whether its source is the flow's
    /// low end; `None` for packets that are not tracked (ICMP errors and
    /// other ICMP messages, later fragments).
    pub fn flow(&self) -> Option<(FlowKey, bool)> {
        let (sport, dport) = match self.transport {
            Transport::Tcp {
                src_port, dst_port, ..
            }
            | Transport::Udp { src_port, dst_port } => (src_port, dst_port),
            // The identifier sits on the asker's side: a reply matches its
            // request, but an echo request the other way is a flow of its own.
            Transport::Echo { id, request: true } => (id, 0),
            Transport::Echo { id, request: false } => (0, id),
            Transport::Other => (0, 0),
            Transport::IcmpError { .. } | Transport::IcmpOther | Transport::LaterFragment => {
                return None
            }
        };
        Some(FlowKey::new(
            self.protocol,
            Endpoint {
                addr: self.src,
                port: sport,
            },
            Endpoint {
                addr: self.dst,
                port: dport,
            },
        ))
    }

    /// The port a rule matches: the destination port, or 0.
    pub fn rule_port(&self) -> u16 {
        match self.transport {
            Transport::Tcp { dst_port, .. } | Transport::Udp { dst_port, .. } => dst_port,
            _ => 0,
        }
    }
}

/// Reads a packet from the TUN or from a peer.
pub(crate) fn parse(packet: &[u8]) -> Result<Parsed, Malformed> {
    parse_inner(packet, false)
}

/// Reads a packet; a `quoted` one (inside an ICMP error) may be cut short
/// after its transport header's first 8 bytes.
fn parse_inner(packet: &[u8], quoted: bool) -> Result<Parsed, Malformed> {
    match packet.first().ok_or(Malformed)? >> 4 {
        4 => parse_v4(packet, quoted),
        6 => parse_v6(packet, quoted),
        _ => Err(Malformed),
    }
}

fn be16(b: &[u8], at: usize) -> Result<u16, Malformed> {
    let bytes = b.get(at..at + 2).ok_or(Malformed)?;
    Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn be32(b: &[u8], at: usize) -> Result<u32, Malformed> {
    let bytes = b.get(at..at + 4).ok_or(Malformed)?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn parse_v4(p: &[u8], quoted: bool) -> Result<Parsed, Malformed> {
    let header_len = usize::from(p[0] & 0x0f) * 4;
    if header_len < 20 || p.len() < header_len {
        return Err(Malformed);
    }
    let total_len = usize::from(be16(p, 2)?);
    if total_len < header_len || (!quoted && total_len > p.len()) {
        return Err(Malformed);
    }
    let end = total_len.min(p.len());
    let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
    let protocol = p[9];
    let fragment_offset = be16(p, 6)? & 0x1fff;
    let transport = if fragment_offset != 0 {
        Transport::LaterFragment
    } else {
        transport(protocol, &p[header_len..end], quoted)?
    };
    Ok(Parsed {
        src,
        dst,
        protocol,
        header_len,
        total_len: end,
        transport,
    })
}

fn parse_v6(p: &[u8], quoted: bool) -> Result<Parsed, Malformed> {
    if p.len() < 40 {
        return Err(Malformed);
    }
    let total_len = 40 + usize::from(be16(p, 4)?);
    if !quoted && total_len > p.len() {
        return Err(Malformed);
    }
    let end = total_len.min(p.len());
    let octets = |at: usize| -> Result<Ipv6Addr, Malformed> {
        let bytes: [u8; 16] = p
            .get(at..at + 16)
            .and_then(|b| b.try_into().ok())
            .ok_or(Malformed)?;
        Ok(Ipv6Addr::from(bytes))
    };
    let src = IpAddr::V6(octets(8)?);
    let dst = IpAddr::V6(octets(24)?);
    let mut next = p[6];
    let mut at = 40;
    let mut later_fragment = false;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => (usize::from(*p.get(at + 1).ok_or(Malformed)?) + 1) * 8,
            // Fragment.
            44 => {
                later_fragment = be16(p, at + 2)? >> 3 != 0;
                8
            }
            // Authentication header.
            51 => (usize::from(*p.get(at + 1).ok_or(Malformed)?) + 2) * 4,
            _ => break,
        };
        next = *p.get(at).ok_or(Malformed)?;
        at += len;
        if at > end {
            return Err(Malformed);
        }
    }
    if matches!(next, 0 | 43 | 60 | 44 | 51) {
        // More extension headers than anyone sends: refuse rather than guess.
        return Err(Malformed);
    }
    let transport = if later_fragment {
        Transport::LaterFragment
    } else {
        transport(next, &p[at..end], quoted)?
    };
    Ok(Parsed {
        src,
        dst,
        protocol: next,
        header_len: at,
        total_len: end,
        transport,
    })
}

fn transport(protocol: u8, l4: &[u8], quoted: bool) -> Result<Transport, Malformed> {
    match protocol {
        TCP => {
            let src_port = be16(l4, 0)?;
            let dst_port = be16(l4, 2)?;
            let seq = be32(l4, 4)?;
            if quoted {
                // A quote holds 8 bytes of the header: the ports and the sequence number.
                return Ok(Transport::Tcp {
                    src_port,
                    dst_port,
                    flags: 0,
                    seq,
                    ack: 0,
                    seg_len: 0,
                });
            }
            let data_offset = usize::from(*l4.get(12).ok_or(Malformed)? >> 4) * 4;
            if data_offset < 20 || l4.len() < data_offset {
                return Err(Malformed);
            }
            let flags = l4[13];
            let payload = (l4.len() - data_offset) as u32;
            let seg_len =
                payload + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
            Ok(Transport::Tcp {
                src_port,
                dst_port,
                flags,
                seq,
                ack: be32(l4, 8)?,
                seg_len,
            })
        }
        UDP => {
            if l4.len() < 8 {
                return Err(Malformed);
            }
            Ok(Transport::Udp {
                src_port: be16(l4, 0)?,
                dst_port: be16(l4, 2)?,
            })
        }
        ICMP | ICMPV6 => icmp(protocol, l4, quoted),
        _ => Ok(Transport::Other),
    }
}

fn icmp(protocol: u8, l4: &[u8], quoted: bool) -> Result<Transport, Malformed> {
    let kind = *l4.first().ok_or(Malformed)?;
    let (echo_request, echo_reply, is_error) = if protocol == ICMP {
        (kind == 8, kind == 0, matches!(kind, 3 | 11 | 12))
    } else {
        (kind == 128, kind == 129, matches!(kind, 1..=4))
    };
    if l4.len() < 8 {
        return Err(Malformed);
    }
    if echo_request || echo_reply {
        return Ok(Transport::Echo {
            id: be16(l4, 4)?,
            request: echo_request,
        });
    }
    if !is_error {
        return Ok(Transport::IcmpOther);
    }
    if quoted {
        // An error quoting an error says nothing about a flow.
        return Ok(Transport::IcmpError { quoted: None });
    }
    let flow = parse_inner(&l4[8..], true)
        .ok()
        .and_then(|inner| inner.flow())
        .map(|(key, _)| key);
    Ok(Transport::IcmpError { quoted: flow })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::filter::reject::tests::{tcp, udp, v6_udp};

    #[test]
    fn reads_tcp_udp_and_the_flow_both_ways() {
        let syn = tcp("10.0.0.1:40000", "10.0.0.2:3000", TCP_SYN, b"");
        let p = parse(&syn).unwrap();
        assert_eq!(p.protocol, TCP);
        assert_eq!(p.rule_port(), 3000);
        assert!(matches!(
            p.transport,
            Transport::Tcp {
                flags: TCP_SYN,
                seg_len: 1,
                ..
            }
        ));
        let reply = tcp("10.0.0.2:3000", "10.0.0.1:40000", TCP_SYN | TCP_ACK, b"");
        let (k1, low1) = p.flow().unwrap();
        let (k2, low2) = parse(&reply).unwrap().flow().unwrap();
        assert_eq!(k1, k2);
        assert_ne!(low1, low2);
        let v6 = parse(&v6_udp("[fd00::1]:5353", "[fd00::2]:53")).unwrap();
        assert_eq!((v6.protocol, v6.rule_port()), (UDP, 53));
        assert_eq!(
            parse(&udp("10.0.0.1:1", "10.0.0.2:53"))
                .unwrap()
                .rule_port(),
            53
        );
    }

    #[test]
    fn short_or_lying_packets_are_malformed() {
        let syn = tcp("10.0.0.1:40000", "10.0.0.2:3000", TCP_SYN, b"");
        for cut in 0..syn.len() {
            assert_eq!(parse(&syn[..cut]), Err(Malformed), "cut at {cut}");
        }
        let mut bad_offset = syn.clone();
        bad_offset[20 + 12] = 0x20; // an 8-byte TCP header
        assert_eq!(parse(&bad_offset), Err(Malformed));
        assert_eq!(parse(&[0x70; 60]), Err(Malformed));
        let v6 = v6_udp("[fd00::1]:5353", "[fd00::2]:53");
        for cut in 0..v6.len() {
            assert_eq!(parse(&v6[..cut]), Err(Malformed), "cut at {cut}");
        }
    }

    #[test]
    fn later_fragments_and_v6_extension_headers_are_read() {
        let mut frag = udp("10.0.0.1:1", "10.0.0.2:53");
        frag[6..8].copy_from_slice(&185u16.to_be_bytes());
        assert_eq!(parse(&frag).unwrap().transport, Transport::LaterFragment);
        // UDP behind a destination-options header.
        let plain = v6_udp("[fd00::1]:5353", "[fd00::2]:53");
        let mut ext = plain[..40].to_vec();
        ext[6] = 60;
        let payload_len = u16::from_be_bytes([ext[4], ext[5]]) + 8;
        ext[4..6].copy_from_slice(&payload_len.to_be_bytes());
        ext.extend_from_slice(&[UDP, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&plain[40..]);
        let p = parse(&ext).unwrap();
        assert_eq!((p.protocol, p.header_len, p.rule_port()), (UDP, 48, 53));
    }
}
