//! Reading the few IP header fields the engine routes by.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The destination address of an IPv4 or IPv6 packet, if it has a whole header.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let bytes: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(bytes)))
        }
        6 => {
            let bytes: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_destinations_and_refuses_short_headers() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 99, 0, 2]);
        assert_eq!(destination(&v4), Some("10.99.0.2".parse().unwrap()));
        assert_eq!(destination(&v4[..19]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 2;
        assert_eq!(destination(&v6), Some("::2".parse().unwrap()));
        assert_eq!(destination(&v6[..39]), None);
        assert_eq!(destination(&[]), None);
        assert_eq!(destination(&[0x50; 40]), None);
    }
}
