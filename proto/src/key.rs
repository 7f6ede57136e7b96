//! Node keys: x25519 key pairs encoded as WireGuard encodes them (base64 of 32 bytes).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x25519_dalek::{PublicKey, StaticSecret};

/// Why a key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is not valid base64: {0}")]
    Base64(String),
    #[error("key must be 32 bytes, got {0}")]
    Length(usize),
    #[error("public key is a low-order point and cannot be used")]
    LowOrder,
}

fn decode_32(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| KeyError::Base64(e.to_string()))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

/// A node's x25519 private key: its WireGuard static key.
#[derive(Clone)]
pub struct NodePrivateKey(StaticSecret);

impl NodePrivateKey {
    /// Makes a new key from the operating system's random source.
    pub fn generate() -> Self {
        Self(StaticSecret::random_from_rng(rand_core::OsRng))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    pub fn public_key(&self) -> NodePublicKey {
        NodePublicKey(PublicKey::from(&self.0).to_bytes())
    }

    /// The key in WireGuard's base64 form. Handle with care: this is the secret.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    pub fn as_secret(&self) -> &StaticSecret {
        &self.0
    }
}

impl FromStr for NodePrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        decode_32(s).map(Self::from_bytes)
    }
}

impl fmt::Debug for NodePrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodePrivateKey(<redacted>)")
    }
}

/// A node's x25519 public key, which names it to its peers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodePublicKey([u8; 32]);

/// Low-order points of Curve25519 in their canonical encodings (and the
/// non-canonical ones with the top bit set that decode to the same points).
/// A DH with any of them yields an all-zero or attacker-known secret.
const LOW_ORDER_POINTS: [[u8; 32]; 7] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

impl NodePublicKey {
    /// Accepts 32 bytes as a peer's key, refusing low-order points.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let mut canonical = bytes;
        canonical[31] &= 0x7f;
        let low_order = LOW_ORDER_POINTS
            .iter()
            .any(|p| *p == bytes || *p == canonical);
        if low_order {
            return Err(KeyError::LowOrder);
        }
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn to_x25519(&self) -> PublicKey {
        PublicKey::from(self.0)
    }

    /// A short form for logs: the first 8 base64 characters.
    pub fn short(&self) -> String {
        self.to_base64().chars().take(8).collect()
    }
}

impl FromStr for NodePublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(decode_32(s)?)
    }
}

impl fmt::Display for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodePublicKey({})", self.short())
    }
}

impl Serialize for NodePublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for NodePublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_round_trips_through_base64() {
        let key = NodePrivateKey::generate();
        let again: NodePrivateKey = key.to_base64().parse().unwrap();
        assert_eq!(key.public_key(), again.public_key());
    }

    #[test]
    fn matches_wireguard_test_vector() {
        // RFC 7748 section 6.1: Alice's private key and public key.
        let private = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let key = NodePrivateKey::from_bytes(private);
        assert_eq!(
            hex(key.public_key().as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rejects_bad_lengths_and_base64() {
        assert_eq!("AAAA".parse::<NodePublicKey>(), Err(KeyError::Length(3)));
        assert!(matches!(
            "not base64!".parse::<NodePublicKey>(),
            Err(KeyError::Base64(_))
        ));
    }

    #[test]
    fn rejects_low_order_points() {
        for point in LOW_ORDER_POINTS {
            assert_eq!(NodePublicKey::from_bytes(point), Err(KeyError::LowOrder));
        }
        let mut high_bit = LOW_ORDER_POINTS[2];
        high_bit[31] |= 0x80;
        assert_eq!(NodePublicKey::from_bytes(high_bit), Err(KeyError::LowOrder));
    }

    #[test]
    fn debug_output_redacts_private_key() {
        let key = NodePrivateKey::generate();
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
