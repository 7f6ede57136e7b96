#![allow(clippy::unwrap_used)]

use super::*;

fn pair() -> MappedPrefix {
    MappedPrefix {
        real: "10.96.0.0/12".parse().unwrap(),
        mapped: "100.64.0.0/12".parse().unwrap(),
    }
}

fn nat() -> SiteNat {
    SiteNat::new(vec![
        MappedPrefix {
            real: "10.244.0.0/16".parse().unwrap(),
            mapped: "100.80.0.0/16".parse().unwrap(),
        },
        pair(),
    ])
}

/// The one's-complement sum of `data`, folded, from `start`.
fn sum(data: &[u8], start: u32) -> u32 {
    let mut s = start;
    for chunk in data.chunks(2) {
        let word = match chunk {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        s += u32::from(word);
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

fn checksum(data: &[u8], start: u32) -> u16 {
    !(sum(data, start) as u16)
}

fn pseudo(packet: &[u8], protocol: u8, len: usize) -> u32 {
    let mut p = Vec::new();
    p.extend_from_slice(&packet[12..20]);
    p.extend_from_slice(&[0, protocol]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    sum(&p, 0)
}

/// An IPv4 packet from `src` to `dst` with a transport header and payload
/// and every checksum computed in full (a UDP checksum only if `udp_sum`).
fn packet(src: &str, dst: &str, protocol: u8, payload: &[u8], udp_sum: bool) -> Vec<u8> {
    let transport_len = match protocol {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => 8,
    };
    let total = 20 + transport_len + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
    p[16..20].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
    let t = 20;
    match protocol {
        PROTO_TCP => {
            p[t..t + 2].copy_from_slice(&43210u16.to_be_bytes());
            p[t + 2..t + 4].copy_from_slice(&80u16.to_be_bytes());
            p[t + 4..t + 8].copy_from_slice(&7u32.to_be_bytes());
            p[t + 12] = 5 << 4;
            p[t + 13] = 0x02;
            p[t + 14..t + 16].copy_from_slice(&64240u16.to_be_bytes());
        }
        PROTO_UDP => {
            p[t..t + 2].copy_from_slice(&5353u16.to_be_bytes());
            p[t + 2..t + 4].copy_from_slice(&53u16.to_be_bytes());
            p[t + 4..t + 6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        _ => {
            // ICMP echo request.
            p[t] = 8;
            p[t + 4..t + 8].copy_from_slice(&[0, 1, 0, 9]);
        }
    }
    p[t + transport_len..].copy_from_slice(payload);
    fill_checksums(&mut p, udp_sum);
    p
}

fn fill_checksums(p: &mut [u8], udp_sum: bool) {
    p[10..12].fill(0);
    let c = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let len = p.len() - 20;
    match p[9] {
        PROTO_TCP => {
            p[36..38].fill(0);
            let c = checksum(&p[20..], pseudo(p, PROTO_TCP, len));
            p[36..38].copy_from_slice(&c.to_be_bytes());
        }
        PROTO_UDP if udp_sum => {
            p[26..28].fill(0);
            let c = match checksum(&p[20..], pseudo(p, PROTO_UDP, len)) {
                0 => 0xffff,
                c => c,
            };
            p[26..28].copy_from_slice(&c.to_be_bytes());
        }
        PROTO_UDP => p[26..28].fill(0),
        _ => {
            p[22..24].fill(0);
            let c = checksum(&p[20..], 0);
            p[22..24].copy_from_slice(&c.to_be_bytes());
        }
    }
}

/// Whether every checksum of a whole (unfragmented) packet verifies.
fn verifies(p: &[u8]) -> bool {
    let len = p.len() - 20;
    let header = sum(&p[..20], 0) == 0xffff;
    header
        && match p[9] {
            PROTO_TCP => sum(&p[20..], pseudo(p, PROTO_TCP, len)) == 0xffff,
            PROTO_UDP if p[26..28] == [0, 0] => true,
            PROTO_UDP => sum(&p[20..], pseudo(p, PROTO_UDP, len)) == 0xffff,
            _ => sum(&p[20..], 0) == 0xffff,
        }
}

fn addr(p: &[u8], at: usize) -> Ipv4Addr {
    ipv4_addr(p, at).unwrap()
}

#[test]
fn inbound_tcp_reaches_the_real_address_with_valid_checksums() {
    let mut p = packet(
        "10.147.0.5",
        "100.64.0.10",
        PROTO_TCP,
        b"GET / HTTP/1.1",
        false,
    );
    assert!(verifies(&p));
    assert!(nat().translate_inbound(&mut p));
    assert_eq!(addr(&p, 16), "10.96.0.10".parse::<Ipv4Addr>().unwrap());
    assert_eq!(addr(&p, 12), "10.147.0.5".parse::<Ipv4Addr>().unwrap());
    assert!(verifies(&p));
    // The same bytes as a packet built with the real address from the start.
    let built = packet(
        "10.147.0.5",
        "10.96.0.10",
        PROTO_TCP,
        b"GET / HTTP/1.1",
        false,
    );
    assert_eq!(p, built);
}

#[test]
fn outbound_udp_leaves_from_the_mapped_address() {
    let mut p = packet("10.111.255.1", "10.147.0.5", PROTO_UDP, b"answer", true);
    assert!(nat().translate_outbound(&mut p));
    assert_eq!(addr(&p, 12), "100.79.255.1".parse::<Ipv4Addr>().unwrap());
    assert!(verifies(&p));
    assert_eq!(
        p,
        packet("100.79.255.1", "10.147.0.5", PROTO_UDP, b"answer", true)
    );
    // The second pair applies too.
    let mut p = packet("10.244.3.7", "10.147.0.5", PROTO_UDP, b"x", true);
    assert!(nat().translate_outbound(&mut p));
    assert_eq!(addr(&p, 12), "100.80.3.7".parse::<Ipv4Addr>().unwrap());
    assert!(verifies(&p));
}

#[test]
fn a_udp_checksum_of_zero_stays_zero() {
    let mut p = packet("10.147.0.5", "100.64.0.10", PROTO_UDP, b"query", false);
    assert!(nat().translate_inbound(&mut p));
    assert_eq!(&p[26..28], &[0, 0]);
    assert!(verifies(&p));
}

#[test]
fn a_udp_checksum_that_comes_out_zero_is_sent_as_all_ones() {
    // Find a payload whose checksum after translation is 0 in full.
    let found = (0..=u16::MAX).find(|w| {
        let mut after = packet(
            "10.147.0.5",
            "10.96.0.10",
            PROTO_UDP,
            &w.to_be_bytes(),
            false,
        );
        after[26..28].fill(0);
        checksum(&after[20..], pseudo(&after, PROTO_UDP, after.len() - 20)) == 0
    });
    let w = found.unwrap();
    let mut p = packet(
        "10.147.0.5",
        "100.64.0.10",
        PROTO_UDP,
        &w.to_be_bytes(),
        true,
    );
    assert!(nat().translate_inbound(&mut p));
    assert_eq!(&p[26..28], &[0xff, 0xff]);
    assert!(verifies(&p));
}

#[test]
fn icmp_needs_only_the_ip_header() {
    let mut p = packet("10.147.0.5", "100.64.0.10", 1, b"ping", false);
    let icmp = p[20..].to_vec();
    assert!(nat().translate_inbound(&mut p));
    assert_eq!(addr(&p, 16), "10.96.0.10".parse::<Ipv4Addr>().unwrap());
    assert_eq!(p[20..], icmp[..]);
    assert!(verifies(&p));
}

#[test]
fn fragments_after_the_first_change_only_the_ip_header() {
    let mut p = packet(
        "10.147.0.5",
        "100.64.0.10",
        PROTO_TCP,
        b"later bytes",
        false,
    );
    // Offset 185 (1480 bytes), more fragments follow.
    p[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
    fill_checksums(&mut p, false);
    let rest = p[20..].to_vec();
    assert!(nat().translate_inbound(&mut p));
    assert_eq!(
        p[20..],
        rest[..],
        "a later fragment has no transport header"
    );
    assert_eq!(sum(&p[..20], 0), 0xffff);

    // The first fragment carries the transport header: its checksum,
    // which covers the whole datagram, is adjusted the same way.
    let mut first = packet("10.147.0.5", "100.64.0.10", PROTO_TCP, b"first", false);
    first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
    fill_checksums(&mut first, false);
    assert!(nat().translate_inbound(&mut first));
    assert!(verifies(&first));
}

#[test]
fn other_addresses_ipv6_and_broken_headers_pass_untouched() {
    let n = nat();
    // Not mapped (the real prefix arriving from the tunnel stays as is).
    let mut p = packet("10.147.0.5", "10.96.0.10", PROTO_TCP, b"x", false);
    let before = p.clone();
    assert!(!n.translate_inbound(&mut p));
    assert_eq!(p, before);
    // Outbound, only the source counts.
    let mut p = packet("10.147.0.5", "10.96.0.10", PROTO_UDP, b"x", true);
    assert!(!n.translate_outbound(&mut p));
    let mut v6 = vec![0u8; 48];
    v6[0] = 0x60;
    let before = v6.clone();
    assert!(!n.translate_inbound(&mut v6));
    assert!(!n.translate_outbound(&mut v6));
    assert_eq!(v6, before);
    // A header shorter than its IHL, or an IHL below 5.
    let mut short = packet("10.147.0.5", "100.64.0.10", PROTO_TCP, b"", false);
    short[0] = 0x4f;
    let before = short.clone();
    assert!(!n.translate_inbound(&mut short[..40]));
    assert_eq!(short, before);
    short[0] = 0x44;
    assert!(!n.translate_inbound(&mut short));
    assert!(!n.translate_inbound(&mut []));
    // No pairs: nothing is read.
    let mut p = packet("10.147.0.5", "100.64.0.10", PROTO_TCP, b"x", false);
    assert!(!SiteNat::default().translate_inbound(&mut p));
}

#[test]
fn a_truncated_transport_header_changes_only_the_ip_header() {
    // A TCP packet cut before its checksum field: the address and the IP
    // header checksum change, nothing is written past the end.
    let mut p = packet("10.147.0.5", "100.64.0.10", PROTO_TCP, b"", false);
    let mut cut = p[..30].to_vec();
    assert!(nat().translate_inbound(&mut cut));
    assert_eq!(sum(&cut[..20], 0), 0xffff);
    assert!(nat().translate_inbound(&mut p));
    assert_eq!(cut[..], p[..30]);
}

/// ICMP port unreachable from `src` to `dst`, quoting `quoted` (a whole
/// packet of which the header and 8 bytes are kept).
fn icmp_error(src: &str, dst: &str, quoted: &[u8]) -> Vec<u8> {
    let quote = &quoted[..28];
    let mut p = packet(src, dst, 1, quote, false);
    // `packet` made an echo request: turn it into type 3 code 3 and
    // move the quote right after the 8-byte ICMP header.
    p[20] = 3;
    p[21] = 3;
    p[24..28].fill(0);
    fill_checksums(&mut p, false);
    p
}

#[test]
fn an_icmp_error_quotes_the_address_its_sender_knows() {
    // The cluster's answer to a member's UDP query to a closed port.
    let query = packet("10.147.0.5", "10.96.0.10", PROTO_UDP, b"q", true);
    let mut err = icmp_error("10.96.0.10", "10.147.0.5", &query);
    assert!(verifies(&err));
    assert!(nat().translate_outbound(&mut err));
    assert_eq!(addr(&err, 12), "100.64.0.10".parse::<Ipv4Addr>().unwrap());
    let quote = &err[28..];
    assert_eq!(addr(quote, 16), "100.64.0.10".parse::<Ipv4Addr>().unwrap());
    assert_eq!(sum(&quote[..20], 0), 0xffff, "the quoted header checksum");
    assert!(verifies(&err), "the IP and ICMP checksums");

    // From the router's own address (not in the site): only the quote.
    let mut err = icmp_error("10.147.0.9", "10.147.0.5", &query);
    assert!(nat().translate_outbound(&mut err));
    assert_eq!(addr(&err, 12), "10.147.0.9".parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        addr(&err[28..], 16),
        "100.64.0.10".parse::<Ipv4Addr>().unwrap()
    );
    assert!(verifies(&err));

    // A member's error about the site's packet, coming in.
    let answer = packet("100.64.0.10", "10.147.0.5", PROTO_UDP, b"a", true);
    let mut err = icmp_error("10.147.0.5", "100.64.0.10", &answer);
    assert!(nat().translate_inbound(&mut err));
    assert_eq!(addr(&err, 16), "10.96.0.10".parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        addr(&err[28..], 12),
        "10.96.0.10".parse::<Ipv4Addr>().unwrap()
    );
    assert!(verifies(&err));

    // An echo request is not an error: its payload is left alone.
    let mut echo = packet("10.147.0.5", "100.64.0.10", 1, &query[..28], false);
    let payload = echo[28..].to_vec();
    assert!(nat().translate_inbound(&mut echo));
    assert_eq!(echo[28..], payload[..]);
}
