//! warren-proto: the types that cross Warren's boundaries, with no I/O.
//!
//! # Layout
//! - [`key`]: x25519 node keys in WireGuard's base64 form.
//! - [`local_api`]: the JSON the daemon's local API serves and the CLI prints.
#![forbid(unsafe_code)]

pub mod key;
pub mod local_api;

pub use key::{KeyError, NodePrivateKey, NodePublicKey};
