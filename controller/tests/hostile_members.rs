//! Members that try more than they may, over the real control server on
//! loopback: a revoked node that leaves to rejoin, pending nodes that write,
//! a flood of pending joins, and writes by a key whose 40-bit ID collides.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::node::TestNode;
use serde_json::{json, Value};
use warren_controller::store::{JoinDecision, JoinRequest, RouteChecks, StoreError};
use warren_proto::control::{ControllerMessage, JoinOutcome, NodeMessage};
use warren_proto::service::{ServiceProto, ServiceSpec};
use warren_proto::{NodeId, NodePrivateKey};

type Lab = common::Served;

impl Lab {
    async fn reusable_key(&self) -> String {
        let (status, made) = self
            .api
            .admin(
                Method::POST,
                &format!("/api/v1/networks/{}/keys", self.net),
                Some(json!({ "reusable": true })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        made["key"].as_str().unwrap().to_string()
    }

    async fn node(&self) -> TestNode {
        TestNode::authenticated(self.running.quic_addr, &self.running.fingerprint).await
    }

    async fn member(&self, node: NodeId) -> (StatusCode, Value) {
        self.api
            .admin(
                Method::GET,
                &format!("/api/v1/networks/{}/members/{node}", self.net),
                None,
            )
            .await
    }

    /// A member authorized by a reusable key, joined straight through the store.
    async fn keyed_member(&self, name: &str) -> warren_proto::NodePublicKey {
        let key = self.reusable_key().await;
        let node = NodePrivateKey::generate().public_key();
        let joined = self
            .running
            .hub
            .store()
            .join(JoinRequest {
                network_id: self.net,
                node_key: node,
                name: name.into(),
                preauth_key: Some(key),
                agent_version: String::new(),
                endpoints: vec![],
            })
            .await
            .unwrap();
        assert_eq!(joined.decision, JoinDecision::Authorized);
        node
    }

    /// The controller's database, opened beside it, for what only a
    /// broken or attacked store would hold.
    async fn database(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match &self._postgres {
            Some(db) => db.url.clone(),
            None => format!(
                "sqlite://{}",
                self._dir.path().join("data/controller.db").display()
            ),
        };
        sqlx::AnyPool::connect(&url).await.unwrap()
    }

    async fn audit_entries(&self) -> Vec<Value> {
        let (_, audit) = self
            .api
            .admin(
                Method::GET,
                &format!("/api/v1/audit?network={}&limit=1000", self.net),
                None,
            )
            .await;
        audit["entries"].as_array().unwrap().clone()
    }

    async fn actions(&self) -> Vec<String> {
        self.audit_entries()
            .await
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The next message that is not a netmap delta, within a second.
async fn next_answer(node: &mut TestNode) -> Option<ControllerMessage> {
    loop {
        match node.try_next(Duration::from_secs(1)).await? {
            ControllerMessage::NetmapDelta(_) | ControllerMessage::Netmap(_) => continue,
            other => return Some(other),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_cannot_leave_and_rejoin_to_undo_it() {
    let lab = common::served().await;
    let key = lab.reusable_key().await;
    let mut node = lab.node().await;
    let (outcome, _) = node.join(lab.net, "mallory", Some(&key)).await;
    assert_eq!(outcome, JoinOutcome::Authorized);
    let id = node.node_id();
    let (status, _) = lab
        .api
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{}/members/{id}/revoke", lab.net),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Leave is refused and says why; the row stays.
    node.write(&NodeMessage::Leave {
        network_id: lab.net,
    })
    .await;
    match next_answer(&mut node).await {
        Some(ControllerMessage::Error { code, .. }) => assert_eq!(code, "revoked"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (status, member) = lab.member(id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(member["state"], "revoked");

    // A reusable key does not bring it back, on this connection or a new one.
    let (outcome, _) = node.join(lab.net, "mallory", Some(&key)).await;
    assert_eq!(
        outcome,
        JoinOutcome::Refused {
            reason: "revoked".into()
        }
    );
    let mut again = TestNode::connect(
        lab.running.quic_addr,
        &lab.running.fingerprint,
        node.key.clone(),
    )
    .await;
    again.handshake(None).await.unwrap();
    let (outcome, _) = again.join(lab.net, "mallory", Some(&key)).await;
    assert!(
        matches!(outcome, JoinOutcome::Refused { .. }),
        "{outcome:?}"
    );
    assert_eq!(lab.member(id).await.1["state"], "revoked");
    assert!(!lab.actions().await.contains(&"member.leave".to_string()));

    // An admin can still delete it.
    let (status, _) = lab
        .api
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{}/members/{id}", lab.net),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_node_holds_nothing_and_writes_nothing() {
    let lab = common::served().await;
    let mut node = lab.node().await;
    let (outcome, map) = node.join(lab.net, "pending-box", None).await;
    assert_eq!(outcome, JoinOutcome::Pending);
    let map = map.unwrap();
    assert!(map.self_node.addresses.is_empty() && map.self_node.fqdn.is_empty());

    node.write(&NodeMessage::Endpoints {
        network_id: lab.net,
        endpoints: vec!["192.0.2.9:51820".parse().unwrap()],
    })
    .await;
    node.write(&NodeMessage::Services {
        network_id: lab.net,
        services: vec![ServiceSpec {
            name: "grafana".into(),
            proto: ServiceProto::Tcp,
            port: 3000,
            txt: vec![],
        }],
    })
    .await;
    match next_answer(&mut node).await {
        Some(ControllerMessage::Error { code, .. }) => assert_eq!(code, "not_authorized"),
        other => panic!("expected a refusal of services, got {other:?}"),
    }
    node.write(&NodeMessage::Routes {
        network_id: lab.net,
        routes: vec!["10.96.0.0/12".parse().unwrap()],
        site: None,
    })
    .await;
    match next_answer(&mut node).await {
        Some(ControllerMessage::Error { code, .. }) => assert_eq!(code, "not_authorized"),
        other => panic!("expected a refusal of routes, got {other:?}"),
    }

    let (_, member) = lab.member(node.node_id()).await;
    assert_eq!(member["name"], json!(null));
    assert_eq!(member["ipv4"], json!(null));
    assert_eq!(member["endpoints"], json!([]));
    assert_eq!(member["online"], false);
    let (_, routes) = lab
        .api
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{}/routes", lab.net),
            None,
        )
        .await;
    assert_eq!(routes["routes"], json!([]), "{routes}");
    // The node's whole trace in the audit log is its join.
    assert_eq!(lab.actions().await, ["network.create", "member.join"]);
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_and_revoked_members_see_no_services_and_no_names() {
    let lab = common::served().await;
    let key = lab.reusable_key().await;
    let mut server = lab.node().await;
    server.join(lab.net, "grafana-box", Some(&key)).await;
    server
        .write(&NodeMessage::Services {
            network_id: lab.net,
            services: vec![ServiceSpec {
                name: "grafana".into(),
                proto: ServiceProto::Tcp,
                port: 3000,
                txt: vec![],
            }],
        })
        .await;
    let mut member = lab.node().await;
    let (_, map) = member.join(lab.net, "member", Some(&key)).await;
    let mut member_map = map.unwrap();
    member
        .wait_for(&mut member_map, |m| !m.dns.services.is_empty())
        .await;

    // Pending: itself only, no services (which name other members).
    let mut pending = lab.node().await;
    let (_, map) = pending.join(lab.net, "outsider", None).await;
    let map = map.unwrap();
    assert!(map.dns.services.is_empty(), "{:?}", map.dns.services);
    assert!(map.peers.is_empty());

    // Revoked: the delta takes the services and the peers away too.
    let id = member.node_id();
    let (status, _) = lab
        .api
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{}/members/{id}/revoke", lab.net),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    member
        .wait_for(&mut member_map, |m| !m.self_node.authorized)
        .await;
    assert!(member_map.dns.services.is_empty());
    assert!(member_map.peers.is_empty());
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_joins_are_capped_per_network() {
    let lab = common::served().await;
    let store = lab.running.hub.store().clone();
    let request = |key: Option<String>| JoinRequest {
        network_id: lab.net,
        node_key: NodePrivateKey::generate().public_key(),
        name: "flood".into(),
        preauth_key: key,
        agent_version: String::new(),
        endpoints: vec![],
    };
    let cap = warren_controller::store::MAX_PENDING;
    for _ in 0..cap {
        assert_eq!(
            store.join(request(None)).await.unwrap().decision,
            JoinDecision::Pending
        );
    }
    let over = store.join(request(None)).await.unwrap();
    assert!(
        matches!(&over.decision, JoinDecision::Refused(r) if r.contains("waiting for approval")),
        "{over:?}"
    );
    // Nobody pending took an address, so a keyed join still gets the first.
    let key = lab.reusable_key().await;
    assert_eq!(
        store.join(request(Some(key))).await.unwrap().decision,
        JoinDecision::Authorized
    );
    let (_, list) = lab
        .api
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{}/members", lab.net),
            None,
        )
        .await;
    let addressed: Vec<&Value> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["ipv4"].is_null())
        .collect();
    assert_eq!(addressed.len(), 1);
    assert_eq!(addressed[0]["ipv4"], "10.147.0.1");
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_writes_by_a_colliding_node_id_are_refused() {
    let lab = common::served().await;
    let store = lab.running.hub.store().clone();
    let victim = lab.keyed_member("victim").await;
    // A 40-bit collision costs about 2^40 key generations; the database
    // stands in for one: the victim's row now sits under the attacker's ID.
    let attacker = NodePrivateKey::generate().public_key();
    let db = lab.database().await;
    sqlx::query("UPDATE members SET node_id = $1 WHERE node_id = $2")
        .bind(NodeId::from_key(&attacker).to_string())
        .bind(NodeId::from_key(&victim).to_string())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    lab.running.hub.expire_snapshots();

    let net = lab.net;
    let not_found = |r: Result<bool, StoreError>| matches!(r, Err(StoreError::NotFound(_)));
    assert!(not_found(store.set_services(net, &attacker, &[]).await));
    assert!(not_found(store.set_presence(net, &attacker, true).await));
    let routes = ["10.96.0.0/12".parse().unwrap()];
    let advertised = store
        .set_advertised_routes(net, &attacker, &routes, None, &RouteChecks::default())
        .await;
    assert!(matches!(advertised, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store.leave(net, &attacker).await,
        Err(StoreError::NotFound(_))
    ));
    let (status, member) = lab.member(NodeId::from_key(&attacker)).await;
    assert_eq!(status, StatusCode::OK, "the victim's row stays");
    assert_eq!(member["public_key"], victim.to_base64());
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_in_a_loop_is_slowed_down() {
    let lab = common::served().await;
    let mut node = lab.node().await;
    let mut limited = None;
    for i in 0..40 {
        node.write(&NodeMessage::Join {
            network_id: lab.net,
            name: format!("loop-{i}"),
            preauth_key: None,
        })
        .await;
        match next_answer(&mut node).await {
            Some(ControllerMessage::JoinResult { .. }) => {}
            Some(ControllerMessage::Error { code, .. }) => {
                limited = Some((i, code));
                break;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let (at, code) = limited.expect("40 joins in a row were all served");
    assert_eq!(code, "rate_limited");
    assert!(at >= 8, "limited after only {at} joins");
    let metrics = lab.running.hub.metrics().render();
    assert!(
        metrics.contains("warren_control_admission_refused_total 1"),
        "{metrics}"
    );
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_node_cannot_flood_the_audit_log() {
    let lab = common::served().await;
    let store = lab.running.hub.store().clone();
    let node = lab.keyed_member("flapper").await;
    for i in 0..200u16 {
        let endpoint = format!("192.0.2.1:{}", 1000 + i).parse().unwrap();
        assert!(store
            .set_endpoints(lab.net, &node, &[endpoint])
            .await
            .unwrap());
        store
            .set_presence(lab.net, &node, i % 2 == 0)
            .await
            .unwrap();
    }
    // The state is current even where the log folded entries.
    let member = store
        .get_member(lab.net, NodeId::from_key(&node))
        .await
        .unwrap();
    assert_eq!(member.endpoints[0].port(), 1199);
    let entries = lab.audit_entries().await;
    let of = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert!(of("member.endpoints") <= 21, "{}", of("member.endpoints"));
    assert!(of("member.online") + of("member.offline") <= 42);
    assert!(of("member.endpoints") >= 20);
    let (_, report) = lab
        .api
        .admin(Method::GET, "/api/v1/audit/verify", None)
        .await;
    assert_eq!(report["ok"], true);

    // Once the budget refills, the next entry says how many it stands for.
    let db = lab.database().await;
    sqlx::query("UPDATE audit_node_budget SET at_unix = at_unix - 3600")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let endpoint = "192.0.2.1:9".parse().unwrap();
    store
        .set_endpoints(lab.net, &node, &[endpoint])
        .await
        .unwrap();
    let last = lab.audit_entries().await.last().unwrap().clone();
    assert_eq!(last["action"], "member.endpoints");
    // 200 changes, 20 written: 180 folded (a second boundary crossed
    // during the loop may have refilled a token or two).
    let folded = last["after"]["coalesced"].as_i64().unwrap_or(0);
    assert!((175..=180).contains(&folded), "{last}");
    lab.running.shutdown().await;
}

/// Every candidate a peer could be made to probe that it should not.
fn hostile_endpoints() -> Vec<std::net::SocketAddr> {
    [
        "127.0.0.1:22",
        "[::1]:22",
        "0.0.0.0:53",
        "192.0.2.1:0",
        "169.254.169.254:80",
        "[fe80::1]:51820",
        "224.0.0.251:5353",
        "255.255.255.255:67",
        "10.147.0.1:51820",
    ]
    .iter()
    .map(|e| e.parse().unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_call_me_maybe_carry_only_probeable_addresses_at_a_bounded_rate() {
    let lab = common::served().await;
    let key = lab.reusable_key().await;
    let mut a = lab.node().await;
    a.join(lab.net, "a", Some(&key)).await;
    let mut b = lab.node().await;
    b.join(lab.net, "b", Some(&key)).await;
    let good: std::net::SocketAddr = "192.0.2.7:51820".parse().unwrap();

    let mut reported = hostile_endpoints();
    reported.push(good);
    a.write(&NodeMessage::Endpoints {
        network_id: lab.net,
        endpoints: reported.clone(),
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, member) = lab.member(a.node_id()).await;
        if member["endpoints"] == json!([good.to_string()]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored endpoints: {}",
            member["endpoints"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Call-me-maybe: only the probeable candidate reaches b, and a
    // request with none at all reaches it not at all.
    let b_key = b.key.public_key();
    let call = |endpoints: Vec<std::net::SocketAddr>| NodeMessage::CallMeMaybe {
        network_id: lab.net,
        peer: b_key,
        endpoints,
        nat: None,
    };
    a.write(&call(hostile_endpoints())).await;
    a.write(&call(reported)).await;
    let mut delivered = Vec::new();
    while let Some(message) = b.try_next(Duration::from_millis(500)).await {
        if let ControllerMessage::CallMeMaybe { endpoints, .. } = message {
            delivered.push(endpoints);
        }
    }
    assert_eq!(delivered, vec![vec![good]]);

    // A flood: b hears a few, a hears that it must slow down.
    for _ in 0..50 {
        a.write(&call(vec![good])).await;
    }
    let mut heard = 0;
    while let Some(message) = b.try_next(Duration::from_millis(500)).await {
        if let ControllerMessage::CallMeMaybe { .. } = message {
            heard += 1;
        }
    }
    assert!(heard <= 5, "b was asked to probe {heard} times");
    let mut slowed = false;
    while let Some(message) = a.try_next(Duration::from_millis(200)).await {
        if let ControllerMessage::Error { code, .. } = message {
            slowed |= code == "rate_limited";
        }
    }
    assert!(slowed, "a was never told to slow down");
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_handshake_load_clients_prove_their_address_with_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let running = warren_controller::server::start(warren_controller::server::ServerOptions {
        // Every handshake counts as "under load".
        retry_above_handshakes: 0,
        ..warren_controller::server::ServerOptions::loopback(dir.path().join("data"))
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let node = TestNode::authenticated(running.quic_addr, &running.fingerprint).await;
        node.connection.close(0u32.into(), b"bye");
    }
    let metrics = running.hub.metrics().render();
    assert!(
        metrics.contains("warren_control_quic_retries_total 3"),
        "{metrics}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_can_report_only_the_uses_of_its_own_grants_and_each_once() {
    let lab = common::served().await;
    let key = lab.reusable_key().await;
    let mut ana = lab.node().await;
    let mut bo = lab.node().await;
    let mut cy = lab.node().await;
    for (node, name) in [(&mut ana, "ana"), (&mut bo, "bo"), (&mut cy, "cy")] {
        let (outcome, _) = node.join(lab.net, name, Some(&key)).await;
        assert_eq!(outcome, JoinOutcome::Authorized);
    }
    let (status, grant) = lab
        .api
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{}/grants", lab.net),
            Some(json!({ "from": "ana", "to": "bo", "ports": ["tcp:22"], "for": "1h", "reason": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let id = grant["id"].as_str().unwrap().to_string();
    let used = |grant: &str| NodeMessage::GrantUsed {
        network_id: lab.net,
        grant: grant.to_string(),
    };
    // cy is not party to the grant; "zz" and a long string are no grant ids.
    for (message, what) in [
        (used(&id), "not cy's grant"),
        (used("zz"), "not an id"),
        (used(&"a".repeat(4096)), "far too long"),
        (used("00000000"), "no such grant"),
    ] {
        cy.write(&message).await;
        match next_answer(&mut cy).await {
            Some(ControllerMessage::Error { .. }) => {}
            other => panic!("{what}: expected an error, got {other:?}"),
        }
    }
    // ana and bo: once each, however often they say it.
    for node in [&mut ana, &mut bo] {
        for _ in 0..3 {
            node.write(&used(&id)).await;
        }
    }
    let mut uses = 0;
    for _ in 0..50 {
        uses = lab
            .actions()
            .await
            .iter()
            .filter(|a| *a == "grant.use")
            .count();
        if uses == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(uses, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entries = lab.audit_entries().await;
    let users: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "grant.use")
        .map(|e| e["after"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 2, "{entries:?}");
    assert!(users.contains(&"ana") && users.contains(&"bo"), "{users:?}");
    lab.running.shutdown().await;
}
