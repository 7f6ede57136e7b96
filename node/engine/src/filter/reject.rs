//! What a denied outbound packet gets back on the TUN: ICMP "administratively prohibited" (RFC 792, RFC 4443) and, for a cut TCP connection, a reset (RFC 793).

use std::net::IpAddr;

use super::flow::{Parsed, Transport, ICMP, ICMPV6, TCP, TCP_ACK, TCP_RST};

/// What an ICMPv6 error may quote: the packet must fit the IPv6 minimum MTU.
const V6_MIN_MTU: usize = 1280;
const HOP_LIMIT: u8 = 64;

/// ICMP destination unreachable, administratively prohibited, from the
/// packet's destination to its source, quoting it: the IP header and 8
/// bytes for IPv4 (RFC 792), as much as fits 1280 bytes for IPv6 (RFC 4443).
/// `None` where the RFCs forbid an error: for ICMP errors, later fragments,
/// and multicast, broadcast or unspecified addresses.
pub(crate) fn admin_prohibited(packet: &[u8], p: &Parsed) -> Option<Vec<u8>> {
    if matches!(
        p.transport,
        Transport::IcmpError { .. } | Transport::LaterFragment
    ) || !unicast(p.src)
        || !unicast(p.dst)
    {
        return None;
    }
    let packet = &packet[..p.total_len];
    match (p.src, p.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            let quote = &packet[..packet.len().min(p.header_len + 8)];
            let mut out = ip_header(p.dst, p.src, ICMP, 8 + quote.len());
            let start = out.len();
            out.extend_from_slice(&[3, 13, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(quote);
            let sum = finish(add(0, &out[start..]));
            out[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
            Some(out)
        }
        (IpAddr::V6(_), IpAddr::V6(_)) => {
            let quote = &packet[..packet.len().min(V6_MIN_MTU - 40 - 8)];
            let mut out = ip_header(p.dst, p.src, ICMPV6, 8 + quote.len());
            let start = out.len();
            out.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(quote);
            let sum = transport_checksum(&out, start, ICMPV6);
            out[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
            Some(out)
        }
        _ => None,
    }
}

/// A TCP reset to the local socket that sent `p`, as if from its peer, so
/// that a connection the policy no longer allows ends at once. Its sequence
/// number is the one the socket acknowledged, the only one Linux takes at
/// once (RFC 5961); `None` for a reset, a SYN or a non-TCP packet.
pub(crate) fn tcp_reset(p: &Parsed) -> Option<Vec<u8>> {
    let Transport::Tcp {
        src_port,
        dst_port,
        flags,
        seq,
        ack,
        seg_len,
    } = p.transport
    else {
        return None;
    };
    if flags & TCP_RST != 0 || flags & super::flow::TCP_SYN != 0 {
        return None;
    }
    let (rst_seq, rst_ack, rst_flags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        (0, seq.wrapping_add(seg_len), TCP_RST | TCP_ACK)
    };
    let mut out = ip_header(p.dst, p.src, TCP, 20);
    let start = out.len();
    out.extend_from_slice(&dst_port.to_be_bytes());
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&rst_seq.to_be_bytes());
    out.extend_from_slice(&rst_ack.to_be_bytes());
    out.extend_from_slice(&[5 << 4, rst_flags, 0, 0, 0, 0, 0, 0]);
    let sum = transport_checksum(&out, start, TCP);
    out[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
    Some(out)
}

fn unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified()),
    }
}

/// An IP header from `src` to `dst` for `payload_len` bytes of `protocol`.
fn ip_header(src: IpAddr, dst: IpAddr, protocol: u8, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + payload_len);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload_len) as u16;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, HOP_LIMIT, protocol, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let sum = finish(add(0, &out));
            out[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (s, d) => {
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
            out.extend_from_slice(&[protocol, HOP_LIMIT]);
            out.extend_from_slice(&v6_octets(s));
            out.extend_from_slice(&v6_octets(d));
        }
    }
    out
}

fn v6_octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// The checksum of the transport message at `out[start..]`, with the
/// pseudo-header of the IP header in front of it (RFC 793, RFC 8200 8.1).
fn transport_checksum(out: &[u8], start: usize, protocol: u8) -> u16 {
    let len = (out.len() - start) as u32;
    let addresses = if out[0] >> 4 == 4 {
        &out[12..20]
    } else {
        &out[8..40]
    };
    let mut sum = add(0, addresses);
    sum += len >> 16;
    sum += len & 0xffff;
    sum += u32::from(protocol);
    finish(add(sum, &out[start..]))
}

/// Adds 16-bit big-endian words to a ones'-complement sum (odd tail padded with zero).
pub(crate) fn add(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        // Fold as we go: a 64 KiB packet cannot overflow, but stay safe.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

pub(crate) fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use super::super::flow::{parse, TCP_FIN, TCP_SYN, UDP};
    use super::*;

    /// A TCP segment from `src` to `dst` with `flags` and `payload`; seq 1000, ack 7000.
    pub(crate) fn tcp(src: &str, dst: &str, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut out = ip_header(s.ip(), d.ip(), TCP, 20 + payload.len());
        let start = out.len();
        out.extend_from_slice(&s.port().to_be_bytes());
        out.extend_from_slice(&d.port().to_be_bytes());
        out.extend_from_slice(&1000u32.to_be_bytes());
        out.extend_from_slice(&7000u32.to_be_bytes());
        out.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        out.extend_from_slice(payload);
        let sum = transport_checksum(&out, start, TCP);
        out[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
        out
    }

    fn udp_any(src: &str, dst: &str) -> Vec<u8> {
        let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut out = ip_header(s.ip(), d.ip(), UDP, 12);
        out.extend_from_slice(&s.port().to_be_bytes());
        out.extend_from_slice(&d.port().to_be_bytes());
        out.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
        out
    }

    pub(crate) fn udp(src: &str, dst: &str) -> Vec<u8> {
        udp_any(src, dst)
    }

    pub(crate) fn v6_udp(src: &str, dst: &str) -> Vec<u8> {
        udp_any(src, dst)
    }

    /// An ICMP(v6) echo request or reply with identifier `id`.
    pub(crate) fn echo(src: &str, dst: &str, id: u16, request: bool) -> Vec<u8> {
        let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let v4 = s.is_ipv4();
        let kind = match (v4, request) {
            (true, true) => 8,
            (true, false) => 0,
            (false, true) => 128,
            (false, false) => 129,
        };
        let mut out = ip_header(s, d, if v4 { ICMP } else { ICMPV6 }, 8);
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out
    }

    /// True if the ones'-complement sum over `bytes` (checksum included) is all ones.
    fn sums_to_zero(sum: u32) -> bool {
        finish(sum) == 0
    }

    /// Checks an ICMP or TCP message the independent way: the sum over the
    /// pseudo-header and the whole message, checksum included, is zero.
    fn transport_valid(packet: &[u8], start: usize, protocol: u8) -> bool {
        let len = (packet.len() - start) as u32;
        let mut sum = if packet[0] >> 4 == 4 && protocol == ICMP {
            0
        } else if packet[0] >> 4 == 4 {
            add(0, &packet[12..20])
        } else {
            add(0, &packet[8..40])
        };
        if !(packet[0] >> 4 == 4 && protocol == ICMP) {
            sum += len + u32::from(protocol);
        }
        sums_to_zero(add(sum, &packet[start..]))
    }

    #[test]
    fn the_checksum_matches_rfc_1071s_example() {
        let sum = add(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(finish(sum), !0xddf2);
        assert_eq!(finish(add(0, &[0x00, 0x01, 0xf2])), !0xf201);
    }

    #[test]
    fn v4_admin_prohibited_quotes_the_header_and_8_bytes_with_valid_checksums() {
        let denied = tcp("10.0.0.1:40000", "10.0.0.2:443", TCP_SYN, b"0123456789");
        let p = parse(&denied).unwrap();
        let icmp = admin_prohibited(&denied, &p).unwrap();
        assert_eq!(icmp.len(), 20 + 8 + 20 + 8);
        assert!(sums_to_zero(add(0, &icmp[..20])), "IPv4 header checksum");
        assert!(transport_valid(&icmp, 20, ICMP), "ICMP checksum");
        assert_eq!((icmp[9], icmp[20], icmp[21]), (ICMP, 3, 13));
        assert_eq!(&icmp[12..16], &[10, 0, 0, 2], "from the denied destination");
        assert_eq!(&icmp[16..20], &[10, 0, 0, 1], "to the sender");
        assert_eq!(&icmp[28..], &denied[..28]);
        let back = parse(&icmp).unwrap();
        let Transport::IcmpError { quoted: Some(key) } = back.transport else {
            panic!("not read as an ICMP error: {:?}", back.transport);
        };
        assert_eq!(Some(key), p.flow().map(|(k, _)| k));
    }

    #[test]
    fn v6_admin_prohibited_quotes_up_to_the_minimum_mtu_with_a_valid_checksum() {
        let denied = tcp("[fd00::1]:40000", "[fd00::2]:443", TCP_SYN, &[7; 2000]);
        let p = parse(&denied).unwrap();
        let icmp = admin_prohibited(&denied, &p).unwrap();
        assert_eq!(icmp.len(), 1280);
        assert!(transport_valid(&icmp, 40, ICMPV6), "ICMPv6 checksum");
        assert_eq!((icmp[6], icmp[40], icmp[41]), (ICMPV6, 1, 1));
        assert_eq!(&icmp[48..], &denied[..1232]);
        let small = udp("[fd00::1]:1", "[fd00::2]:53");
        let icmp = admin_prohibited(&small, &parse(&small).unwrap()).unwrap();
        assert_eq!(&icmp[48..], &small[..]);
        assert!(transport_valid(&icmp, 40, ICMPV6));
    }

    #[test]
    fn no_error_for_errors_fragments_or_multicast() {
        let denied = tcp("10.0.0.1:40000", "10.0.0.2:443", TCP_SYN, b"");
        let icmp = admin_prohibited(&denied, &parse(&denied).unwrap()).unwrap();
        assert_eq!(admin_prohibited(&icmp, &parse(&icmp).unwrap()), None);
        let mut frag = udp("10.0.0.1:1", "10.0.0.2:53");
        frag[6] = 0x01;
        assert_eq!(admin_prohibited(&frag, &parse(&frag).unwrap()), None);
        let mcast = udp("10.0.0.1:1", "224.0.0.251:5353");
        assert_eq!(admin_prohibited(&mcast, &parse(&mcast).unwrap()), None);
        let mcast6 = udp("[fd00::1]:1", "[ff02::fb]:5353");
        assert_eq!(admin_prohibited(&mcast6, &parse(&mcast6).unwrap()), None);
    }

    #[test]
    fn resets_take_the_acknowledged_sequence_number() {
        for (src, dst, hlen) in [
            ("10.0.0.1:40000", "10.0.0.2:3000", 20),
            ("[fd00::1]:40000", "[fd00::2]:3000", 40),
        ] {
            let data = tcp(src, dst, TCP_ACK, b"hello");
            let rst = tcp_reset(&parse(&data).unwrap()).unwrap();
            assert!(transport_valid(&rst, hlen, TCP), "TCP checksum");
            let back = parse(&rst).unwrap();
            assert_eq!(back.src, parse(&data).unwrap().dst);
            let Transport::Tcp {
                src_port,
                dst_port,
                flags,
                seq,
                ..
            } = back.transport
            else {
                panic!("not TCP");
            };
            assert_eq!(
                (src_port, dst_port, flags, seq),
                (3000, 40000, TCP_RST, 7000)
            );
        }
        // Without an ACK: acknowledge the segment (5 bytes and the FIN).
        let fin = tcp("10.0.0.1:40000", "10.0.0.2:3000", TCP_FIN, b"hello");
        let rst = parse(&tcp_reset(&parse(&fin).unwrap()).unwrap()).unwrap();
        assert!(matches!(
            rst.transport,
            Transport::Tcp { flags, seq: 0, ack: 1006, .. } if flags == TCP_RST | TCP_ACK
        ));
        let syn = tcp("10.0.0.1:40000", "10.0.0.2:3000", TCP_SYN, b"");
        assert_eq!(tcp_reset(&parse(&syn).unwrap()), None);
    }
}
