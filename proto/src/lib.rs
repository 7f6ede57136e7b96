//! warren-proto: the types that cross Warren's boundaries, with no I/O.
//!
//! # Layout
//! - [`key`]: x25519 node keys in WireGuard's base64 form.
//! - [`id`]: node IDs (from keys) and network IDs, with the ULA addresses they derive.
//! - [`netmap`]: the network map a controller pushes, and deltas between versions.
//! - [`filter`]: the access policy compiled per member, as its engine enforces it.
//! - [`endpoint`]: which addresses may be a peer's endpoint candidate.
//! - [`disco`]: path-probe messages on the data socket, sealed with the node keys.
//! - [`control`]: the node-controller protocol: messages, frames, key-possession proof.
//! - [`relay`]: frames the relay carries, its replay window and per-node quota.
//! - [`stun`]: STUN binding requests and responses (RFC 5389).
//! - [`invite`]: invite codes: a controller's addresses and fingerprint, a network, a key.
//! - [`local_api`]: the JSON the daemon's local API serves and the CLI prints.
//! - [`netcheck`]: what `warren netcheck --controller` finds before joining, and its path verdict.
//! - [`service`]: services members publish into their network's DNS zone.
//! - [`local_dns`]: the local API's DNS status and service directory.
//! - [`text`]: node-supplied text made safe for a terminal.
//! - [`routes`]: subnet routes and exit nodes: prefix rules and the local API of `warren routes`.
//! - [`site`]: sites (one cluster each) behind subnet routers, and their mapped prefixes.
#![forbid(unsafe_code)]

pub mod control;
pub mod disco;
pub mod endpoint;
pub mod filter;
pub mod id;
pub mod invite;
pub mod key;
pub mod local_api;
pub mod local_dns;
pub mod netcheck;
pub mod netmap;
#[cfg(feature = "pinning")]
pub mod pinning;
pub mod relay;
pub mod routes;
pub mod service;
pub mod site;
pub mod stun;
pub mod text;

pub use id::{IdError, NetworkId, NodeId};
pub use key::{KeyError, NodePrivateKey, NodePublicKey};
