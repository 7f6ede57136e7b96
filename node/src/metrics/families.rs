//! Every metric family the agent exports: the catalogue `docs/metrics.md`
//! documents (a test holds the two together).

use super::exposition::{Family, Kind};

const NET: &[&str] = &["network"];
const NET_VIA: &[&str] = &["network", "via"];
const PEER: &[&str] = &["network", "peer", "name"];

pub const BUILD_INFO: Family = Family {
    name: "warren_build_info",
    kind: Kind::Gauge,
    labels: &["version"],
    help: "Always 1; the agent's version in the label.",
};

pub const NETWORK_STATE: Family = Family {
    name: "warren_network_state",
    kind: Kind::Gauge,
    labels: &["network", "state"],
    help: "1 for the network's current state, 0 for the others.",
};

pub const CONTROLLER_CONNECTED: Family = Family {
    name: "warren_controller_connected",
    kind: Kind::Gauge,
    labels: NET,
    help: "1 while the network's controller connection is up (joined networks only).",
};

pub const DATA_PLANE_DEATHS: Family = Family {
    name: "warren_data_plane_deaths_total",
    kind: Kind::Counter,
    labels: NET,
    help:
        "Times the network's data plane died (panicked or failed) and was restarted or given up on.",
};

pub const NETMAP_VERSION: Family = Family {
    name: "warren_netmap_version",
    kind: Kind::Gauge,
    labels: NET,
    help: "Version of the netmap the network runs on.",
};

pub const NETMAP_APPLY: Family = Family {
    name: "warren_netmap_apply_seconds",
    kind: Kind::Gauge,
    labels: NET,
    help: "How long the latest netmap or delta took to apply: from its arrival to the data plane, DNS and routes running on it.",
};

pub const TUN_RECEIVED: Family = Family {
    name: "warren_tun_received_packets_total",
    kind: Kind::Counter,
    labels: NET,
    help: "Packets read from the network's interface (to encrypt and send).",
};

pub const DATAGRAMS_SENT: Family = Family {
    name: "warren_sent_datagrams_total",
    kind: Kind::Counter,
    labels: NET_VIA,
    help: "Datagrams sent, on the UDP socket or through the relay.",
};

pub const DATAGRAMS_RECEIVED: Family = Family {
    name: "warren_received_datagrams_total",
    kind: Kind::Counter,
    labels: NET_VIA,
    help: "Datagrams received, on the UDP socket or through the relay, before any check.",
};

pub const BYTES_SENT: Family = Family {
    name: "warren_sent_bytes_total",
    kind: Kind::Counter,
    labels: NET_VIA,
    help: "Bytes of the datagrams sent.",
};

pub const BYTES_RECEIVED: Family = Family {
    name: "warren_received_bytes_total",
    kind: Kind::Counter,
    labels: NET_VIA,
    help: "Bytes of the datagrams received.",
};

pub const DISCO_RECEIVED: Family = Family {
    name: "warren_disco_received_total",
    kind: Kind::Counter,
    labels: NET,
    help: "Path probes (disco messages) received and accepted.",
};

pub const HARD_NAT_TRIES: Family = Family {
    name: "warren_hard_nat_tries_total",
    kind: Kind::Counter,
    labels: &["network", "role"],
    help: "Birthday-probing tries with peers behind hard NATs: fan_out (as the side whose NAT maps per destination), spray (as the other side).",
};

pub const DROPS: Family = Family {
    name: "warren_drops_total",
    kind: Kind::Counter,
    labels: &["network", "reason"],
    help: "Packets and datagrams the data plane dropped, by reason (access-policy drops are in warren_filter_drops_total).",
};

pub const PEER_SENT_BYTES: Family = Family {
    name: "warren_peer_sent_bytes_total",
    kind: Kind::Counter,
    labels: PEER,
    help: "Bytes of WireGuard messages sent to the peer.",
};

pub const PEER_RECEIVED_BYTES: Family = Family {
    name: "warren_peer_received_bytes_total",
    kind: Kind::Counter,
    labels: PEER,
    help: "Bytes of authenticated WireGuard messages from the peer.",
};

pub const PEER_SENT_PACKETS: Family = Family {
    name: "warren_peer_sent_packets_total",
    kind: Kind::Counter,
    labels: PEER,
    help: "WireGuard messages sent to the peer.",
};

pub const PEER_RECEIVED_PACKETS: Family = Family {
    name: "warren_peer_received_packets_total",
    kind: Kind::Counter,
    labels: PEER,
    help: "Authenticated WireGuard messages from the peer.",
};

pub const PEER_HANDSHAKES: Family = Family {
    name: "warren_peer_handshakes_total",
    kind: Kind::Counter,
    labels: PEER,
    help: "Handshakes completed with the peer.",
};

pub const PEER_RELAY_SENT_BYTES: Family = Family {
    name: "warren_peer_relay_sent_bytes_total",
    kind: Kind::Counter,
    labels: PEER,
    help: "Of the bytes sent to the peer, those that went through the relay.",
};

pub const PEER_RELAY_RECEIVED_BYTES: Family = Family {
    name: "warren_peer_relay_received_bytes_total",
    kind: Kind::Counter,
    labels: PEER,
    help: "Of the bytes received from the peer, those that came through the relay.",
};

pub const PEER_DROPS: Family = Family {
    name: "warren_peer_drops_total",
    kind: Kind::Counter,
    labels: &["network", "peer", "name", "reason"],
    help: "Packets to or from the peer that were dropped, by reason.",
};

pub const PEER_PATH: Family = Family {
    name: "warren_peer_path",
    kind: Kind::Gauge,
    labels: &["network", "peer", "name", "kind"],
    help: "1 for how packets reach the peer now (direct, relay or none), 0 for the others.",
};

pub const PEER_RTT: Family = Family {
    name: "warren_peer_rtt_seconds",
    kind: Kind::Gauge,
    labels: PEER,
    help: "Round-trip time of the peer's current path, from the latest probe.",
};

pub const PEER_LAST_HANDSHAKE: Family = Family {
    name: "warren_peer_last_handshake_timestamp_seconds",
    kind: Kind::Gauge,
    labels: PEER,
    help: "When the latest handshake with the peer completed (Unix time).",
};

pub const DNS_QUERIES: Family = Family {
    name: "warren_dns_queries_total",
    kind: Kind::Counter,
    labels: &["network", "result"],
    help: "Queries the network's DNS stub answered, by response code.",
};

pub const EFFECT_STATE: Family = Family {
    name: "warren_effect_state",
    kind: Kind::Gauge,
    labels: &["network", "effect", "state"],
    help: "1 for the current state (none, applied, failed) of the network's split DNS and routes, 0 for the others.",
};

pub const ROUTES_INSTALLED: Family = Family {
    name: "warren_routes_installed",
    kind: Kind::Gauge,
    labels: NET,
    help: "Routes in Warren's routing table through the network's interface (accepted subnet routes, exit node).",
};

pub const ROUTE_RULES: Family = Family {
    name: "warren_route_policy_rules",
    kind: Kind::Gauge,
    labels: &[],
    help: "Warren's policy-routing rules in force (IPv4 and IPv6).",
};

pub const SUBNET_FILTER_ACTIVE: Family = Family {
    name: "warren_subnet_filter_active",
    kind: Kind::Gauge,
    labels: &[],
    help: "1 while the stateful filter of a subnet router or exit node is installed.",
};

pub const SUBNET_FILTER_DROPPED_PACKETS: Family = Family {
    name: "warren_subnet_filter_dropped_packets_total",
    kind: Kind::Counter,
    labels: &["direction"],
    help: "Forwarded packets the stateful filter dropped, into or from the overlay.",
};

pub const SUBNET_FILTER_DROPPED_BYTES: Family = Family {
    name: "warren_subnet_filter_dropped_bytes_total",
    kind: Kind::Counter,
    labels: &["direction"],
    help: "Bytes of the forwarded packets the stateful filter dropped.",
};

pub const FILTER_POLICY_VERSION: Family = Family {
    name: "warren_filter_policy_version",
    kind: Kind::Gauge,
    labels: NET,
    help: "Version of the access policy the network's filter enforces (absent: no policy, all passes).",
};

pub const FILTER_RULES: Family = Family {
    name: "warren_filter_rules",
    kind: Kind::Gauge,
    labels: &["network", "direction"],
    help: "Access-policy rules (by name) installed in the network's filter.",
};

pub const FILTER_RULE_FLOWS: Family = Family {
    name: "warren_filter_rule_flows_total",
    kind: Kind::Counter,
    labels: &["network", "direction", "rule"],
    help: "New flows each access-policy rule admitted.",
};

pub const FILTER_DROPS: Family = Family {
    name: "warren_filter_drops_total",
    kind: Kind::Counter,
    labels: &["network", "direction", "reason"],
    help: "Packets the network's access-policy filter dropped, by reason.",
};

pub const FILTER_FLOWS: Family = Family {
    name: "warren_filter_tracked_flows",
    kind: Kind::Gauge,
    labels: NET,
    help: "Flows the network's filter tracks now.",
};

pub const FILTER_REJECTS: Family = Family {
    name: "warren_filter_rejects_sent_total",
    kind: Kind::Counter,
    labels: NET,
    help: "ICMP prohibited and TCP resets written back for denied outbound packets.",
};

/// Every family, in the order the page shows them.
pub const ALL: &[&Family] = &[
    &BUILD_INFO,
    &NETWORK_STATE,
    &CONTROLLER_CONNECTED,
    &DATA_PLANE_DEATHS,
    &NETMAP_VERSION,
    &NETMAP_APPLY,
    &TUN_RECEIVED,
    &DATAGRAMS_SENT,
    &DATAGRAMS_RECEIVED,
    &BYTES_SENT,
    &BYTES_RECEIVED,
    &DISCO_RECEIVED,
    &HARD_NAT_TRIES,
    &DROPS,
    &PEER_SENT_BYTES,
    &PEER_RECEIVED_BYTES,
    &PEER_SENT_PACKETS,
    &PEER_RECEIVED_PACKETS,
    &PEER_HANDSHAKES,
    &PEER_RELAY_SENT_BYTES,
    &PEER_RELAY_RECEIVED_BYTES,
    &PEER_DROPS,
    &PEER_PATH,
    &PEER_RTT,
    &PEER_LAST_HANDSHAKE,
    &DNS_QUERIES,
    &EFFECT_STATE,
    &ROUTES_INSTALLED,
    &ROUTE_RULES,
    &SUBNET_FILTER_ACTIVE,
    &SUBNET_FILTER_DROPPED_PACKETS,
    &SUBNET_FILTER_DROPPED_BYTES,
    &FILTER_POLICY_VERSION,
    &FILTER_RULES,
    &FILTER_RULE_FLOWS,
    &FILTER_DROPS,
    &FILTER_FLOWS,
    &FILTER_REJECTS,
];
