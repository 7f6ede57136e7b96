//! The page: a [`Snapshot`] (what `warren status` shows, with the DNS
//! stubs' and the routes' counts) written as Prometheus text. Pure.

use warren_proto::filter::Direction;
use warren_proto::local_api::{EffectState, NetworkState, NetworkStatus, PathKind, PeerStatus};

use super::exposition::Page;
use super::families::{self as f, ALL};
use super::Snapshot;

const STATES: [NetworkState; 10] = [
    NetworkState::Static,
    NetworkState::Connecting,
    NetworkState::Pending,
    NetworkState::Authorized,
    NetworkState::Refused,
    NetworkState::Expired,
    NetworkState::Conflict,
    NetworkState::Stale,
    NetworkState::Down,
    NetworkState::Failed,
];

const EFFECT_STATES: [(EffectState, &str); 3] = [
    (EffectState::None, "none"),
    (EffectState::Applied, "applied"),
    (EffectState::Failed, "failed"),
];

const PATHS: [(PathKind, &str); 3] = [
    (PathKind::Direct, "direct"),
    (PathKind::Relay, "relay"),
    (PathKind::None, "none"),
];

const DIRECTIONS: [(Direction, &str); 2] = [
    (Direction::Inbound, "inbound"),
    (Direction::Outbound, "outbound"),
];

pub fn render(snapshot: &Snapshot) -> String {
    let mut page = Page::new(ALL);
    let status = &snapshot.status;
    page.sample(&f::BUILD_INFO, &[&status.version], 1);
    for net in &status.networks {
        network(&mut page, snapshot, net);
    }
    for peer in &status.peers {
        self::peer(&mut page, peer);
    }
    let routes = &snapshot.routes;
    page.sample(&f::ROUTE_RULES, &[], routes.rules);
    page.sample(
        &f::SUBNET_FILTER_ACTIVE,
        &[],
        u8::from(routes.filter.active),
    );
    for (direction, packets, bytes) in [
        (
            "into_overlay",
            routes.filter.dropped_into_overlay_packets,
            routes.filter.dropped_into_overlay_bytes,
        ),
        (
            "from_overlay",
            routes.filter.dropped_from_overlay_packets,
            routes.filter.dropped_from_overlay_bytes,
        ),
    ] {
        page.sample(&f::SUBNET_FILTER_DROPPED_PACKETS, &[direction], packets);
        page.sample(&f::SUBNET_FILTER_DROPPED_BYTES, &[direction], bytes);
    }
    page.finish()
}

fn network(page: &mut Page<'_>, snapshot: &Snapshot, net: &NetworkStatus) {
    let id = net.id.as_str();
    for state in STATES {
        let name = state.as_str();
        page.sample(&f::NETWORK_STATE, &[id, name], u8::from(net.state == state));
    }
    if net.controller.is_some() {
        page.sample(
            &f::CONTROLLER_CONNECTED,
            &[id],
            u8::from(net.controller_connected),
        );
        for (effect, state) in [("dns", net.dns.state), ("routes", net.routes.state)] {
            for (s, name) in EFFECT_STATES {
                page.sample(&f::EFFECT_STATE, &[id, effect, name], u8::from(s == state));
            }
        }
        let routes = snapshot
            .routes
            .table
            .iter()
            .find(|(n, _)| n.to_string() == net.id)
            .map_or(0, |(_, count)| *count);
        page.sample(&f::ROUTES_INSTALLED, &[id], routes);
    }
    let deaths = net.data_plane.as_ref().map_or(0, |h| h.deaths);
    page.sample(&f::DATA_PLANE_DEATHS, &[id], deaths);
    if let Some(version) = net.netmap_version {
        page.sample(&f::NETMAP_VERSION, &[id], version);
    }
    if let Some(us) = net.netmap_apply_us {
        // Microseconds as seconds, without a float's rounding.
        page.sample(
            &f::NETMAP_APPLY,
            &[id],
            format!("{}.{:06}", us / 1_000_000, us % 1_000_000),
        );
    }
    let c = &net.counters;
    page.sample(&f::TUN_RECEIVED, &[id], c.tun_rx_packets);
    page.sample(&f::DISCO_RECEIVED, &[id], c.disco_rx);
    page.sample(&f::HARD_NAT_TRIES, &[id, "fan_out"], c.hard_nat_fanouts);
    page.sample(&f::HARD_NAT_TRIES, &[id, "spray"], c.hard_nat_sprays);
    for (via, sent, received, sent_bytes, received_bytes) in [
        (
            "udp",
            c.udp_tx_datagrams,
            c.udp_rx_datagrams,
            c.udp_tx_bytes,
            c.udp_rx_bytes,
        ),
        (
            "relay",
            c.relay_tx_datagrams,
            c.relay_rx_datagrams,
            c.relay_tx_bytes,
            c.relay_rx_bytes,
        ),
    ] {
        page.sample(&f::DATAGRAMS_SENT, &[id, via], sent);
        page.sample(&f::DATAGRAMS_RECEIVED, &[id, via], received);
        page.sample(&f::BYTES_SENT, &[id, via], sent_bytes);
        page.sample(&f::BYTES_RECEIVED, &[id, via], received_bytes);
    }
    for (reason, n) in [
        ("invalid", c.dropped_invalid),
        ("replay", c.dropped_replay),
        ("spoofed", c.dropped_spoofed),
        ("no_route", c.dropped_no_route),
        ("no_endpoint", c.dropped_no_endpoint),
        ("unknown_peer", c.dropped_unknown_peer),
        ("relay_queue_full", c.dropped_relay_queue_full),
        ("oversized", c.dropped_oversized),
    ] {
        page.sample(&f::DROPS, &[id, reason], n);
    }
    if let Some((_, counts)) = snapshot.dns.iter().find(|(n, _)| n.to_string() == net.id) {
        for (result, n) in counts {
            page.sample(&f::DNS_QUERIES, &[id, result], n);
        }
    }
    filter(page, net);
}

/// The network's access-policy filter.
fn filter(page: &mut Page<'_>, net: &NetworkStatus) {
    let id = net.id.as_str();
    let stats = &net.filter;
    if let Some(version) = stats.policy_version {
        page.sample(&f::FILTER_POLICY_VERSION, &[id], version);
    }
    for (direction, name) in DIRECTIONS {
        let rules = stats.rule_hits.iter().filter(|h| h.direction == direction);
        page.sample(&f::FILTER_RULES, &[id, name], rules.clone().count());
        for hits in rules {
            page.sample(&f::FILTER_RULE_FLOWS, &[id, name, &hits.rule], hits.flows);
        }
        let drops = match direction {
            Direction::Inbound => stats.dropped_inbound,
            Direction::Outbound => stats.dropped_outbound,
        };
        page.sample(&f::FILTER_DROPS, &[id, name, "no_rule"], drops.no_rule);
        page.sample(&f::FILTER_DROPS, &[id, name, "malformed"], drops.malformed);
    }
    page.sample(&f::FILTER_FLOWS, &[id], stats.tracked_flows);
    page.sample(&f::FILTER_REJECTS, &[id], stats.rejects_sent);
}

fn peer(page: &mut Page<'_>, p: &PeerStatus) {
    // The node ID stays when a peer is renamed; static peers have only their key.
    let peer = p
        .node_id
        .map_or_else(|| p.public_key.to_string(), |id| id.to_string());
    let name = p.name.as_deref().unwrap_or_default();
    let labels = [p.network.as_str(), peer.as_str(), name];
    let c = &p.counters;
    page.sample(&f::PEER_SENT_BYTES, &labels, p.tx_bytes);
    page.sample(&f::PEER_RECEIVED_BYTES, &labels, p.rx_bytes);
    page.sample(&f::PEER_SENT_PACKETS, &labels, c.tx_packets);
    page.sample(&f::PEER_RECEIVED_PACKETS, &labels, c.rx_packets);
    page.sample(&f::PEER_HANDSHAKES, &labels, c.handshakes);
    page.sample(&f::PEER_RELAY_SENT_BYTES, &labels, c.relay_tx_bytes);
    page.sample(&f::PEER_RELAY_RECEIVED_BYTES, &labels, c.relay_rx_bytes);
    for (reason, n) in [
        ("invalid", c.dropped_invalid),
        ("replay", c.dropped_replay),
        ("spoofed", c.dropped_spoofed),
        ("no_endpoint", c.dropped_no_endpoint),
        ("filter", c.dropped_filter),
    ] {
        page.sample(&f::PEER_DROPS, &[labels[0], labels[1], name, reason], n);
    }
    for (kind, label) in PATHS {
        page.sample(
            &f::PEER_PATH,
            &[labels[0], labels[1], name, label],
            u8::from(p.path == kind),
        );
    }
    if let Some(ms) = p.latency_ms {
        page.sample(&f::PEER_RTT, &labels, ms / 1000.0);
    }
    if let Some(at) = p.last_handshake {
        page.sample(&f::PEER_LAST_HANDSHAKE, &labels, at.unix_timestamp());
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
