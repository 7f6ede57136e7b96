//! Disco: small authenticated messages that probe paths between peers on
//! the same UDP socket as WireGuard.
//!
//! ```text
//! magic (6) | sender key (32) | nonce (12) | ChaCha20-Poly1305(type (1) | body)
//! ```
//! The first byte of the magic is `W` (0x57); WireGuard messages start with
//! 1 to 4, so one byte tells them apart. The AEAD key comes from an x25519
//! DH between the two node keys, so only the peer the netmap names can make
//! a message that opens, and the header is authenticated as associated data.
//!
//! A ping carries its sender's clock in milliseconds (wall-clock based and
//! never going back within a run), so a receiver can refuse a replayed one:
//! a ping copied off the wire and sent again, from anywhere, would make the
//! receiver answer and probe an address of the copier's choosing.

use std::net::{IpAddr, SocketAddr};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::PublicKey;

use crate::{NodePrivateKey, NodePublicKey};

pub const MAGIC: [u8; 6] = *b"W\xd1SC0\x01";
const HEADER: usize = 6 + 32 + 12;
const TAG: usize = 16;

/// Whether a datagram is a disco message (as opposed to WireGuard).
pub fn is_disco(datagram: &[u8]) -> bool {
    datagram.starts_with(&MAGIC)
}

/// A transaction ID: links a pong to its ping.
pub type TxId = [u8; 12];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoMessage {
    /// "Can you hear me on this path?" `sent_at`: the sender's clock (ms).
    Ping { tx: TxId, sent_at: u64 },
    /// "Yes; and your packet came from `observed`" (a free reflexive address).
    Pong { tx: TxId, observed: SocketAddr },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscoError {
    #[error("not a disco message")]
    NotDisco,
    #[error("disco message is truncated or malformed")]
    Malformed,
    #[error("disco message does not authenticate")]
    Auth,
    #[error("low-order key")]
    LowOrder,
}

/// The AEAD key shared by two nodes; computed once per peer (a DH each time would be wasteful).
#[derive(Clone)]
pub struct DiscoKey(Key);

impl DiscoKey {
    pub fn derive(own: &NodePrivateKey, peer: &NodePublicKey) -> Result<Self, DiscoError> {
        let shared = own
            .as_secret()
            .diffie_hellman(&PublicKey::from(*peer.as_bytes()));
        if !shared.was_contributory() {
            return Err(DiscoError::LowOrder);
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(shared.as_bytes())
            .map_err(|_| DiscoError::LowOrder)?;
        mac.update(b"warren disco v1");
        Ok(Self(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for DiscoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoKey(<redacted>)")
    }
}

/// The sender's key, read before decryption to find the right [`DiscoKey`].
pub fn sender(datagram: &[u8]) -> Result<NodePublicKey, DiscoError> {
    if !is_disco(datagram) {
        return Err(DiscoError::NotDisco);
    }
    let key: [u8; 32] = datagram
        .get(6..38)
        .and_then(|k| k.try_into().ok())
        .ok_or(DiscoError::Malformed)?;
    NodePublicKey::from_bytes(key).map_err(|_| DiscoError::Malformed)
}

pub fn encode(
    key: &DiscoKey,
    sender: &NodePublicKey,
    nonce: [u8; 12],
    message: &DiscoMessage,
) -> Vec<u8> {
    let mut plain = Vec::with_capacity(32);
    match message {
        DiscoMessage::Ping { tx, sent_at } => {
            plain.push(1);
            plain.extend_from_slice(tx);
            plain.extend_from_slice(&sent_at.to_be_bytes());
        }
        DiscoMessage::Pong { tx, observed } => {
            plain.push(2);
            plain.extend_from_slice(tx);
            let ip = match observed.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            plain.extend_from_slice(&ip.octets());
            plain.extend_from_slice(&observed.port().to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(HEADER + plain.len() + TAG);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(&nonce);
    let cipher = ChaCha20Poly1305::new(&key.0);
    // Encryption with a valid key and nonce length cannot fail.
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &out[..HEADER],
            },
        )
        .unwrap_or_default();
    out.extend_from_slice(&sealed);
    out
}

pub fn decode(key: &DiscoKey, datagram: &[u8]) -> Result<DiscoMessage, DiscoError> {
    if !is_disco(datagram) {
        return Err(DiscoError::NotDisco);
    }
    if datagram.len() < HEADER + TAG + 1 {
        return Err(DiscoError::Malformed);
    }
    let (header, sealed) = datagram.split_at(HEADER);
    let cipher = ChaCha20Poly1305::new(&key.0);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(&header[38..50]),
            Payload {
                msg: sealed,
                aad: header,
            },
        )
        .map_err(|_| DiscoError::Auth)?;
    let tx = |p: &[u8]| -> Result<TxId, DiscoError> {
        p.get(1..13)
            .and_then(|t| t.try_into().ok())
            .ok_or(DiscoError::Malformed)
    };
    match plain.first() {
        Some(1) if plain.len() == 21 => {
            let sent_at: [u8; 8] = plain[13..21]
                .try_into()
                .map_err(|_| DiscoError::Malformed)?;
            Ok(DiscoMessage::Ping {
                tx: tx(&plain)?,
                sent_at: u64::from_be_bytes(sent_at),
            })
        }
        Some(2) if plain.len() == 31 => {
            let octets: [u8; 16] = plain[13..29]
                .try_into()
                .map_err(|_| DiscoError::Malformed)?;
            let port = u16::from_be_bytes([plain[29], plain[30]]);
            let ip = std::net::Ipv6Addr::from(octets).to_canonical();
            Ok(DiscoMessage::Pong {
                tx: tx(&plain)?,
                observed: SocketAddr::new(ip, port),
            })
        }
        _ => Err(DiscoError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_between_the_two_peers_only() {
        let a = NodePrivateKey::generate();
        let b = NodePrivateKey::generate();
        let ab = DiscoKey::derive(&a, &b.public_key()).unwrap();
        let ba = DiscoKey::derive(&b, &a.public_key()).unwrap();
        for message in [
            DiscoMessage::Ping {
                tx: [7; 12],
                sent_at: 1_764_000_000_000,
            },
            DiscoMessage::Pong {
                tx: [8; 12],
                observed: "203.0.113.1:40000".parse().unwrap(),
            },
            DiscoMessage::Pong {
                tx: [9; 12],
                observed: "[2001:db8::1]:51820".parse().unwrap(),
            },
        ] {
            let wire = encode(&ab, &a.public_key(), [1; 12], &message);
            assert!(is_disco(&wire));
            assert_eq!(sender(&wire).unwrap(), a.public_key());
            assert_eq!(decode(&ba, &wire).unwrap(), message);
        }
        let c = NodePrivateKey::generate();
        let cb = DiscoKey::derive(&c, &b.public_key()).unwrap();
        let wire = encode(
            &ab,
            &a.public_key(),
            [1; 12],
            &DiscoMessage::Ping {
                tx: [0; 12],
                sent_at: 1,
            },
        );
        assert_eq!(decode(&cb, &wire), Err(DiscoError::Auth));
    }

    #[test]
    fn tampering_and_truncation_are_refused() {
        let a = NodePrivateKey::generate();
        let b = NodePrivateKey::generate();
        let ab = DiscoKey::derive(&a, &b.public_key()).unwrap();
        let ba = DiscoKey::derive(&b, &a.public_key()).unwrap();
        let wire = encode(
            &ab,
            &a.public_key(),
            [1; 12],
            &DiscoMessage::Ping {
                tx: [7; 12],
                sent_at: 1_764_000_000_000,
            },
        );
        for cut in 0..wire.len() {
            assert!(decode(&ba, &wire[..cut]).is_err());
        }
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 1;
            assert!(decode(&ba, &bad).is_err(), "flip at {i}");
        }
        assert!(!is_disco(&[1, 0, 0, 0]));
    }
}
