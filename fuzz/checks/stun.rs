//! STUN on both ends: the controller's server answering whatever reaches
//! its port, and the node's parse of what comes back.
//!
//! The first byte picks the kind of address the datagram came from (IPv4,
//! IPv6 or an IPv4-mapped IPv6 address), the next 18 bytes are that
//! address and port, and the rest is the datagram. The server answers binding requests only, with a response the
//! node reads back as the source it came from; the address in a response
//! the node accepts survives the server's encoder unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use warren_proto::stun::{self, answer};

/// The server's receive buffer: longer datagrams arrive truncated.
const RECV_BUFFER: usize = 1500;

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (address, datagram) = rest.split_at(rest.len().min(18));
    let source = source(mode, address);
    let datagram = &datagram[..datagram.len().min(RECV_BUFFER)];
    match answer(datagram, source) {
        Some(response) => {
            let tx = stun::parse_request(datagram).expect("only requests are answered");
            assert!(
                response.len() <= 44,
                "an answer no larger than the largest response"
            );
            let canonical = SocketAddr::new(source.ip().to_canonical(), source.port());
            assert_eq!(stun::parse_response(&response), Ok((tx, canonical)));
            assert!(
                answer(&response, source).is_none(),
                "never answer an answer"
            );
        }
        None => assert!(stun::parse_request(datagram).is_err()),
    }
    if let Ok((tx, mapped)) = stun::parse_response(datagram) {
        assert!(stun::is_stun(datagram));
        let again = stun::binding_response(&tx, mapped);
        assert_eq!(stun::parse_response(&again), Ok((tx, mapped)));
    }
}

/// The address a datagram came from: a port, then 16 bytes of address.
fn source(mode: u8, bytes: &[u8]) -> SocketAddr {
    let mut b = [0u8; 18];
    b[..bytes.len()].copy_from_slice(bytes);
    let port = u16::from_be_bytes([b[0], b[1]]);
    let octets: [u8; 16] = b[2..].try_into().expect("16 bytes");
    let v4 = Ipv4Addr::new(b[2], b[3], b[4], b[5]);
    let ip = match mode % 3 {
        0 => IpAddr::V4(v4),
        1 => IpAddr::V6(Ipv6Addr::from(octets)),
        _ => IpAddr::V6(v4.to_ipv6_mapped()),
    };
    SocketAddr::new(ip, port)
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("stun", 64);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let v4 = [&[0xa0, 0x00][..], &[198, 51, 100, 7], &[0; 12]].concat();
    let v6 = [
        &[0xca, 0x6c][..],
        &"2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets(),
    ]
    .concat();
    let tx = [5u8; 12];
    let at =
        |mode: u8, address: &[u8], datagram: Vec<u8>| [&[mode][..], address, &datagram].concat();
    let response = |a: &str| stun::binding_response(&tx, a.parse().expect("addr"));
    // RFC 5769 2.2, trimmed to the header and XOR-MAPPED-ADDRESS.
    let rfc = [
        &[0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42][..],
        &[
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ],
        &[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ],
    ]
    .concat();
    vec![
        ("request-v4", at(0, &v4, stun::binding_request(&tx))),
        ("request-v6", at(1, &v6, stun::binding_request(&tx))),
        ("request-mapped", at(2, &v4, stun::binding_request(&tx))),
        ("response-v4", at(0, &v4, response("203.0.113.7:40123"))),
        ("response-v6", at(1, &v6, response("[2001:db8::9]:51820"))),
        ("response-rfc5769", at(0, &v4, rfc)),
        ("wireguard", at(0, &v4, vec![1, 0, 0, 0, 9, 9, 9, 9])),
    ]
}
