//! warren-controller: Warren's control plane. It hands out network
//! membership and overlay addresses, pushes netmaps to nodes over QUIC,
//! relays packets between nodes that have no direct path, answers STUN,
//! keeps a hash-chained audit log, and serves the admin HTTP API.
//!
//! # Layout
//! - [`data_dir`]: the controller's x25519 key, TLS certificate and fingerprint on disk.
//! - [`store`]: the `Store` trait, its model types, and the SQLite implementation.
//! - [`audit_action`]: every action the audit log records, and its stored name.
//! - [`audit_chain`]: the canonical hash of an audit entry (pure).
//! - [`audit_anchor`]: the audit head signed with the certificate's key, and its check.
//! - [`audit_filter`]: audit filters as people type them (`2h`, RFC 3339, search text), checked.
//! - [`ipam`]: lowest-free IPv4 allocation from a pool (pure).
//! - [`names`]: member names as DNS labels, with collision suffixes (pure).
//! - [`netmaps`]: builds one member's [`warren_proto::netmap::Netmap`] from a network snapshot (pure).
//! - [`routes`]: subnet and exit routes: approval checks, primary election, netmap routes (pure).
//! - [`policy`]: access policy: document, compiler to per-member filters, explain, tests (pure).
//! - [`dns`]: the authoritative DNS server for every network's zone, and published services.
//! - [`grant_clock`]: ends grants when their time comes and tells the hub.
//! - [`hub`]: change fan-out, presence and snapshot cache shared by the API and QUIC sides.
//! - [`paths`]: the paths agents report to their peers (direct or relayed), in memory only.
//! - [`metrics`]: counters and gauges rendered as Prometheus text.
//! - [`control`]: the QUIC control server: handshake, requests, netmap pushes.
//! - [`relay`]: relay frames between nodes over their control connections: checks, quotas, forwarding.
//! - [`stun`]: the STUN binding server on plain UDP.
//! - [`listen`]: binding UDP listeners with the IPv4 fallback for defaults.
//! - [`api`]: the axum HTTP API under `/api/v1`.
//! - [`server`]: wires everything together for `serve`, `relay` and tests.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit_action;
pub mod audit_anchor;
pub mod audit_chain;
pub mod audit_filter;
pub mod console;
pub mod control;
pub mod data_dir;
pub mod dns;
pub mod grant_clock;
pub mod hub;
pub mod identity;
pub mod ipam;
pub mod listen;
pub mod metrics;
pub mod names;
pub mod netmaps;
pub mod paths;
pub mod policy;
pub mod relay;
pub mod roles;
pub mod routes;
pub mod server;
pub mod service;
pub mod store;
pub mod stun;
