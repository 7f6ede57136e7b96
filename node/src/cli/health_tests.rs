//! Tests of the health judgement and the summary, and the status
//! fixtures the `status` tests share.

use super::*;
use warren_proto::local_api::{ControllerError, ControllerErrorKind, Counters};

/// A joined network of network ID 8056c2e21c000001 in `state`.
pub fn joined(state: NetworkState, connected: bool) -> NetworkStatus {
    let mut net: NetworkStatus = serde_json::from_value(serde_json::json!({
        "id": "8056c2e21c000001", "name": "lab", "controller": "192.0.2.10:7443",
        "controller_connected": connected, "state": "authorized", "message": null,
        "fqdn": "a.lab.warren.internal", "interface": "warren0", "listen_port": 51820,
        "addresses": ["10.147.0.1/16"], "mtu": 1420, "offload": true, "netmap_version": 3,
        "counters": serde_json::to_value(Counters::default()).unwrap(),
    }))
    .unwrap();
    net.state = state;
    net.fingerprint = Some("ab".repeat(32));
    net.dns = Effect::applied();
    if !connected {
        net.controller_down_secs = Some(45);
        net.controller_error = Some(ControllerError {
            kind: ControllerErrorKind::Unreachable,
            message: "timed out".into(),
        });
    }
    net
}

pub fn peer(name: &str, path: PathKind, online: Option<bool>) -> PeerStatus {
    PeerStatus {
        network: "8056c2e21c000001".into(),
        public_key: warren_proto::NodePrivateKey::generate().public_key(),
        node_id: None,
        name: Some(name.into()),
        online,
        addresses: vec!["10.147.0.2/32".parse().unwrap()],
        endpoint: Some("192.0.2.2:51820".into()),
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
        persistent_keepalive: Some(25),
        path,
        latency_ms: None,
        counters: Default::default(),
    }
}

pub fn status_of(networks: Vec<NetworkStatus>, peers: Vec<PeerStatus>) -> Status {
    let key = warren_proto::NodePrivateKey::generate().public_key();
    Status {
        public_key: key,
        node_id: warren_proto::NodeId::from_key(&key),
        version: "0.1.0".into(),
        networks,
        peers,
        counters: Counters::default(),
        task_failures: Vec::new(),
    }
}

const GRACE: Duration = Duration::from_secs(30);

#[test]
fn an_authorized_network_with_its_controller_is_healthy() {
    let status = status_of(vec![joined(NetworkState::Authorized, true)], vec![]);
    assert_eq!(problems(&status, GRACE), Vec::<String>::new());
}

#[test]
fn a_controller_away_counts_only_past_the_grace() {
    let status = status_of(vec![joined(NetworkState::Authorized, false)], vec![]);
    assert!(problems(&status, Duration::from_secs(60)).is_empty());
    let found = problems(&status, GRACE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("controller 192.0.2.10:7443 unreachable for 45s: timed out"),
        "{found:?}"
    );
}

#[test]
fn failed_states_and_effects_are_problems_and_down_is_not() {
    for state in [
        NetworkState::Refused,
        NetworkState::Conflict,
        NetworkState::Expired,
        NetworkState::Stale,
        NetworkState::Pending,
        NetworkState::Failed,
    ] {
        let status = status_of(vec![joined(state, true)], vec![]);
        assert_eq!(problems(&status, GRACE).len(), 1, "{state:?}");
    }
    // Taken down on purpose, and not asking its controller.
    let status = status_of(vec![joined(NetworkState::Down, false)], vec![]);
    assert!(problems(&status, GRACE).is_empty());

    let mut net = joined(NetworkState::Authorized, true);
    net.dns = Effect::failed("resolvectl: no such link");
    net.routes = Effect::failed("nft: not found");
    let found = problems(&status_of(vec![net], vec![]), GRACE);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("DNS not applied: resolvectl"),
        "{found:?}"
    );
    assert!(found[1].contains("routes not applied: nft"), "{found:?}");
}

#[test]
fn a_data_plane_that_died_lately_or_for_good_is_a_problem() {
    use warren_proto::local_api::{DataPlaneHealth, TaskFailure};
    let health = |last_death_secs, restart_in_secs, gave_up| DataPlaneHealth {
        deaths: 2,
        last_error: "TUN read failed".into(),
        last_death_secs,
        restart_in_secs,
        gave_up,
    };
    let with = |h: DataPlaneHealth| {
        let mut net = joined(NetworkState::Authorized, true);
        net.data_plane = Some(h);
        problems(&status_of(vec![net], vec![]), GRACE)
    };
    let found = with(health(3, Some(1), false));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].contains("died 3s ago (TUN read failed); restart in 1s"),
        "{found:?}"
    );
    let found = with(health(60, None, false));
    assert!(found[0].contains("was restarted (2 death(s))"), "{found:?}");
    assert!(
        with(health(RECENT_DEATH.as_secs(), None, false)).is_empty(),
        "long ago"
    );
    let mut failed = joined(NetworkState::Failed, true);
    failed.message = Some("the data plane died 6 times".into());
    failed.data_plane = Some(health(1, None, true));
    let found = problems(&status_of(vec![failed.clone()], vec![]), GRACE);
    assert_eq!(
        found,
        vec!["network 8056c2e21c000001: failed: the data plane died 6 times"]
    );
    let line = data_plane_line(&failed).unwrap();
    assert!(
        line.contains("died 2 time(s), last 1s ago: TUN read failed (not restarted)"),
        "{line}"
    );

    let mut status = status_of(vec![], vec![]);
    status.task_failures.push(TaskFailure {
        task: "metrics".into(),
        error: "stopped serving".into(),
        deaths: 1,
        last_death_secs: 5,
        gave_up: false,
    });
    let found = problems(&status, GRACE);
    assert!(
        found[0].contains("agent task metrics died 1 time(s), 5s ago: stopped serving"),
        "{found:?}"
    );
}

#[test]
fn paths_are_counted_by_kind_and_offline_peers_apart() {
    let peers = [
        peer("a", PathKind::Direct, Some(true)),
        peer("b", PathKind::Direct, None),
        peer("c", PathKind::Relay, Some(true)),
        peer("d", PathKind::None, Some(false)),
        peer("e", PathKind::None, Some(true)),
    ];
    assert_eq!(
        path_counts(peers.iter()),
        PathCounts {
            direct: 2,
            relayed: 1,
            unreachable: 1,
            offline: 1
        }
    );
}

#[test]
fn the_summary_says_why_the_controller_is_away_and_what_down_keeps() {
    let now = OffsetDateTime::UNIX_EPOCH;
    let text = network_summary(&joined(NetworkState::Authorized, false), &[], now);
    assert!(
        text.contains("controller 192.0.2.10:7443 not connected for 45s: timed out"),
        "{text}"
    );
    assert!(
        text.contains("this node a.lab.warren.internal (10.147.0.1/16) on warren0"),
        "{text}"
    );
    let mut down = joined(NetworkState::Down, false);
    down.interface = None;
    let text = network_summary(&down, &[], now);
    assert!(text.contains("warren up 8056c2e21c000001"), "{text}");
    assert!(
        text.contains("this node a.lab.warren.internal (10.147.0.1/16)\n"),
        "{text}"
    );
    assert!(text.contains("not asked while down"), "{text}");
    assert!(!text.contains("peers "), "{text}");
}

#[test]
fn the_sign_in_expiry_is_shown_and_warned_about_in_its_last_week() {
    let now = OffsetDateTime::parse(
        "2026-12-05T12:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let net = "8056c2e21c000001";
    let far = expiry_line("2027-06-01T12:00:00Z", net, now).unwrap();
    assert_eq!(far, "sign-in expires 2027-06-01T12:00:00Z");
    let soon = expiry_line("2026-12-08T12:00:00Z", net, now).unwrap();
    assert!(
        soon.starts_with("warning: the sign-in expires in 3days"),
        "{soon}"
    );
    assert!(soon.contains("warren login 8056c2e21c000001"), "{soon}");
    let gone = expiry_line("2026-12-05T11:00:00Z", net, now).unwrap();
    assert!(gone.starts_with("sign-in expired"), "{gone}");
    assert_eq!(expiry_line("not a time", net, now), None);
}
