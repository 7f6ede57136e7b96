//! Node and network IDs: short hex names shown in the CLI, the API and the web console.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::NodePublicKey;

/// Why an ID could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{what} must be {digits} hex digits, got {got:?}")]
    Format {
        what: &'static str,
        digits: usize,
        got: String,
    },
}

fn parse_hex<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], IdError> {
    let err = || IdError::Format {
        what,
        digits: N * 2,
        got: text.chars().take(40).collect(),
    };
    let text = text.trim();
    if text.len() != N * 2 {
        return Err(err());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text.to_ascii_lowercase(), &mut out).map_err(|_| err())?;
    Ok(out)
}

/// A node's ID: 10 hex digits, the first 40 bits of SHA-256 of its public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 5]);

impl NodeId {
    pub fn from_key(key: &NodePublicKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 5];
        id.copy_from_slice(&digest[..5]);
        Self(id)
    }

    pub fn as_bytes(&self) -> &[u8; 5] {
        &self.0
    }
}

/// A network's ID: 16 hex digits, chosen at random by the controller.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId([u8; 8]);

impl NetworkId {
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// The network's IPv6 ULA /64: `fd` followed by the first 7 bytes of the ID.
    pub fn ula_prefix(&self) -> ipnet::Ipv6Net {
        let mut octets = [0u8; 16];
        octets[0] = 0xfd;
        octets[1..8].copy_from_slice(&self.0[..7]);
        ipnet::Ipv6Net::new(octets.into(), 64).unwrap_or_default()
    }

    /// A member's IPv6 address: the network's ULA /64 with the node ID as interface ID.
    pub fn ula_address(&self, node: &NodeId) -> std::net::Ipv6Addr {
        let mut octets = self.ula_prefix().addr().octets();
        octets[11..16].copy_from_slice(node.as_bytes());
        octets.into()
    }
}

macro_rules! hex_id {
    ($ty:ident, $what:literal, $len:literal) => {
        impl FromStr for $ty {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_hex::<$len>($what, s).map(Self)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(NodeId, "a node ID", 5);
hex_id!(NetworkId, "a network ID", 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_bad_text() {
        let id: NetworkId = "8056c2e21c000001".parse().unwrap();
        assert_eq!(id.to_string(), "8056c2e21c000001");
        assert_eq!("8056C2E21C000001".parse::<NetworkId>().unwrap(), id);
        assert!("8056c2e21c00000".parse::<NetworkId>().is_err());
        assert!("8056c2e21c00000g".parse::<NetworkId>().is_err());
        let node: NodeId = "0123456789".parse().unwrap();
        assert_eq!(serde_json::to_string(&node).unwrap(), "\"0123456789\"");
    }

    #[test]
    fn node_id_is_derived_from_the_key() {
        let key = crate::NodePrivateKey::from_bytes([7; 32]).public_key();
        assert_eq!(NodeId::from_key(&key), NodeId::from_key(&key));
        assert_eq!(NodeId::from_key(&key).to_string().len(), 10);
    }

    #[test]
    fn ula_addresses_come_from_network_and_node() {
        let net: NetworkId = "8056c2e21c000001".parse().unwrap();
        let node: NodeId = "0123456789".parse().unwrap();
        assert_eq!(net.ula_prefix().to_string(), "fd80:56c2:e21c::/64");
        assert_eq!(
            net.ula_address(&node).to_string(),
            "fd80:56c2:e21c::1:2345:6789"
        );
    }
}
