//! Which addresses may be a peer's endpoint candidate. A node reports its
//! candidates and asks peers to probe them (call-me-maybe); without a rule,
//! a member could make every peer send probes to an address of its
//! choosing: the peers' own loopback, a multicast group, a host on their
//! LAN by link-local address, or the overlay itself.

use std::net::{IpAddr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Why an address cannot be an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("port 0")]
    PortZero,
    #[error("unspecified address")]
    Unspecified,
    #[error("loopback address")]
    Loopback,
    #[error("link-local address")]
    LinkLocal,
    #[error("multicast or broadcast address")]
    Multicast,
    #[error("an address inside the overlay")]
    Overlay,
}

/// Checks one candidate on its own (see [`check_in`] for the overlay).
pub fn check(endpoint: &SocketAddr) -> Result<(), EndpointError> {
    if endpoint.port() == 0 {
        return Err(EndpointError::PortZero);
    }
    let ip = match endpoint.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() {
                Err(EndpointError::Unspecified)
            } else if v4.is_loopback() {
                Err(EndpointError::Loopback)
            } else if v4.is_link_local() {
                Err(EndpointError::LinkLocal)
            } else if v4.is_multicast() || v4.is_broadcast() {
                Err(EndpointError::Multicast)
            } else {
                Ok(())
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Err(EndpointError::Unspecified)
            } else if v6.is_loopback() {
                Err(EndpointError::Loopback)
            } else if v6.is_unicast_link_local() {
                Err(EndpointError::LinkLocal)
            } else if v6.is_multicast() {
                Err(EndpointError::Multicast)
            } else {
                Ok(())
            }
        }
    }
}

/// Checks a candidate for a network whose overlay is `pool` and `ula`: a
/// tunnel's endpoint inside its own overlay would loop.
pub fn check_in(endpoint: &SocketAddr, pool: &Ipv4Net, ula: &Ipv6Net) -> Result<(), EndpointError> {
    check(endpoint)?;
    let inside = match endpoint.ip() {
        IpAddr::V4(v4) => pool.contains(&v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => pool.contains(&v4),
            None => ula.contains(&v6),
        },
    };
    if inside {
        Err(EndpointError::Overlay)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Result<(), EndpointError> {
        let pool: Ipv4Net = "10.147.0.0/16".parse().unwrap();
        let ula: Ipv6Net = "fd80:56c2:e21c::/64".parse().unwrap();
        check_in(&text.parse().unwrap(), &pool, &ula)
    }

    #[test]
    fn public_and_private_unicast_pass() {
        for ok in [
            "192.0.2.1:51820",
            "10.0.0.7:41641",
            "172.16.3.4:1",
            "[2001:db8::1]:51820",
            "[fd00::1]:51820",
        ] {
            assert_eq!(at(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn probes_no_peer_should_send_are_refused() {
        let cases = [
            ("192.0.2.1:0", EndpointError::PortZero),
            ("0.0.0.0:53", EndpointError::Unspecified),
            ("[::]:53", EndpointError::Unspecified),
            ("127.0.0.1:22", EndpointError::Loopback),
            ("[::1]:22", EndpointError::Loopback),
            ("[::ffff:127.0.0.1]:22", EndpointError::Loopback),
            ("169.254.169.254:80", EndpointError::LinkLocal),
            ("[fe80::1]:51820", EndpointError::LinkLocal),
            ("224.0.0.251:5353", EndpointError::Multicast),
            ("255.255.255.255:67", EndpointError::Multicast),
            ("[ff02::1]:51820", EndpointError::Multicast),
            ("10.147.0.9:51820", EndpointError::Overlay),
            ("[fd80:56c2:e21c::9]:51820", EndpointError::Overlay),
        ];
        for (text, want) in cases {
            assert_eq!(at(text), Err(want), "{text}");
        }
    }
}
