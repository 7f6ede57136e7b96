//! Stateless translation of a site's mapped prefixes on its router.
//!
//! Where two sites' prefixes overlap, members reach this router's site at
//! a mapped prefix of the same length. A packet from the tunnel whose
//! destination is mapped gets the real destination at the same offset; a
//! packet from the TUN whose source is real leaves with the mapped source.
//! The filter sees only mapped addresses both ways (inbound it runs before
//! the translation, outbound after), so its flows and the policy, which
//! covers mapped prefixes, agree.
//!
//! Checksums are updated incrementally (RFC 1624): the IPv4 header's, and
//! the TCP or UDP checksum, whose pseudo-header holds the address, unless
//! the packet is a fragment after the first (no transport header) or a UDP
//! checksum is 0 (none). ICMP's checksum covers no pseudo-header, but an
//! ICMP error quotes the packet it is about: the quoted address on the
//! site's side (its destination going out, its source coming in) is
//! translated too, with the quoted header's checksum and the ICMP
//! checksum, so that the sender matches the error to its socket and the
//! filter to its flow. IPv6 is never mapped.

use std::net::Ipv4Addr;

use warren_proto::site::MappedPrefix;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The mapped pairs of the site this node routes for (none: every
/// packet passes untouched, at the cost of one length check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteNat {
    pairs: Vec<MappedPrefix>,
}

impl SiteNat {
    pub fn new(pairs: Vec<MappedPrefix>) -> Self {
        SiteNat { pairs }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// How many pairs are mapped.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// A packet from the tunnel: a mapped destination becomes the real one.
    /// Returns whether the packet changed.
    pub fn translate_inbound(&self, packet: &mut [u8]) -> bool {
        if self.pairs.is_empty() {
            return false;
        }
        let to_real = |a| self.pairs.iter().find_map(|p| p.to_real(a));
        let Some(dst) = ipv4_addr(packet, 16) else {
            return false;
        };
        let outer = to_real(dst).is_some_and(|real| rewrite(packet, 16, dst, real));
        let quoted = rewrite_quoted(packet, 12, to_real);
        outer || quoted
    }

    /// A packet from the TUN: a real source becomes the mapped one.
    /// Returns whether the packet changed.
    pub fn translate_outbound(&self, packet: &mut [u8]) -> bool {
        if self.pairs.is_empty() {
            return false;
        }
        let to_mapped = |a| self.pairs.iter().find_map(|p| p.to_mapped(a));
        let Some(src) = ipv4_addr(packet, 12) else {
            return false;
        };
        let outer = to_mapped(src).is_some_and(|mapped| rewrite(packet, 12, src, mapped));
        let quoted = rewrite_quoted(packet, 16, to_mapped);
        outer || quoted
    }
}

/// In an ICMP error, the quoted packet's address at `at` (12: source, 16:
/// destination) through `translate`, with the quoted header's checksum
/// and the ICMP checksum. The quoted transport checksum is left: nobody
/// checks a quote's, and it may be cut short.
fn rewrite_quoted(
    packet: &mut [u8],
    at: usize,
    translate: impl Fn(Ipv4Addr) -> Option<Ipv4Addr>,
) -> bool {
    let header = usize::from(packet[0] & 0x0f) * 4;
    let first_fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff == 0;
    let is_error = packet.get(header).is_some_and(|t| matches!(t, 3 | 11 | 12));
    if packet[9] != PROTO_ICMP || !first_fragment || !is_error {
        return false;
    }
    let inner = header + 8;
    let Some(old) = packet.get(inner..).and_then(|q| ipv4_addr(q, at)) else {
        return false;
    };
    let Some(new) = translate(old) else {
        return false;
    };
    let (old, new) = (old.octets(), new.octets());
    packet[inner + at..inner + at + 4].copy_from_slice(&new);
    let before = [packet[inner + 10], packet[inner + 11]];
    adjust(packet, inner + 10, &old, &new);
    let after = [packet[inner + 10], packet[inner + 11]];
    // The ICMP checksum covers the quote: both changes, word-aligned
    // (the quote starts 8 bytes into the ICMP message).
    adjust(packet, header + 2, &old, &new);
    adjust(packet, header + 2, &before, &after);
    true
}

/// The IPv4 address at `at` (12: source, 16: destination) of a packet
/// with a whole IPv4 header.
fn ipv4_addr(packet: &[u8], at: usize) -> Option<Ipv4Addr> {
    let first = *packet.first()?;
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header < 20 || packet.len() < header {
        return None;
    }
    let bytes: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(bytes))
}

/// Writes `new` over `old` at `at` and fixes the checksums that cover it.
fn rewrite(packet: &mut [u8], at: usize, old: Ipv4Addr, new: Ipv4Addr) -> bool {
    let (old, new) = (old.octets(), new.octets());
    let Some(addr) = packet.get_mut(at..at + 4) else {
        return false;
    };
    addr.copy_from_slice(&new);
    adjust(packet, 10, &old, &new);
    let header = usize::from(packet[0] & 0x0f) * 4;
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    if fragment_offset != 0 {
        return true;
    }
    match packet[9] {
        PROTO_TCP => adjust(packet, header + 16, &old, &new),
        PROTO_UDP => {
            let at = header + 6;
            // 0: the sender computed no checksum, and none is owed.
            if packet.get(at..at + 2).is_some_and(|c| c != [0, 0]) {
                adjust(packet, at, &old, &new);
                if packet[at..at + 2] == [0, 0] {
                    // A computed 0 is sent as all ones (RFC 768).
                    packet[at..at + 2].copy_from_slice(&[0xff, 0xff]);
                }
            }
        }
        _ => {}
    }
    true
}

/// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, for the checksum at `at`
/// (if the packet holds it) when the 16-bit words of `old` became `new`
/// (of equal, even length).
fn adjust(packet: &mut [u8], at: usize, old: &[u8], new: &[u8]) {
    let Some(field) = packet.get_mut(at..at + 2) else {
        return;
    };
    let mut sum = u32::from(!u16::from_be_bytes([field[0], field[1]]));
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // `sum` was folded to 16 bits just above.
    let folded = u16::try_from(sum).unwrap_or(u16::MAX);
    field.copy_from_slice(&(!folded).to_be_bytes());
}

#[cfg(test)]
mod tests;
