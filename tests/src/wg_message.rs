//! WireGuard message framing, as far as the lab needs it: telling message
//! types apart in captures and making deliberately wrong ones.

/// Handshake initiation (type 1) is always this long.
pub const INITIATION_LEN: usize = 148;
/// Handshake response (type 2).
pub const RESPONSE_LEN: usize = 92;
/// Cookie reply (type 3).
pub const COOKIE_REPLY_LEN: usize = 64;
/// Transport data (type 4): 16-byte header + at least the 16-byte tag.
pub const DATA_MIN_LEN: usize = 32;

/// The message type of a datagram that is framed like WireGuard (type byte
/// 1..=4 followed by three zero bytes), whatever its length.
pub fn message_type(payload: &[u8]) -> Option<u8> {
    match payload {
        [t @ 1..=4, 0, 0, 0, ..] => Some(*t),
        _ => None,
    }
}

/// Whether the datagram is a transport data message (keepalives included).
pub fn is_data(payload: &[u8]) -> bool {
    message_type(payload) == Some(4) && payload.len() >= DATA_MIN_LEN
}

/// The length a well-formed message of type `t` has (data: minimum).
pub fn expected_len(t: u8) -> Option<usize> {
    match t {
        1 => Some(INITIATION_LEN),
        2 => Some(RESPONSE_LEN),
        3 => Some(COOKIE_REPLY_LEN),
        4 => Some(DATA_MIN_LEN),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(message_type(&[1, 0, 0, 0]), Some(1));
        assert_eq!(message_type(&[4, 0, 0, 1]), None);
        assert_eq!(message_type(&[5, 0, 0, 0]), None);
        assert!(is_data(&[4, 0, 0, 0].repeat(8)));
        assert!(!is_data(&[4, 0, 0, 0]));
    }
}
