//! warren-engine: Warren's data plane as a sans-IO state machine.
//!
//! The engine owns the peers, the longest-prefix routing table (destination
//! to peer on the way out, source check on the way in), one boringtun session
//! per peer behind a single adapter, one shared handshake rate limiter, the
//! access-policy filter, the timers, roaming and the counters. It never
//! reads a clock, touches a socket or spawns a task: the shell in
//! `warren-node` feeds it packets and time and drains what it produces.
//!
//! # Layout
//! - [`engine`]: `Engine`, its `handle_*` inputs and `poll_*` outputs.
//! - [`peer`]: peer configuration, ids and snapshots.
//! - [`routing`]: the longest-prefix-match table.
//! - [`path`]: per-peer path discovery state: candidates, probes, the best path.
//! - `stun`: the STUN client that learns the data socket's reflexive address.
//! - [`birthday`]: hard-NAT traversal by many tries at once.
//! - `disco`: the engine's disco handling: pings, pongs, call-me-maybe, `ping`.
//! - `tunnel`: the adapter around boringtun's `Tunn`, the only code that trusts its clock.
//! - [`site_nat`]: stateless translation of a site's mapped prefixes on its router.
//! - [`filter`]: the access-policy filter: rules, connection tracking, rejects, counters.
//! - [`packet`]: IP header fields the engine routes by.
//! - [`error`]: why a packet or a configuration was refused.
#![forbid(unsafe_code)]

pub mod birthday;
mod disco;
mod disco_replay;
pub mod engine;
pub mod error;
pub mod filter;
pub mod packet;
pub mod path;
pub mod peer;
pub mod routing;
pub mod site_nat;
mod stun;
mod tunnel;

pub use birthday::Birthday;
pub use engine::{Engine, EngineConfig, Event, NetworkAction, Send, Source, Transmit};
pub use error::{ConfigError, PacketError};
pub use filter::Filter;
pub use path::{PathKind, Via};
pub use peer::{PeerConfig, PeerId, PeerSnapshot};
pub use tunnel::{DATA_OVERHEAD, MIN_OUTPUT_BUFFER};
