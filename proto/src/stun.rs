//! STUN binding requests and responses (RFC 5389 wire format), enough to
//! learn the address a NAT maps our data socket to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The ports `warren-controller serve` answers STUN on unless told
/// otherwise, and the ones `warren netcheck --controller` asks by default:
/// two, so a node can tell whether its NAT maps per destination.
pub const DEFAULT_PORTS: [u16; 2] = [3478, 3479];

pub const MAGIC_COOKIE: u32 = 0x2112_a442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER: usize = 20;

pub type StunTxId = [u8; 12];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("STUN message is malformed")]
    Malformed,
    #[error("STUN response carries no mapped address")]
    NoAddress,
}

/// Whether a datagram looks like STUN: top two bits zero, the magic cookie,
/// a length that matches. WireGuard (type 1..4, then zeros) and disco never do.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER
        && datagram[0] & 0xc0 == 0
        && datagram[4..8] == MAGIC_COOKIE.to_be_bytes()
        && usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) == datagram.len() - HEADER
}

pub fn binding_request(tx: &StunTxId) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER);
    out.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(tx);
    out
}

/// A request's transaction ID, if the datagram is a binding request.
pub fn parse_request(datagram: &[u8]) -> Result<StunTxId, StunError> {
    if !is_stun(datagram) {
        return Err(StunError::NotStun);
    }
    if u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_REQUEST {
        return Err(StunError::Malformed);
    }
    datagram[8..20].try_into().map_err(|_| StunError::Malformed)
}

/// A server's answer to one datagram from `source`: a binding success
/// response for a binding request, `None` for anything else.
pub fn answer(datagram: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    let tx = parse_request(datagram).ok()?;
    // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; the node
    // must see the IPv4 address its NAT really uses.
    let observed = SocketAddr::new(source.ip().to_canonical(), source.port());
    Some(binding_response(&tx, observed))
}

/// A success response telling the requester where its packet came from.
pub fn binding_response(tx: &StunTxId, observed: SocketAddr) -> Vec<u8> {
    let mut attr = Vec::with_capacity(24);
    let port = observed.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match observed.ip() {
        IpAddr::V4(v4) => {
            attr.extend_from_slice(&[0, 1]);
            attr.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(v4) ^ MAGIC_COOKIE;
            attr.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(v6) => {
            attr.extend_from_slice(&[0, 2]);
            attr.extend_from_slice(&port.to_be_bytes());
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(tx);
            let octets = v6.octets();
            attr.extend(octets.iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
    let mut out = Vec::with_capacity(HEADER + 4 + attr.len());
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&((4 + attr.len()) as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(tx);
    out.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    out.extend_from_slice(&attr);
    out
}

/// The transaction ID and mapped address of a binding success response.
pub fn parse_response(datagram: &[u8]) -> Result<(StunTxId, SocketAddr), StunError> {
    if !is_stun(datagram) {
        return Err(StunError::NotStun);
    }
    if u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_SUCCESS {
        return Err(StunError::Malformed);
    }
    let tx: StunTxId = datagram[8..20]
        .try_into()
        .map_err(|_| StunError::Malformed)?;
    let mut rest = &datagram[HEADER..];
    let mut plain = None;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len).ok_or(StunError::Malformed)?;
        match kind {
            ATTR_XOR_MAPPED_ADDRESS => return Ok((tx, address(value, Some(&tx))?)),
            ATTR_MAPPED_ADDRESS => plain = Some(address(value, None)?),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        let padded = (4 + len + 3) & !3;
        rest = rest.get(padded..).unwrap_or_default();
    }
    plain.map(|a| (tx, a)).ok_or(StunError::NoAddress)
}

fn address(value: &[u8], xor_tx: Option<&StunTxId>) -> Result<SocketAddr, StunError> {
    if value.len() < 4 {
        return Err(StunError::Malformed);
    }
    let mut port = u16::from_be_bytes([value[2], value[3]]);
    if xor_tx.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match (value[1], value.len()) {
        (1, 8) => {
            let mut x = u32::from_be_bytes([value[4], value[5], value[6], value[7]]);
            if xor_tx.is_some() {
                x ^= MAGIC_COOKIE;
            }
            IpAddr::V4(Ipv4Addr::from(x))
        }
        (2, 20) => {
            let mut octets: [u8; 16] = value[4..20].try_into().map_err(|_| StunError::Malformed)?;
            if let Some(tx) = xor_tx {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                key[4..].copy_from_slice(tx);
                for (o, k) in octets.iter_mut().zip(key) {
                    *o ^= k;
                }
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return Err(StunError::Malformed),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_round_trip() {
        let tx = [5u8; 12];
        let req = binding_request(&tx);
        assert!(is_stun(&req));
        assert_eq!(parse_request(&req).unwrap(), tx);
        for observed in ["203.0.113.7:40123", "[2001:db8::9]:51820"] {
            let observed: SocketAddr = observed.parse().unwrap();
            let resp = binding_response(&tx, observed);
            assert!(is_stun(&resp));
            assert_eq!(parse_response(&resp).unwrap(), (tx, observed));
        }
    }

    #[test]
    fn rfc5769_ipv4_response_vector() {
        // RFC 5769 section 2.2, trimmed to the header and XOR-MAPPED-ADDRESS.
        let tx = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let mut msg = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&tx);
        msg.extend_from_slice(&[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ]);
        assert_eq!(
            parse_response(&msg).unwrap().1,
            "192.0.2.1:32853".parse().unwrap()
        );
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        assert!(!is_stun(&[1, 0, 0, 0]));
        assert!(parse_response(&[0u8; 19]).is_err());
        let mut bad = binding_response(&[1; 12], "192.0.2.1:1".parse().unwrap());
        bad[22] = 0xff; // attribute length beyond the end
        assert!(parse_response(&bad).is_err());
        for len in 0..64 {
            let mut junk = vec![0u8; len];
            if len >= 8 {
                junk[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            }
            let _ = parse_response(&junk);
            let _ = parse_request(&junk);
        }
    }
}
