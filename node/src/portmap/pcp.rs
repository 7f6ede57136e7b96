//! PCP (RFC 6887) MAP requests and replies for one UDP port: encoding, and
//! parsing that checks every field it relies on.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Granted, ReplyError};

pub const VERSION: u8 = 2;
const OPCODE_MAP: u8 = 1;
const RESPONSE_BIT: u8 = 0x80;
const UDP: u8 = 17;
/// Common header (24) plus the MAP opcode's fields (36).
pub const MAP_LEN: usize = 60;

/// A MAP request for UDP `internal_port` of `client` (the address the
/// request leaves from), `lifetime` seconds (0 deletes it).
pub fn map_request(
    client: Ipv4Addr,
    internal_port: u16,
    lifetime: u32,
    nonce: [u8; 12],
    suggested: Option<SocketAddr>,
) -> [u8; MAP_LEN] {
    let mut b = [0u8; MAP_LEN];
    b[0] = VERSION;
    b[1] = OPCODE_MAP;
    b[4..8].copy_from_slice(&lifetime.to_be_bytes());
    b[8..24].copy_from_slice(&client.to_ipv6_mapped().octets());
    b[24..36].copy_from_slice(&nonce);
    b[36] = UDP;
    b[40..42].copy_from_slice(&internal_port.to_be_bytes());
    let (port, ip) = match suggested {
        Some(SocketAddr::V4(s)) => (s.port(), s.ip().to_ipv6_mapped()),
        // No preference: the all-zeros IPv4-mapped address (RFC 6887 11.1).
        _ => (0, Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()),
    };
    b[42..44].copy_from_slice(&port.to_be_bytes());
    b[44..60].copy_from_slice(&ip.octets());
    b
}

/// The server's answer to [`map_request`] with `nonce` for `internal_port`.
pub fn parse_map_reply(
    reply: &[u8],
    internal_port: u16,
    nonce: [u8; 12],
) -> Result<Granted, ReplyError> {
    let version = *reply.first().ok_or(ReplyError::Short)?;
    if version != VERSION {
        // A NAT-PMP-only server answers version 0 with UNSUPP_VERSION.
        return Err(ReplyError::Version(version));
    }
    if reply.len() < MAP_LEN {
        return Err(ReplyError::Short);
    }
    if reply[1] != RESPONSE_BIT | OPCODE_MAP {
        return Err(ReplyError::Opcode(reply[1]));
    }
    let result = reply[3];
    if result != 0 {
        return Err(ReplyError::Refused(u16::from(result)));
    }
    let lifetime = u32::from_be_bytes([reply[4], reply[5], reply[6], reply[7]]);
    if reply[24..36] != nonce {
        return Err(ReplyError::Mismatch("nonce"));
    }
    if reply[36] != UDP || u16::from_be_bytes([reply[40], reply[41]]) != internal_port {
        return Err(ReplyError::Mismatch("protocol or internal port"));
    }
    let port = u16::from_be_bytes([reply[42], reply[43]]);
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&reply[44..60]);
    let ip = Ipv6Addr::from(ip)
        .to_ipv4_mapped()
        .ok_or(ReplyError::Mismatch("external address is not IPv4"))?;
    Granted::new(SocketAddr::from((ip, port)), lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 12] = [7; 12];

    fn reply(result: u8, port: u16, ip: Ipv4Addr) -> Vec<u8> {
        let mut r = map_request(Ipv4Addr::new(10, 0, 1, 2), 41641, 7200, NONCE, None).to_vec();
        r[1] = 0x81;
        r[3] = result;
        r[4..8].copy_from_slice(&3600u32.to_be_bytes());
        r[8..24].fill(0);
        r[42..44].copy_from_slice(&port.to_be_bytes());
        r[44..60].copy_from_slice(&ip.to_ipv6_mapped().octets());
        r
    }

    #[test]
    fn request_layout() {
        let r = map_request(Ipv4Addr::new(10, 0, 1, 2), 41641, 7200, NONCE, None);
        assert_eq!(&r[..4], &[2, 1, 0, 0]);
        assert_eq!(&r[4..8], &7200u32.to_be_bytes());
        assert_eq!(&r[18..24], &[0xff, 0xff, 10, 0, 1, 2]);
        assert_eq!(r[36], 17);
        assert_eq!(&r[40..42], &41641u16.to_be_bytes());
        assert_eq!(&r[54..60], &[0xff, 0xff, 0, 0, 0, 0]);
    }

    #[test]
    fn good_reply_grants_the_mapping() {
        let g = parse_map_reply(&reply(0, 5000, Ipv4Addr::new(100, 128, 0, 1)), 41641, NONCE);
        let g = g.unwrap();
        assert_eq!(g.external, "100.128.0.1:5000".parse().unwrap());
        assert_eq!(g.lifetime, 3600);
    }

    #[test]
    fn malformed_replies_are_errors() {
        let good = reply(0, 5000, Ipv4Addr::new(100, 128, 0, 1));
        for len in 0..MAP_LEN {
            assert!(
                parse_map_reply(&good[..len], 41641, NONCE).is_err(),
                "{len}"
            );
        }
        let mut bad = good.clone();
        bad[24] ^= 1;
        assert_eq!(
            parse_map_reply(&bad, 41641, NONCE),
            Err(ReplyError::Mismatch("nonce"))
        );
        assert!(parse_map_reply(&good, 41642, NONCE).is_err());
        let mut v6 = good.clone();
        v6[44..60].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert!(parse_map_reply(&v6, 41641, NONCE).is_err());
        let mut req = good.clone();
        req[1] = 1;
        assert!(parse_map_reply(&req, 41641, NONCE).is_err());
        assert_eq!(
            parse_map_reply(&reply(2, 5000, Ipv4Addr::new(1, 2, 3, 4)), 41641, NONCE),
            Err(ReplyError::Refused(2))
        );
        assert_eq!(
            parse_map_reply(&[0, 0x81, 0, 1], 41641, NONCE),
            Err(ReplyError::Version(0))
        );
        // Port 0 or an unspecified address is no mapping.
        assert!(parse_map_reply(&reply(0, 0, Ipv4Addr::new(1, 2, 3, 4)), 41641, NONCE).is_err());
        assert!(parse_map_reply(&reply(0, 5000, Ipv4Addr::UNSPECIFIED), 41641, NONCE).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = parse_map_reply(&bytes, 41641, NONCE);
            let _ = super::super::natpmp::parse_map_reply(&bytes, 41641);
            let _ = super::super::natpmp::parse_address_reply(&bytes);
        }
    }
}
