//! The daemon below the namespace labs: networks driven through `Managed`
//! with fake data planes, a fake routing system and a fake resolver, and
//! what each step leaves in them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use warren_proto::local_api::{EffectState, NetworkState, NetworkStatus};
use warren_proto::netmap::Netmap;
use warren_proto::NodePrivateKey;

use super::super::network::fake::{Death, FakePlanes};
use super::super::network::{DataPlanes, NetworkEvent};
use super::super::supervisor::MAX_RESTARTS;
use super::*;
use crate::dns::os::fake::FakeResolver;
use crate::dns::{Dns, DnsSettings};
use crate::routes::os::fake::FakeRoutes;
use crate::routes::plan::tests::{accepting, id, map, net, peer};
use crate::routes::settings::SettingsFile;
use crate::routes::Routes;

/// A daemon on fakes, with one network joined (not yet up).
struct Rig {
    managed: Managed,
    planes: FakePlanes,
    routes: FakeRoutes,
    resolver: FakeResolver,
    net_events: mpsc::UnboundedReceiver<(String, NetworkEvent)>,
    _control_events: mpsc::UnboundedReceiver<super::super::control::ControlEvent>,
    stub_port: u16,
    _dir: tempfile::TempDir,
}

/// A free port on a loopback address that stands in for an overlay one.
fn free_port(ip: &str) -> u16 {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let socket = std::net::UdpSocket::bind((ip, 0)).unwrap();
    socket.local_addr().unwrap().port()
}

const STUB_IP: &str = "127.74.0.1";

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    SettingsFile::new(dir.path()).save(&accepting()).unwrap();
    let (events_tx, control_events) = mpsc::unbounded_channel();
    let (net_tx, net_events) = mpsc::unbounded_channel();
    let key = NodePrivateKey::from_bytes([1; 32]);
    let mut managed = Managed::new(state, key, 51820, None, events_tx, net_tx);
    let planes = FakePlanes::default();
    managed.planes = Arc::new(planes.clone());
    let routes = FakeRoutes::default();
    managed.routes = Routes::start_on(dir.path(), Arc::new(routes.clone())).await;
    let resolver = FakeResolver::new("nameserver 127.0.0.53\n", true);
    let stub_port = free_port(STUB_IP);
    let settings = DnsSettings {
        stub_port,
        ..DnsSettings::default()
    };
    managed.dns = Dns::start_on(settings, dir.path(), Arc::new(resolver.clone()));
    managed.nets.insert(
        id(),
        Joined::connecting(JoinedNetwork {
            network_id: id(),
            // Nothing listens there: the connection made by `up` and `leave` fails.
            controller: "127.0.0.1:9".into(),
            controllers: Vec::new(),
            fingerprint: Some("00".repeat(32)),
            name: "me".into(),
            preauth_key: None,
            interface: "warren0".into(),
            listen_port: 51820,
            allow_zones: Vec::new(),
            down: false,
        }),
    );
    Rig {
        managed,
        planes,
        routes,
        resolver,
        net_events,
        _control_events: control_events,
        stub_port,
        _dir: dir,
    }
}

/// A map with one peer that serves 10.96.0.0/12.
fn routed_map() -> Netmap {
    map(vec![peer(2, &["10.96.0.0/12"])], &[])
}

/// The same on a loopback address, so that the DNS stub binds without
/// root. Validation refuses loopback, so it goes in through `apply`.
fn loopback_map() -> Netmap {
    let mut m = routed_map();
    m.self_node.addresses = vec![format!("{STUB_IP}/16").parse().unwrap()];
    m
}

impl Rig {
    async fn status(&self) -> NetworkStatus {
        self.managed.network_status(&id()).await
    }

    /// Kills the data plane and hands the daemon the death report.
    async fn kill(&mut self, how: Death) {
        assert!(
            self.planes.kill(&id().to_string(), how),
            "no data plane runs"
        );
        loop {
            let (label, event) =
                tokio::time::timeout(Duration::from_secs(5), self.net_events.recv())
                    .await
                    .expect("timed out waiting for the death report")
                    .expect("events channel open");
            let died = matches!(event, NetworkEvent::Died { .. });
            self.managed.handle_network_event(&label, event).await;
            if died {
                return;
            }
        }
    }

    /// Runs the restarts due within `after`.
    async fn restart_after(&mut self, after: Duration) {
        self.managed.restart_due(Instant::now() + after).await;
    }

    fn effects_gone(&self) {
        let r = self.routes.state();
        assert!(r.table.is_empty() && r.rules.is_empty(), "{:?}", r.calls);
        assert!(
            self.resolver.state().links.is_empty(),
            "{:?}",
            self.resolver.state().calls
        );
    }

    fn effects_in_place(&self) {
        let table = self.routes.state().table.clone();
        assert_eq!(
            table.get(&net("10.96.0.0/12")).map(String::as_str),
            Some("warren0")
        );
    }
}

#[tokio::test]
async fn a_netmap_applies_peers_routes_and_dns_through_the_fakes() {
    let mut rig = rig().await;
    rig.managed.apply(loopback_map()).await;
    let label = id().to_string();
    // A status report goes through the data plane's queue after the peers.
    let status = rig.status().await;
    {
        let planes = rig.planes.state();
        let plane = &planes.planes[&label];
        assert_eq!(plane.starts.len(), 1);
        assert_eq!(plane.starts[0].interface, "warren0");
        // The peer's address and the route it serves both lead to it.
        assert_eq!(plane.peers.len(), 1);
        assert!(plane.peers[0].allowed_ips.contains(&net("10.96.0.0/12")));
    }
    rig.effects_in_place();
    assert!(
        rig.routes.state().filter.is_some(),
        "a route comes with its filter"
    );
    let stub: std::net::SocketAddr = format!("{STUB_IP}:{}", rig.stub_port).parse().unwrap();
    assert_eq!(
        rig.resolver.state().links.get("warren0"),
        Some(&(stub, "prod.warren.internal".to_owned()))
    );
    assert_eq!(status.state, NetworkState::Authorized);
    assert_eq!(status.dns.state, EffectState::Applied, "{:?}", status.dns);
    assert_eq!(
        status.routes.state,
        EffectState::Applied,
        "{:?}",
        status.routes
    );
    assert_eq!(status.interface.as_deref(), Some("warren0"));
    assert!(status.data_plane.is_none());

    // The same map again touches neither the data plane nor the system.
    let (route_calls, dns_calls) = (
        rig.routes.state().calls.len(),
        rig.resolver.state().calls.len(),
    );
    rig.managed.apply(loopback_map()).await;
    assert_eq!(rig.planes.starts(&label), 1);
    assert_eq!(rig.routes.state().calls.len(), route_calls);
    assert_eq!(rig.resolver.state().calls.len(), dns_calls);

    rig.managed.shutdown().await;
    rig.effects_gone();
    assert!(!rig.planes.running(&label));
}

#[tokio::test]
async fn a_dying_data_plane_is_reported_undone_and_restarted() {
    let mut rig = rig().await;
    rig.managed.apply(loopback_map()).await;
    rig.effects_in_place();
    rig.kill(Death::Panic).await;

    let status = rig.status().await;
    let health = status
        .data_plane
        .clone()
        .expect("the death shows in status");
    assert_eq!(health.deaths, 1);
    assert!(health.last_error.contains("told to panic"), "{health:?}");
    assert!(health.restart_in_secs.is_some() && !health.gave_up);
    assert_eq!(
        health.restart_in_secs,
        Some(1),
        "the first backoff, rounded up"
    );
    assert_eq!(status.message, None, "data_plane says it");
    assert!(status.interface.is_none(), "no data plane, no interface");
    rig.effects_gone();
    let problems =
        crate::cli::health::problems(&rig.managed.status().await, Duration::from_secs(3600));
    assert!(
        problems.iter().any(|p| p.contains("data plane died")),
        "{problems:?}"
    );

    // Not before its backoff; then from the netmap held.
    rig.restart_after(Duration::ZERO).await;
    assert_eq!(rig.planes.starts(&id().to_string()), 1);
    assert!(rig.managed.next_restart().is_some());
    rig.restart_after(Duration::from_secs(2)).await;
    assert_eq!(rig.planes.starts(&id().to_string()), 2);
    assert!(rig.planes.running(&id().to_string()));
    rig.effects_in_place();
    assert!(!rig.resolver.state().links.is_empty());
    let status = rig.status().await;
    assert_eq!(status.state, NetworkState::Authorized);
    assert_eq!(status.message, None);
    let health = status.data_plane.expect("the death stays on record");
    assert_eq!((health.deaths, health.restart_in_secs), (1, None));
    assert!(rig.managed.next_restart().is_none());
}

#[tokio::test]
async fn a_data_plane_that_keeps_dying_fails_the_network_until_down_and_up() {
    let mut rig = rig().await;
    rig.managed.accept(routed_map(), true, true).await;
    assert_eq!(rig.status().await.state, NetworkState::Authorized);
    for round in 0..MAX_RESTARTS {
        rig.kill(if round % 2 == 0 {
            Death::Error
        } else {
            Death::Panic
        })
        .await;
        rig.restart_after(Duration::from_secs(60)).await;
    }
    rig.kill(Death::Error).await;
    let status = rig.status().await;
    assert_eq!(status.state, NetworkState::Failed);
    let health = status.data_plane.clone().unwrap();
    assert!(health.gave_up && health.restart_in_secs.is_none());
    assert_eq!(health.deaths, MAX_RESTARTS + 1);
    assert!(health.last_error.contains("vanished"), "{health:?}");
    assert!(rig.managed.next_restart().is_none());
    rig.effects_gone();
    let problems =
        crate::cli::health::problems(&rig.managed.status().await, Duration::from_secs(3600));
    assert!(
        problems.iter().any(|p| p.contains("failed")),
        "{problems:?}"
    );
    // A newer netmap does not bring it back by itself.
    let mut newer = routed_map();
    newer.version += 1;
    rig.managed.accept(newer, true, true).await;
    assert!(!rig.planes.running(&id().to_string()));
    assert_eq!(rig.status().await.state, NetworkState::Failed);

    rig.managed.down(id()).await.unwrap();
    rig.managed.up(id()).await.unwrap();
    let status = rig.status().await;
    assert_eq!(status.state, NetworkState::Authorized);
    assert!(status.data_plane.is_none(), "up starts afresh");
    assert!(rig.planes.running(&id().to_string()));
    rig.effects_in_place();
}

#[tokio::test]
async fn a_restart_that_cannot_start_counts_as_a_death() {
    let mut rig = rig().await;
    rig.managed.apply(loopback_map()).await;
    rig.kill(Death::Error).await;
    rig.planes.state().refuse_start = Some("no /dev/net/tun".into());
    rig.restart_after(Duration::from_secs(60)).await;
    let health = rig.status().await.data_plane.unwrap();
    assert_eq!(health.deaths, 2);
    assert!(health.last_error.contains("no /dev/net/tun"), "{health:?}");
    assert!(health.restart_in_secs.is_some());
    rig.planes.state().refuse_start = None;
    rig.restart_after(Duration::from_secs(60)).await;
    assert!(rig.planes.running(&id().to_string()));
    rig.effects_in_place();
}

#[tokio::test]
async fn a_late_death_report_of_a_replaced_data_plane_is_ignored() {
    let mut rig = rig().await;
    rig.managed.apply(loopback_map()).await;
    let old = rig.managed.nets[&id()].runner.as_ref().unwrap().instance;
    rig.kill(Death::Error).await;
    rig.restart_after(Duration::from_secs(60)).await;
    rig.managed
        .handle_network_event(
            &id().to_string(),
            NetworkEvent::Died {
                instance: old,
                error: "late".into(),
            },
        )
        .await;
    assert!(rig.planes.running(&id().to_string()));
    assert_eq!(rig.status().await.data_plane.unwrap().deaths, 1);
}

#[tokio::test]
async fn down_up_and_leave_undo_their_effects() {
    let mut rig = rig().await;
    rig.managed.accept(routed_map(), true, true).await;
    let label = id().to_string();
    rig.effects_in_place();

    rig.managed.down(id()).await.unwrap();
    assert!(!rig.planes.running(&label));
    rig.effects_gone();
    assert!(rig.routes.state().filter.is_none());
    assert_eq!(rig.status().await.state, NetworkState::Down);

    rig.managed.up(id()).await.unwrap();
    assert!(rig.planes.running(&label));
    assert_eq!(rig.planes.starts(&label), 2);
    rig.effects_in_place();

    rig.managed.leave(id()).await.unwrap();
    assert!(!rig.planes.running(&label));
    rig.effects_gone();
    assert!(rig.managed.nets.is_empty());
    assert!(rig.managed.status().await.networks.is_empty());
}

#[tokio::test]
async fn a_revoked_membership_withdraws_the_data_plane_dns_and_routes() {
    let mut rig = rig().await;
    rig.managed.apply(loopback_map()).await;
    rig.effects_in_place();
    assert!(!rig.resolver.state().links.is_empty());
    let mut revoked = loopback_map();
    revoked.version += 1;
    revoked.self_node.authorized = false;
    rig.managed.apply(revoked).await;
    let status = rig.status().await;
    assert_eq!(status.state, NetworkState::Refused);
    assert!(!rig.planes.running(&id().to_string()));
    rig.effects_gone();
    assert!(rig.routes.state().filter.is_none());
    // Fail closed: nothing comes back from the cache.
    assert!(rig.managed.state.netmap(&id()).is_none());
}

#[tokio::test]
async fn the_static_networks_data_plane_is_restarted_with_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let (events_tx, _control_events) = mpsc::unbounded_channel();
    let (net_tx, mut net_events) = mpsc::unbounded_channel();
    let key = NodePrivateKey::from_bytes([1; 32]);
    let planes = FakePlanes::default();
    let spec = crate::daemon::network::NetworkSpec {
        label: "static".into(),
        interface: "wg-static".into(),
        mtu: 1420,
        addresses: vec![net("10.200.0.1/24")],
        listen_port: 51820,
        offload: false,
        system_routes: true,
        hard_nat_probing: false,
    };
    let handle = planes.start(spec, key.clone(), net_tx.clone()).unwrap();
    let peer_key = NodePrivateKey::from_bytes([2; 32]).public_key();
    let peers = vec![warren_engine::PeerConfig::fixed(
        peer_key,
        Some("192.0.2.2:51820".parse().unwrap()),
        vec![net("10.200.0.2/32")],
        None,
    )];
    handle.set_peers(peers.clone()).await;
    let state = StateDir::open(dir.path()).unwrap();
    let mut managed = Managed::new(state, key, 51821, Some(handle), events_tx, net_tx);
    managed.planes = Arc::new(planes.clone());
    managed.static_peers = peers;

    assert!(planes.kill("static", Death::Panic));
    let (label, event) = tokio::time::timeout(Duration::from_secs(5), net_events.recv())
        .await
        .unwrap()
        .unwrap();
    managed.handle_network_event(&label, event).await;
    let status = managed.status().await;
    let shown = &status.networks[0];
    assert_eq!(shown.state, NetworkState::Static);
    assert_eq!(shown.addresses, vec![net("10.200.0.1/24")]);
    assert!(shown
        .data_plane
        .as_ref()
        .is_some_and(|h| h.restart_in_secs.is_some()));

    managed
        .restart_due(Instant::now() + Duration::from_secs(2))
        .await;
    assert_eq!(planes.starts("static"), 2);
    let status = managed.status().await;
    assert_eq!(status.networks[0].interface.as_deref(), Some("wg-static"));
    assert_eq!(planes.state().planes["static"].peers.len(), 1);
    assert_eq!(
        status.networks[0].data_plane.as_ref().map(|h| h.deaths),
        Some(1)
    );
}

#[tokio::test]
async fn a_dead_controller_connection_task_is_reported_and_the_network_stays_up() {
    let mut rig = rig().await;
    rig.managed.apply(loopback_map()).await;
    let died = |deaths, gave_up| ControlEvent::TaskDied {
        controller: "127.0.0.1:9".into(),
        error: "panicked: boom".into(),
        deaths,
        gave_up,
    };
    rig.managed.handle_control(died(1, false)).await;

    let status = rig.status().await;
    assert_eq!(
        status.state,
        NetworkState::Authorized,
        "peers still reachable"
    );
    assert!(rig.planes.running(&id().to_string()));
    assert_eq!(rig.planes.starts(&id().to_string()), 1, "not restarted");
    let error = status
        .controller_error
        .expect("the death is the controller's error");
    assert_eq!(
        error.kind,
        warren_proto::local_api::ControllerErrorKind::TaskFailed
    );
    assert!(error.message.contains("panicked: boom") && error.message.contains("started again"));
    let full = rig.managed.status().await;
    let failure = &full.task_failures[0];
    assert_eq!(failure.task, "control 127.0.0.1:9");
    assert_eq!((failure.deaths, failure.gave_up), (1, false));
    let problems = crate::cli::health::problems(&full, Duration::from_secs(3600));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("agent task control 127.0.0.1:9 died 1 time")),
        "{problems:?}"
    );

    rig.managed.handle_control(died(6, true)).await;
    let full = rig.managed.status().await;
    assert_eq!(full.task_failures.len(), 1, "one entry per connection");
    assert!(full.task_failures[0].gave_up);
    let error = rig.status().await.controller_error.unwrap();
    assert!(
        error.message.contains("not started again"),
        "{}",
        error.message
    );
}
