//! NAT-PMP (RFC 6886): the external-address and UDP map requests and
//! their replies, parsed defensively.

use std::net::Ipv4Addr;

use super::ReplyError;

const VERSION: u8 = 0;
const OP_ADDRESS: u8 = 0;
const OP_MAP_UDP: u8 = 1;
const RESPONSE_BIT: u8 = 0x80;

/// "What is your external address?"
pub fn address_request() -> [u8; 2] {
    [VERSION, OP_ADDRESS]
}

/// Map UDP `internal_port` for `lifetime` seconds (0 deletes it).
pub fn map_request(internal_port: u16, suggested_port: u16, lifetime: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = OP_MAP_UDP;
    b[4..6].copy_from_slice(&internal_port.to_be_bytes());
    b[6..8].copy_from_slice(&suggested_port.to_be_bytes());
    b[8..12].copy_from_slice(&lifetime.to_be_bytes());
    b
}

/// Checks the common reply header (version, opcode, result code, length).
fn header(reply: &[u8], op: u8, len: usize) -> Result<(), ReplyError> {
    let version = *reply.first().ok_or(ReplyError::Short)?;
    if version != VERSION {
        return Err(ReplyError::Version(version));
    }
    if reply.len() < 4 {
        return Err(ReplyError::Short);
    }
    if reply[1] != RESPONSE_BIT | op {
        return Err(ReplyError::Opcode(reply[1]));
    }
    let result = u16::from_be_bytes([reply[2], reply[3]]);
    if result != 0 {
        return Err(ReplyError::Refused(result));
    }
    if reply.len() < len {
        return Err(ReplyError::Short);
    }
    Ok(())
}

/// The gateway's external IPv4 address.
pub fn parse_address_reply(reply: &[u8]) -> Result<Ipv4Addr, ReplyError> {
    header(reply, OP_ADDRESS, 12)?;
    let ip = Ipv4Addr::new(reply[8], reply[9], reply[10], reply[11]);
    if ip.is_unspecified() {
        return Err(ReplyError::Mismatch("external address 0.0.0.0"));
    }
    Ok(ip)
}

/// The mapped external port and its lifetime in seconds.
pub fn parse_map_reply(reply: &[u8], internal_port: u16) -> Result<(u16, u32), ReplyError> {
    header(reply, OP_MAP_UDP, 16)?;
    if u16::from_be_bytes([reply[8], reply[9]]) != internal_port {
        return Err(ReplyError::Mismatch("internal port"));
    }
    let port = u16::from_be_bytes([reply[10], reply[11]]);
    let lifetime = u32::from_be_bytes([reply[12], reply[13], reply[14], reply[15]]);
    Ok((port, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(address_request(), [0, 0]);
        assert_eq!(
            map_request(41641, 41641, 7200),
            [0, 1, 0, 0, 0xa2, 0xa9, 0xa2, 0xa9, 0, 0, 0x1c, 0x20]
        );
    }

    #[test]
    fn replies() {
        let addr = [0, 128, 0, 0, 0, 0, 0, 5, 100, 128, 0, 1];
        assert_eq!(
            parse_address_reply(&addr),
            Ok(Ipv4Addr::new(100, 128, 0, 1))
        );
        let map = [
            0, 129, 0, 0, 0, 0, 0, 5, 0xa2, 0xa9, 0x13, 0x88, 0, 0, 0x0e, 0x10,
        ];
        assert_eq!(parse_map_reply(&map, 41641), Ok((5000, 3600)));
    }

    #[test]
    fn malformed_replies_are_errors() {
        let map = [
            0, 129, 0, 0, 0, 0, 0, 5, 0xa2, 0xa9, 0x13, 0x88, 0, 0, 0x0e, 0x10,
        ];
        for len in 0..map.len() {
            assert!(parse_map_reply(&map[..len], 41641).is_err(), "{len}");
        }
        assert_eq!(
            parse_map_reply(&map, 1),
            Err(ReplyError::Mismatch("internal port"))
        );
        let mut refused = map;
        refused[3] = 2;
        assert_eq!(
            parse_map_reply(&refused, 41641),
            Err(ReplyError::Refused(2))
        );
        let mut pcp = map;
        pcp[0] = 2;
        assert_eq!(parse_map_reply(&pcp, 41641), Err(ReplyError::Version(2)));
        // An address reply is not a map reply, and the other way round.
        assert!(
            parse_map_reply(&[0, 128, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 0, 0, 0, 0], 41641).is_err()
        );
        assert!(parse_address_reply(&map).is_err());
        assert!(parse_address_reply(&[0, 128, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0]).is_err());
    }
}
