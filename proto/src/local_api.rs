//! The daemon's local API: what `GET /v1/status` returns and `warren status --json` prints.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{NetworkId, NodeId, NodePublicKey};

/// The whole state of a running agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub public_key: NodePublicKey,
    pub node_id: NodeId,
    pub version: String,
    /// The static network of the config file (id `static`) and every joined network.
    pub networks: Vec<NetworkStatus>,
    /// The peers of all networks.
    pub peers: Vec<PeerStatus>,
    /// The sum over all networks.
    pub counters: Counters,
    /// Tasks of the agent itself (the local API, the metrics endpoint)
    /// that died and were restarted or given up on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_failures: Vec<TaskFailure>,
}

/// A task of the agent that died: which, why, and what the agent did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskFailure {
    /// `local-api`, `metrics`, `data-plane static`.
    pub task: String,
    /// Why it died last (an error, or a panic's message).
    pub error: String,
    /// How often it died since the agent started.
    pub deaths: u32,
    /// Seconds since it died last.
    pub last_death_secs: u64,
    /// Restarts ran out: it stays dead until the agent restarts.
    #[serde(default)]
    pub gave_up: bool,
}

/// A network's data plane, once it died: the agent restarts it with
/// backoff a bounded number of times, then marks the network `failed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataPlaneHealth {
    /// How often it died (panicked or failed) since the network came up.
    pub deaths: u32,
    /// Why it died last.
    pub last_error: String,
    /// Seconds since it died last.
    pub last_death_secs: u64,
    /// Seconds until the next restart, while one is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_in_secs: Option<u64>,
    /// Restarts ran out: the network is `failed` until `warren down` and
    /// `warren up` (or a new netmap) try again.
    #[serde(default)]
    pub gave_up: bool,
}

/// Where a network stands on this node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NetworkState {
    /// Peers from the config file.
    Static,
    /// Joined, but no answer from the controller yet and no cached netmap.
    Connecting,
    /// A member waiting for an admin's approval.
    Pending,
    /// A member with its tunnel up.
    Authorized,
    /// The controller refused the join or revoked the member; see `message`.
    Refused,
    /// The owner's sign-in ran out: no peers until `warren login`.
    Expired,
    /// The netmap was refused locally; see `message` (e.g. overlapping pools).
    Conflict,
    /// The controller has not confirmed the netmap for longer than
    /// `netmap-max-age`: no peers until it does; see `message`.
    Stale,
    /// Taken offline with `warren down`: no interface, no peers, but the
    /// membership, address and name stay for `warren up`.
    Down,
    /// Its data plane kept dying and the agent stopped restarting it; see
    /// `message` and `data_plane`.
    Failed,
}

impl NetworkState {
    /// The name `warren status` and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkState::Static => "static",
            NetworkState::Connecting => "connecting",
            NetworkState::Pending => "pending",
            NetworkState::Authorized => "authorized",
            NetworkState::Refused => "refused",
            NetworkState::Expired => "expired",
            NetworkState::Conflict => "conflict",
            NetworkState::Stale => "stale",
            NetworkState::Down => "down",
            NetworkState::Failed => "failed",
        }
    }
}

/// Why the connection to a network's controller failed lately.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControllerError {
    pub kind: ControllerErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ControllerErrorKind {
    /// No QUIC connection could be made (no route, no answer, a timeout).
    Unreachable,
    /// The controller's certificate is not the one pinned.
    FingerprintMismatch,
    /// The agent's own connection task died (a bug): the message says
    /// whether it is started again.
    TaskFailed,
}

/// Whether one of a network's effects on the system (split DNS, routes)
/// is in force.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Effect {
    pub state: EffectState,
    /// What failed, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EffectState {
    /// Nothing to apply: turned off, or the network is not up.
    #[default]
    None,
    /// In force.
    Applied,
    /// Should be in force and is not; see `error`.
    Failed,
}

impl Effect {
    pub fn applied() -> Effect {
        Effect {
            state: EffectState::Applied,
            error: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> Effect {
        Effect {
            state: EffectState::Failed,
            error: Some(error.into()),
        }
    }
}

/// What a control connection runs over.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ControlTransport {
    /// QUIC over UDP: the normal case.
    Udp,
    /// QUIC over TCP, the fallback when no UDP answer comes.
    Tcp,
}

impl std::fmt::Display for ControlTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ControlTransport::Udp => "QUIC over UDP",
            ControlTransport::Tcp => "QUIC over TCP",
        })
    }
}

/// One network on this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkStatus {
    /// The 16-hex-digit network ID, or `static`.
    pub id: String,
    pub name: Option<String>,
    pub controller: Option<String>,
    /// Whether the control connection is up (always false for `static`).
    pub controller_connected: bool,
    /// What the control connection runs over, while it is up: QUIC over
    /// UDP, or over TCP where the network blocks UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_transport: Option<ControlTransport>,
    pub state: NetworkState,
    /// Why the state is what it is, for `refused`, `conflict` and `stale`
    /// (and a netmap refused while an older one still runs).
    pub message: Option<String>,
    /// This node's name and FQDN in the network.
    pub fqdn: Option<String>,
    pub interface: Option<String>,
    pub listen_port: Option<u16>,
    pub addresses: Vec<IpNet>,
    pub mtu: u16,
    /// Whether the TUN device runs with kernel offloads (TSO/GRO through a vnet header).
    pub offload: bool,
    pub netmap_version: Option<u64>,
    /// How long the latest netmap or delta took to apply, in microseconds:
    /// from its arrival to the data plane running on it, with its DNS and
    /// routes in step and the map cached on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmap_apply_us: Option<u64>,
    pub counters: Counters,
    /// The access-policy filter: the version it enforces, rule hits, drops
    /// by reason, tracked flows and the latest drops.
    #[serde(default)]
    pub filter: crate::filter::FilterStats,
    /// While pending on a network where people sign devices in: the page
    /// to open to sign in and confirm this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_url: Option<String>,
    /// Who signed this device in (an e-mail address), if anyone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When that sign-in runs out (RFC 3339), for a device with an owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Why the latest sign-in on this device's page was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_refused: Option<String>,
    /// The controller certificate's pinned SHA-256 fingerprint (given, or
    /// learnt on first use); `None` before a first-use connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// For `refused`: which kind of refusal `message` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<crate::control::RefusalKind>,
    /// Why the latest attempt to reach the controller failed, while it
    /// is not connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_error: Option<ControllerError>,
    /// Seconds since the controller connection was last up (or since the
    /// agent started trying), while it is not connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_down_secs: Option<u64>,
    /// Split DNS for the network's zone.
    #[serde(default)]
    pub dns: Effect,
    /// Subnet routes, exit node and their filter.
    #[serde(default)]
    pub routes: Effect,
    /// The data plane's deaths and restarts; `None` while it never died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_plane: Option<DataPlaneHealth>,
    /// The site (a cluster) this node is a router of, as the network has
    /// it: it routes that site's approved prefixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

/// `GET /v1/explain?to=ADDRESS&port=PORT`: would a new flow from this node
/// to `dst` on `port` leave it, and by which rule?
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExplainReply {
    /// The network whose peer routes `dst`.
    pub network: String,
    /// The peer the flow would go to: its name, else its key.
    pub peer: String,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    /// `tcp:6379`, `udp:53`, `icmp`.
    pub port: String,
    pub verdict: crate::filter::Verdict,
    /// The rule that allows it; `None` when nothing does, or when the
    /// network has no policy.
    pub rule: Option<String>,
    pub policy_version: Option<u64>,
    /// The network's latest drops, newest first.
    pub recent_drops: Vec<crate::filter::RecentDrop>,
}

/// `POST /v1/networks`: join a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinRequest {
    pub network_id: NetworkId,
    /// `HOST:PORT` of the controller's QUIC listener.
    pub controller: String,
    /// Every address the controller is reached at, `controller` first, as
    /// an invite code lists them (a controller's replicas); empty for a
    /// join that names `controller` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
    /// SHA-256 of the controller's certificate, hex. Without it the first
    /// certificate seen is trusted and pinned (trust on first use).
    pub fingerprint: Option<String>,
    pub preauth_key: Option<String>,
    /// The name to ask for; the host name by default.
    pub name: Option<String>,
    /// DNS zones (with the names under them) the user allows this network's
    /// controller to name, beyond `*.warren.internal`, `*.internal` and
    /// `*.home.arpa`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_zones: Vec<String>,
    /// Without a fingerprint, the caller must say it trusts the first
    /// certificate seen; otherwise the join is refused.
    #[serde(default)]
    pub trust_first_use: bool,
}

/// What `POST /v1/networks` answers: the network's status, and what a
/// join of a network already joined changed in its settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinReply {
    #[serde(flatten)]
    pub network: NetworkStatus,
    /// One line per setting changed (`name`, `controller`, `fingerprint`,
    /// `pre-auth key`, `allowed zones`); empty for a new join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updated: Vec<String>,
}

/// One peer as the agent sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// The network it belongs to: a network ID or `static`.
    pub network: String,
    pub public_key: NodePublicKey,
    pub node_id: Option<NodeId>,
    pub name: Option<String>,
    /// What the controller last said of it; `None` for static peers.
    pub online: Option<bool>,
    /// The peer's allowed IPs: the overlay prefixes routed to it.
    pub addresses: Vec<IpNet>,
    /// Where its packets go now: configured, or learnt from its latest authenticated packet.
    pub endpoint: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_handshake: Option<OffsetDateTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds, if set.
    pub persistent_keepalive: Option<u64>,
    /// How packets reach the peer now.
    #[serde(default = "PathKind::none")]
    pub path: PathKind,
    /// Round-trip time of that path from the latest probe, in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Packets, handshakes, relay use and drops, since the peer was added.
    #[serde(default)]
    pub counters: PeerCounters,
}

/// What one peer's traffic has done since the data plane added it, beyond
/// `rx_bytes` and `tx_bytes`. Every packet counted in `rx_packets` and
/// `tx_packets` is a WireGuard message (data, keepalive or handshake).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerCounters {
    /// Authenticated WireGuard messages from the peer.
    pub rx_packets: u64,
    /// WireGuard messages to the peer.
    pub tx_packets: u64,
    /// Handshakes completed with the peer (an initiation answered, or a
    /// response accepted).
    pub handshakes: u64,
    /// Of `rx_bytes`, what came through the relay.
    pub relay_rx_bytes: u64,
    /// Of `tx_bytes`, what went through the relay.
    pub relay_tx_bytes: u64,
    /// Messages from the peer that failed authentication.
    pub dropped_invalid: u64,
    /// Data packets from the peer whose counter was seen before.
    pub dropped_replay: u64,
    /// Decrypted packets from the peer from a source outside its allowed IPs.
    pub dropped_spoofed: u64,
    /// Packets for the peer while it had no endpoint and no relay.
    pub dropped_no_endpoint: u64,
    /// Packets to or from the peer that the access policy denied.
    pub dropped_filter: u64,
}

/// How packets reach a peer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// Straight to one of its addresses, confirmed by a probe or its packets.
    Direct,
    /// Through the controller's relay.
    Relay,
    /// No working path (yet).
    None,
}

impl PathKind {
    fn none() -> Self {
        PathKind::None
    }
}

/// `POST /v1/ping`: probe every path to a peer once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PingRequest {
    /// A name, FQDN, node ID, overlay address or public key.
    pub peer: String,
}

/// What one `warren ping` probe found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PingReply {
    pub network: String,
    pub peer: NodePublicKey,
    pub name: Option<String>,
    /// `direct`, `relay`, or `none` if nothing answered within 5 s.
    pub path: PathKind,
    /// The address that answered, for a direct path.
    pub endpoint: Option<String>,
    pub rtt_ms: Option<f64>,
}

/// `GET /v1/netcheck`: what the agent knows of the NATs in front of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Netcheck {
    pub networks: Vec<NetcheckNetwork>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetcheckNetwork {
    pub network: String,
    pub listen_port: Option<u16>,
    /// Each STUN server asked and the address it saw our data socket at.
    pub reflexive: Vec<ReflexiveAddress>,
    /// True if servers saw different mappings (an endpoint-dependent,
    /// "symmetric" NAT); `None` with fewer than two answers.
    pub mapping_varies_by_destination: Option<bool>,
    /// Whether the relay is reachable (the control connection is up).
    pub relay: bool,
    /// The relay-only instance relaying for this network, when the
    /// controller names one and it is connected; `None`: the controller
    /// relays itself.
    #[serde(default)]
    pub relay_server: Option<String>,
    /// The mapping the default gateway granted for `listen_port`, advertised
    /// to peers as one more endpoint; `None` while there is none (port
    /// mapping off, or no gateway answered).
    #[serde(default)]
    pub port_mapping: Option<PortMapping>,
}

/// A port mapping granted by the gateway (PCP or NAT-PMP).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMapping {
    /// `pcp` or `nat-pmp`: the protocol the gateway answered.
    pub protocol: String,
    /// The gateway asked (the default route's).
    pub gateway: String,
    /// Where peers reach the data-plane port from outside.
    pub external: String,
    /// The lifetime granted, in seconds; renewed at half of it.
    pub lifetime_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReflexiveAddress {
    pub server: String,
    pub mapped: String,
}

/// Agent-wide packet counters. Every dropped packet lands in exactly one `dropped_*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub tun_rx_packets: u64,
    pub udp_rx_datagrams: u64,
    pub udp_tx_datagrams: u64,
    /// Bytes of the datagrams in `udp_rx_datagrams`.
    #[serde(default)]
    pub udp_rx_bytes: u64,
    /// Bytes of the datagrams in `udp_tx_datagrams`.
    #[serde(default)]
    pub udp_tx_bytes: u64,
    /// Datagrams that came through the relay.
    #[serde(default)]
    pub relay_rx_datagrams: u64,
    /// Datagrams sent through the relay.
    #[serde(default)]
    pub relay_tx_datagrams: u64,
    /// Bytes of the datagrams in `relay_rx_datagrams`.
    #[serde(default)]
    pub relay_rx_bytes: u64,
    /// Bytes of the datagrams in `relay_tx_datagrams`.
    #[serde(default)]
    pub relay_tx_bytes: u64,
    /// Disco messages (path probes) received and accepted.
    #[serde(default)]
    pub disco_rx: u64,
    /// Datagrams that are not WireGuard messages at all, or fail authentication.
    pub dropped_invalid: u64,
    /// Data packets whose counter was seen before (replays).
    pub dropped_replay: u64,
    /// Decrypted packets whose source address is outside the sending peer's allowed IPs.
    pub dropped_spoofed: u64,
    /// Packets from the TUN whose destination no peer serves.
    pub dropped_no_route: u64,
    /// Packets for a peer with no known endpoint.
    pub dropped_no_endpoint: u64,
    /// Handshakes from keys that are not configured peers.
    pub dropped_unknown_peer: u64,
    /// Relayed datagrams dropped because the data plane's queue was full.
    #[serde(default)]
    pub dropped_relay_queue_full: u64,
    /// Relayed datagrams larger than any WireGuard packet can be.
    #[serde(default)]
    pub dropped_oversized: u64,
    /// Birthday tries begun as the side behind a NAT that maps per
    /// destination: pings to a peer from many sockets at once.
    #[serde(default)]
    pub hard_nat_fanouts: u64,
    /// Birthday tries answered as the other side: one ping to many ports.
    #[serde(default)]
    pub hard_nat_sprays: u64,
}

impl Counters {
    /// Adds another network's counters to these.
    pub fn add(&mut self, other: &Counters) {
        self.tun_rx_packets += other.tun_rx_packets;
        self.udp_rx_datagrams += other.udp_rx_datagrams;
        self.udp_tx_datagrams += other.udp_tx_datagrams;
        self.udp_rx_bytes += other.udp_rx_bytes;
        self.udp_tx_bytes += other.udp_tx_bytes;
        self.relay_rx_datagrams += other.relay_rx_datagrams;
        self.relay_tx_datagrams += other.relay_tx_datagrams;
        self.relay_rx_bytes += other.relay_rx_bytes;
        self.relay_tx_bytes += other.relay_tx_bytes;
        self.disco_rx += other.disco_rx;
        self.dropped_invalid += other.dropped_invalid;
        self.dropped_replay += other.dropped_replay;
        self.dropped_spoofed += other.dropped_spoofed;
        self.dropped_no_route += other.dropped_no_route;
        self.dropped_no_endpoint += other.dropped_no_endpoint;
        self.dropped_unknown_peer += other.dropped_unknown_peer;
        self.dropped_relay_queue_full += other.dropped_relay_queue_full;
        self.dropped_oversized += other.dropped_oversized;
        self.hard_nat_fanouts += other.hard_nat_fanouts;
        self.hard_nat_sprays += other.hard_nat_sprays;
    }
}

/// The error body of every local-API failure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_handshake_is_rfc3339_or_null() {
        let peer = PeerStatus {
            network: "static".into(),
            node_id: None,
            name: None,
            online: None,
            public_key: crate::NodePrivateKey::generate().public_key(),
            addresses: vec!["10.99.0.2/32".parse().unwrap()],
            endpoint: None,
            last_handshake: Some(OffsetDateTime::UNIX_EPOCH),
            rx_bytes: 1,
            tx_bytes: 2,
            persistent_keepalive: None,
            path: PathKind::None,
            latency_ms: None,
            counters: PeerCounters::default(),
        };
        let json = serde_json::to_value(&peer).unwrap();
        assert_eq!(json["last_handshake"], "1970-01-01T00:00:00Z");
        let none = PeerStatus {
            last_handshake: None,
            ..peer
        };
        assert!(serde_json::to_value(&none).unwrap()["last_handshake"].is_null());
    }
}
