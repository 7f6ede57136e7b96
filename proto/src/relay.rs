//! Relay frames: WireGuard (or disco) datagrams that travel between two
//! nodes through a controller's QUIC connections when no direct path works.
//!
//! ```text
//! version (1) = 1 | network ID (8) | peer key (32) | sequence (8, BE) | payload
//! ```
//! From a node, `peer` is the destination; from the relay, it is the
//! source, which the relay fills in from the authenticated connection, so a
//! node cannot pose as another. The payload stays end-to-end encrypted: the
//! relay sees only ciphertext. A frame goes as one QUIC datagram when it
//! fits. Frames that do not fit share one long-lived unidirectional stream
//! per connection and direction, each as a record behind its length:
//!
//! ```text
//! length (4, BE) = n | frame (n bytes)
//! ```
//!
//! A frame from a relay with no payload is an absence notice: `peer` has no
//! connection to that relay, so frames for it sent there are lost. Only
//! relay-only instances send them (every online node is connected to its
//! controller, which therefore reaches every peer); a node that gets one
//! sends its frames for that peer through the controller for a while.
//! WireGuard and disco packets are never empty, so relays refuse empty
//! frames from nodes.

use std::time::{Duration, Instant};

use crate::{NetworkId, NodePublicKey};

pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 1 + 8 + 32 + 8;
/// The largest frame accepted on a stream: a whole IP packet plus headers.
pub const MAX_FRAME: usize = HEADER_LEN + 65_536 + 64;

/// Bytes in front of each frame on a relay stream: its length.
pub const RECORD_PREFIX_LEN: usize = 4;

/// The length of the frame that follows a record prefix read off a relay
/// stream, checked: a frame is at least a header and at most [`MAX_FRAME`].
pub fn record_len(prefix: [u8; RECORD_PREFIX_LEN]) -> Result<usize, RelayError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(RelayError::TooLarge);
    }
    if len < HEADER_LEN {
        return Err(RelayError::Truncated);
    }
    Ok(len)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFrame {
    pub network_id: NetworkId,
    pub peer: NodePublicKey,
    pub seq: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    #[error("relay frame is truncated")]
    Truncated,
    #[error("relay frame version {0} is not supported")]
    Version(u8),
    #[error("relay frame names an unusable key")]
    BadKey,
    #[error("relay frame is larger than {MAX_FRAME} bytes")]
    TooLarge,
}

impl RelayFrame {
    /// A relay's notice that `peer` has no connection to it (see the
    /// module docs).
    pub fn absence_notice(network_id: NetworkId, peer: NodePublicKey, seq: u64) -> Self {
        Self {
            network_id,
            peer,
            seq,
            payload: Vec::new(),
        }
    }

    /// Whether this frame, from a relay, is an absence notice.
    pub fn is_absence_notice(&self) -> bool {
        self.payload.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut out);
        out
    }

    /// The frame as a stream record: its length, then the frame.
    pub fn encode_record(&self) -> Vec<u8> {
        let len = HEADER_LEN + self.payload.len();
        let mut out = Vec::with_capacity(RECORD_PREFIX_LEN + len);
        // A frame longer than u32 cannot be built from an IP packet.
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(self.network_id.as_bytes());
        out.extend_from_slice(self.peer.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RelayError> {
        if bytes.len() > MAX_FRAME {
            return Err(RelayError::TooLarge);
        }
        if bytes.len() < HEADER_LEN {
            return Err(RelayError::Truncated);
        }
        if bytes[0] != VERSION {
            return Err(RelayError::Version(bytes[0]));
        }
        let id: [u8; 8] = bytes[1..9].try_into().map_err(|_| RelayError::Truncated)?;
        let key: [u8; 32] = bytes[9..41].try_into().map_err(|_| RelayError::Truncated)?;
        let seq: [u8; 8] = bytes[41..49]
            .try_into()
            .map_err(|_| RelayError::Truncated)?;
        Ok(Self {
            network_id: NetworkId::from_bytes(id),
            peer: NodePublicKey::from_bytes(key).map_err(|_| RelayError::BadKey)?,
            seq: u64::from_be_bytes(seq),
            payload: bytes[HEADER_LEN..].to_vec(),
        })
    }
}

/// Refuses sequence numbers seen before, or older than the window, as
/// WireGuard's own counter check does, so a captured frame cannot be replayed
/// through the relay. The window is wide (about 2,000 frames) because frames
/// on the relay stream and datagrams (which a lost packet does not hold up)
/// may overtake one another.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// A ring of bitmaps: bit `seq % 64` of block `(seq / 64) % BLOCKS`.
    blocks: [u64; Self::BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            highest: None,
            blocks: [0; Self::BLOCKS],
        }
    }
}

impl ReplayWindow {
    const BLOCKS: usize = 32;
    /// Sequence numbers this far behind the highest are refused outright.
    pub const WIDTH: u64 = (Self::BLOCKS as u64 - 1) * 64;

    fn slot(seq: u64) -> (usize, u64) {
        ((seq / 64) as usize % Self::BLOCKS, 1u64 << (seq % 64))
    }

    /// True if `seq` is new (and records it); false for a replay or a frame too old.
    pub fn accept(&mut self, seq: u64) -> bool {
        match self.highest {
            None => {}
            Some(highest) if seq > highest => {
                let (from, to) = (highest / 64, seq / 64);
                let clear = (to - from).min(Self::BLOCKS as u64);
                for i in 1..=clear {
                    self.blocks[((from + i) % Self::BLOCKS as u64) as usize] = 0;
                }
            }
            Some(highest) => {
                if highest - seq >= Self::WIDTH {
                    return false;
                }
                let (block, bit) = Self::slot(seq);
                if self.blocks[block] & bit != 0 {
                    return false;
                }
                self.blocks[block] |= bit;
                return true;
            }
        }
        self.highest = Some(seq);
        let (block, bit) = Self::slot(seq);
        self.blocks[block] |= bit;
        true
    }
}

/// A token bucket of bytes: each node's fair share of the relay.
#[derive(Debug, Clone)]
pub struct Quota {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Option<Instant>,
}

impl Quota {
    /// `rate` bytes per second, with bursts of up to `burst` bytes.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes `bytes` from the bucket if it holds them.
    pub fn take(&mut self, bytes: u64, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last);
            let refill = (elapsed.as_nanos().saturating_mul(u128::from(self.rate))
                / Duration::from_secs(1).as_nanos()) as u64;
            if refill > 0 {
                self.tokens = self.tokens.saturating_add(refill).min(self.burst);
                self.last = Some(now);
            }
        } else {
            self.last = Some(now);
        }
        if self.tokens >= bytes {
            self.tokens -= bytes;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        let frame = RelayFrame {
            network_id: "8056c2e21c000001".parse().unwrap(),
            peer: crate::NodePrivateKey::generate().public_key(),
            seq: 7,
            payload: vec![4, 0, 0, 0, 1, 2, 3],
        };
        let bytes = frame.encode();
        assert_eq!(RelayFrame::decode(&bytes).unwrap(), frame);
        for cut in 0..HEADER_LEN {
            assert_eq!(
                RelayFrame::decode(&bytes[..cut]),
                Err(RelayError::Truncated)
            );
        }
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(RelayFrame::decode(&v2), Err(RelayError::Version(2)));
        let mut zero_key = bytes;
        zero_key[9..41].fill(0);
        assert_eq!(RelayFrame::decode(&zero_key), Err(RelayError::BadKey));
    }

    #[test]
    fn absence_notices_are_the_empty_frames() {
        let peer = crate::NodePrivateKey::generate().public_key();
        let notice = RelayFrame::absence_notice("8056c2e21c000001".parse().unwrap(), peer, 3);
        let decoded = RelayFrame::decode(&notice.encode()).unwrap();
        assert!(decoded.is_absence_notice());
        assert_eq!(decoded.peer, peer);
        let packet = RelayFrame {
            payload: vec![1],
            ..decoded
        };
        assert!(!packet.is_absence_notice());
    }

    #[test]
    fn records_carry_their_length_and_refuse_impossible_ones() {
        let frame = RelayFrame {
            network_id: "8056c2e21c000001".parse().unwrap(),
            peer: crate::NodePrivateKey::generate().public_key(),
            seq: 9,
            payload: vec![7; 1500],
        };
        let record = frame.encode_record();
        let prefix: [u8; RECORD_PREFIX_LEN] = record[..RECORD_PREFIX_LEN].try_into().unwrap();
        let len = record_len(prefix).unwrap();
        assert_eq!(len, record.len() - RECORD_PREFIX_LEN);
        assert_eq!(&record[RECORD_PREFIX_LEN..], frame.encode().as_slice());
        assert_eq!(record_len([0; 4]), Err(RelayError::Truncated));
        let short = u32::try_from(HEADER_LEN - 1).unwrap().to_be_bytes();
        assert_eq!(record_len(short), Err(RelayError::Truncated));
        let huge = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
        assert_eq!(record_len(huge), Err(RelayError::TooLarge));
        assert_eq!(
            record_len(u32::MAX.to_be_bytes()),
            Err(RelayError::TooLarge)
        );
    }

    #[test]
    fn replay_window_refuses_repeats_and_old_frames() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(10));
        assert!(!w.accept(10));
        assert!(w.accept(12));
        assert!(w.accept(11));
        assert!(!w.accept(11));
        assert!(w.accept(5000));
        assert!(!w.accept(5000 - ReplayWindow::WIDTH));
        assert!(w.accept(5000 - ReplayWindow::WIDTH + 1));
        assert!(!w.accept(12));
        // Every number in a long out-of-order run is taken once.
        let mut w = ReplayWindow::default();
        let mut order: Vec<u64> = (0..1500).collect();
        order.reverse();
        order.swap(3, 900);
        assert!(order.iter().all(|s| w.accept(*s)));
        assert!(order.iter().all(|s| !w.accept(*s)));
    }

    #[test]
    fn quota_refills_at_its_rate() {
        let start = Instant::now();
        let mut q = Quota::new(1000, 1500);
        assert!(q.take(1500, start));
        assert!(!q.take(1, start));
        assert!(!q.take(600, start + Duration::from_millis(500)));
        assert!(q.take(500, start + Duration::from_millis(500)));
        assert!(q.take(1500, start + Duration::from_secs(10)));
    }
}
