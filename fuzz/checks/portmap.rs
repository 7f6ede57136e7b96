//! Replies to the agent's port-mapping requests, as a gateway (or anyone
//! on the LAN spoofing it) may send them: PCP MAP replies and NAT-PMP
//! external-address and map replies.
//!
//! The first byte picks the parser (even: PCP, odd: NAT-PMP), the rest is
//! the reply. Whatever it holds, parsing never panics, and a reply taken
//! as a grant names a usable mapping of the port asked for.

use crate::portmap::{natpmp, pcp};

/// The data-plane port the checks ask about.
const PORT: u16 = 41641;
const NONCE: [u8; 12] = *b"warren-nonce";

pub fn run(data: &[u8]) {
    let Some((&mode, reply)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(g) = pcp::parse_map_reply(reply, PORT, NONCE) {
            assert_ne!(g.external.port(), 0);
            assert!(!g.external.ip().is_unspecified());
            assert!(g.lifetime > 0);
            assert_eq!(reply.get(24..36), Some(&NONCE[..]));
        }
    } else {
        if let Ok(ip) = natpmp::parse_address_reply(reply) {
            assert!(!ip.is_unspecified());
        }
        if natpmp::parse_map_reply(reply, PORT).is_ok() {
            assert_eq!(reply.get(8..10), Some(&PORT.to_be_bytes()[..]));
        }
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("portmap", 64);

/// Replies as miniupnpd sends them, built from the requests the agent sends.
#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let ip = std::net::Ipv4Addr::new(100, 128, 113, 1);
    let mut map = pcp::map_request(
        std::net::Ipv4Addr::new(10, 0, 1, 2),
        PORT,
        7200,
        NONCE,
        None,
    );
    map[1] = 0x81;
    map[4..8].copy_from_slice(&7200u32.to_be_bytes());
    map[8..24].fill(0);
    map[42..44].copy_from_slice(&PORT.to_be_bytes());
    map[44..60].copy_from_slice(&ip.to_ipv6_mapped().octets());
    let mut refused = map;
    refused[3] = 2;
    let address = [0, 128, 0, 0, 0, 0, 0, 9, 100, 128, 113, 1];
    let mut pmp_map = natpmp::map_request(PORT, PORT, 7200);
    pmp_map[1] = 129;
    let pmp_map = [
        &pmp_map[..4],
        &[0, 0, 0, 9],
        &pmp_map[4..8],
        &7200u32.to_be_bytes(),
    ]
    .concat();
    let with = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
    vec![
        ("pcp-map", with(0, &map)),
        ("pcp-refused", with(0, &refused)),
        (
            "pcp-unsupported-version",
            with(0, &[0, 0x81, 0, 1, 0, 0, 0, 0]),
        ),
        ("natpmp-address", with(1, &address)),
        ("natpmp-map", with(1, &pmp_map)),
    ]
}
