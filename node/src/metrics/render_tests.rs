//! The page as a scraper reads it, from a hand-made snapshot, and the
//! catalogue held against `docs/metrics.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use warren_proto::local_api::{Effect, PeerStatus, Status};
use warren_proto::NetworkId;

use crate::metrics::exposition::Kind;
use crate::metrics::{families, render, Snapshot};
use crate::routes::RoutesMetrics;

const NET: &str = "8056c2e21c000001";

fn snapshot() -> Snapshot {
    let key = warren_proto::NodePrivateKey::generate().public_key();
    let mut status: Status = serde_json::from_value(json!({
        "public_key": key.to_string(),
        "node_id": warren_proto::NodeId::from_key(&key).to_string(),
        "version": "1.2.3",
        "networks": [{
            "id": NET, "name": "lab", "controller": "192.0.2.10:7443",
            "controller_connected": true, "state": "authorized", "message": null,
            "fqdn": "a.lab.warren.internal", "interface": "warren0", "listen_port": 51820,
            "addresses": ["10.147.0.1/16"], "mtu": 1420, "offload": true, "netmap_version": 3,
            "netmap_apply_us": 1_000_412,
            "counters": {
                "tun_rx_packets": 10, "udp_rx_datagrams": 12, "udp_tx_datagrams": 11,
                "udp_rx_bytes": 1200, "udp_tx_bytes": 1100, "relay_tx_bytes": 64,
                "dropped_invalid": 0, "dropped_replay": 2, "dropped_spoofed": 0,
                "dropped_no_route": 1, "dropped_no_endpoint": 0, "dropped_unknown_peer": 0
            },
            "filter": {
                "policy_version": 7, "tracked_flows": 4, "flow_limit": 65536,
                "flows_evicted": 0, "flows_expired": 0, "flows_cut": 0,
                "rule_hits": [
                    {"rule": "web", "direction": "inbound", "flows": 5},
                    {"rule": "db \"prod\"", "direction": "inbound", "flows": 1},
                    {"rule": "out", "direction": "outbound", "flows": 9}
                ],
                "dropped_inbound": {"no_rule": 3, "malformed": 0},
                "dropped_outbound": {"no_rule": 0, "malformed": 1},
                "rejects_sent": 1, "recent_drops": []
            }
        }],
        "peers": [],
        "counters": {
            "tun_rx_packets": 10, "udp_rx_datagrams": 12, "udp_tx_datagrams": 11,
            "dropped_invalid": 0, "dropped_replay": 2, "dropped_spoofed": 0,
            "dropped_no_route": 1, "dropped_no_endpoint": 0, "dropped_unknown_peer": 0
        }
    }))
    .unwrap();
    status.networks[0].routes = Effect::applied();
    let peer_key = warren_proto::NodePrivateKey::generate().public_key();
    let peer: PeerStatus = serde_json::from_value(json!({
        "network": NET, "public_key": peer_key.to_string(), "node_id": "0123456789",
        "name": "db", "online": true, "addresses": ["10.147.0.2/32"],
        "endpoint": "192.0.2.2:51820", "last_handshake": "2026-01-01T00:00:00Z",
        "rx_bytes": 900, "tx_bytes": 800, "persistent_keepalive": 25,
        "path": "direct", "latency_ms": 1.5,
        "counters": {
            "rx_packets": 9, "tx_packets": 8, "handshakes": 1, "relay_rx_bytes": 0,
            "relay_tx_bytes": 0, "dropped_invalid": 0, "dropped_replay": 2,
            "dropped_spoofed": 0, "dropped_no_endpoint": 0, "dropped_filter": 3
        }
    }))
    .unwrap();
    let static_peer = PeerStatus {
        network: "static".into(),
        node_id: None,
        name: None,
        path: warren_proto::local_api::PathKind::None,
        latency_ms: None,
        last_handshake: None,
        ..peer.clone()
    };
    status.peers = vec![peer, static_peer];
    let id: NetworkId = NET.parse().unwrap();
    Snapshot {
        status,
        dns: vec![(id, vec![("noerror", 5), ("nxdomain", 1)])],
        routes: RoutesMetrics {
            table: BTreeMap::from([(id, 2)]),
            rules: 8,
            filter: Default::default(),
        },
    }
}

/// Each sample line's series (name and labels) and value.
fn samples(page: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        assert!(
            out.insert(series.to_owned(), value.to_owned()).is_none(),
            "{series} twice"
        );
    }
    out
}

#[test]
fn the_page_shows_networks_peers_dns_and_routes() {
    let page = render::render(&snapshot());
    let s = samples(&page);
    let value = |series: &str| s.get(series).map(String::as_str);
    assert_eq!(value(r#"warren_build_info{version="1.2.3"}"#), Some("1"));
    let n = format!(r#"network="{NET}""#);
    for (series, want) in [
        (format!("warren_controller_connected{{{n}}}"), "1"),
        (
            format!(r#"warren_network_state{{{n},state="authorized"}}"#),
            "1",
        ),
        (format!(r#"warren_network_state{{{n},state="stale"}}"#), "0"),
        (
            format!(r#"warren_network_state{{{n},state="failed"}}"#),
            "0",
        ),
        (format!("warren_data_plane_deaths_total{{{n}}}"), "0"),
        (format!("warren_netmap_apply_seconds{{{n}}}"), "1.000412"),
        (
            format!(r#"warren_sent_bytes_total{{{n},via="udp"}}"#),
            "1100",
        ),
        (
            format!(r#"warren_sent_bytes_total{{{n},via="relay"}}"#),
            "64",
        ),
        (format!(r#"warren_drops_total{{{n},reason="replay"}}"#), "2"),
        (
            format!(r#"warren_drops_total{{{n},reason="no_route"}}"#),
            "1",
        ),
        (
            format!(r#"warren_dns_queries_total{{{n},result="noerror"}}"#),
            "5",
        ),
        (format!("warren_routes_installed{{{n}}}"), "2"),
        (
            format!(r#"warren_effect_state{{{n},effect="routes",state="applied"}}"#),
            "1",
        ),
        (
            format!(r#"warren_effect_state{{{n},effect="dns",state="none"}}"#),
            "1",
        ),
        (format!("warren_filter_policy_version{{{n}}}"), "7"),
        (
            format!(r#"warren_filter_rules{{{n},direction="inbound"}}"#),
            "2",
        ),
        (
            format!(r#"warren_filter_rules{{{n},direction="outbound"}}"#),
            "1",
        ),
        (
            format!(
                r#"warren_filter_rule_flows_total{{{n},direction="inbound",rule="db \"prod\""}}"#
            ),
            "1",
        ),
        (
            format!(r#"warren_filter_drops_total{{{n},direction="inbound",reason="no_rule"}}"#),
            "3",
        ),
        ("warren_route_policy_rules".to_owned(), "8"),
        ("warren_subnet_filter_active".to_owned(), "0"),
    ] {
        assert_eq!(value(&series), Some(want), "{series} in\n{page}");
    }
    let p = format!(r#"network="{NET}",peer="0123456789",name="db""#);
    for (series, want) in [
        (format!("warren_peer_sent_bytes_total{{{p}}}"), "800"),
        (format!("warren_peer_received_bytes_total{{{p}}}"), "900"),
        (format!("warren_peer_sent_packets_total{{{p}}}"), "8"),
        (format!("warren_peer_received_packets_total{{{p}}}"), "9"),
        (format!("warren_peer_handshakes_total{{{p}}}"), "1"),
        (
            format!(r#"warren_peer_drops_total{{{p},reason="filter"}}"#),
            "3",
        ),
        (format!(r#"warren_peer_path{{{p},kind="direct"}}"#), "1"),
        (format!(r#"warren_peer_path{{{p},kind="relay"}}"#), "0"),
        (format!("warren_peer_rtt_seconds{{{p}}}"), "0.0015"),
        (
            format!("warren_peer_last_handshake_timestamp_seconds{{{p}}}"),
            "1767225600",
        ),
    ] {
        assert_eq!(value(&series), Some(want), "{series} in\n{page}");
    }
    // A static peer goes by its key, and has no RTT to show.
    let static_rtt = s
        .keys()
        .any(|k| k.starts_with("warren_peer_rtt_seconds{network=\"static\""));
    assert!(!static_rtt);
    assert!(s.keys().any(
        |k| k.starts_with("warren_peer_path{network=\"static\",peer=\"")
            && k.ends_with("name=\"\",kind=\"none\"}")
    ));
}

#[test]
fn every_sample_belongs_to_a_family_announced_once() {
    let page = render::render(&snapshot());
    let names: BTreeSet<&str> = families::ALL.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), families::ALL.len(), "a family name twice");
    let mut typed = BTreeSet::new();
    let mut current = "";
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(typed.insert(name.to_owned()), "{name} announced twice");
            current = names.get(name).copied().expect("a known family");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert_eq!(name, current, "{line} outside its family");
        }
    }
    assert_eq!(typed.len(), names.len());
}

/// `docs/metrics.md` lists every family in a table row
/// `| `name` | type | `label`, ... | meaning |`, and nothing else.
#[test]
fn the_docs_list_every_family_with_its_type_and_labels() {
    let docs = include_str!("../../../docs/metrics.md");
    let mut documented = BTreeMap::new();
    for row in docs.lines().filter(|l| l.starts_with("| `warren_")) {
        let cells: Vec<&str> = row.split(" | ").map(str::trim).collect();
        let name = cells[0].trim_start_matches("| ").trim_matches('`');
        let labels: Vec<&str> = cells[2]
            .split(", ")
            .map(|l| l.trim_matches('`'))
            .filter(|l| !l.is_empty() && *l != "none")
            .collect();
        documented.insert(name.to_owned(), (cells[1].to_owned(), labels));
    }
    for family in families::ALL {
        let Some((kind, labels)) = documented.remove(family.name) else {
            panic!("{} is not in docs/metrics.md", family.name);
        };
        let want = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        assert_eq!(kind, want, "{}'s type in the docs", family.name);
        assert_eq!(
            labels, family.labels,
            "{}'s labels in the docs",
            family.name
        );
    }
    assert!(
        documented.is_empty(),
        "documented but not exported: {documented:?}"
    );
}
