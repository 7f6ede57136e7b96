//! Minimal hand-built IPv4 and IPv6 packets that carry a sequence number, and reading them back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RFC 3692's protocol number for experiments: nothing on the path interprets it.
const EXPERIMENTAL: u8 = 253;
const V4_HEADER: usize = 20;
const V6_HEADER: usize = 40;
/// The smallest packet: a header and the 4-byte sequence number.
pub const MIN_V4_LEN: usize = V4_HEADER + 4;

/// A packet from `src` to `dst` carrying `seq`, in the family of the addresses.
pub fn packet(src: IpAddr, dst: IpAddr, seq: u32) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, seq, MIN_V4_LEN),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, seq),
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// An IPv4 packet of exactly `total_len` bytes (at least [`MIN_V4_LEN`]).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, seq: u32, total_len: usize) -> Vec<u8> {
    assert!((MIN_V4_LEN..=usize::from(u16::MAX)).contains(&total_len));
    let mut p = vec![0u8; total_len];
    p[0] = 0x45; // version 4, 5-word header
    p[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    p[8] = 64; // TTL
    p[9] = EXPERIMENTAL;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let checksum = header_checksum(&p[..V4_HEADER]);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p[V4_HEADER..V4_HEADER + 4].copy_from_slice(&seq.to_be_bytes());
    p
}

/// An IPv6 packet with a 4-byte payload holding `seq`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; V6_HEADER + 4];
    p[0] = 0x60; // version 6
    p[4..6].copy_from_slice(&4u16.to_be_bytes()); // payload length
    p[6] = EXPERIMENTAL;
    p[7] = 64; // hop limit
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[V6_HEADER..].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The sequence number a packet built here carries.
pub fn seq(packet: &[u8]) -> u32 {
    let header = match packet[0] >> 4 {
        4 => V4_HEADER,
        6 => V6_HEADER,
        v => panic!("not a packet built here: version {v}"),
    };
    let bytes: [u8; 4] = packet[header..header + 4]
        .try_into()
        .expect("packets built here carry a 4-byte sequence number");
    u32::from_be_bytes(bytes)
}

/// The source address of an IPv4 or IPv6 packet.
pub fn source(packet: &[u8]) -> IpAddr {
    match packet[0] >> 4 {
        4 => IpAddr::from(<[u8; 4]>::try_from(&packet[12..16]).expect("4 bytes")),
        _ => IpAddr::from(<[u8; 16]>::try_from(&packet[8..24]).expect("16 bytes")),
    }
}

fn header_checksum(header: &[u8]) -> u16 {
    let sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    !(((folded & 0xffff) + (folded >> 16)) as u16)
}
