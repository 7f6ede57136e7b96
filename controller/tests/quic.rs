//! The real control server on loopback with test nodes speaking the proto:
//! handshake, joins, netmaps and deltas, revocation, bad proofs and frames.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::node::TestNode;
use serde_json::json;
use warren_proto::control::{ControllerMessage, JoinOutcome, NatHint, NodeMessage};
use warren_proto::NodePrivateKey;

type Lab = common::Served;

async fn lab() -> Lab {
    common::served().await
}

impl Lab {
    async fn key(&self, reusable: bool) -> String {
        let (status, made) = self
            .api
            .admin(
                Method::POST,
                &format!("/api/v1/networks/{}/keys", self.net),
                Some(json!({ "reusable": reusable })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        made["key"].as_str().unwrap().to_string()
    }

    async fn node(&self) -> TestNode {
        TestNode::authenticated(self.running.quic_addr, &self.running.fingerprint).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_get_netmaps_and_deltas_and_revocation_removes_them() {
    let lab = lab().await;
    let key = lab.key(true).await;
    let mut a = lab.node().await;
    let (outcome, map) = a.join(lab.net, "alpha", Some(&key)).await;
    assert_eq!(outcome, JoinOutcome::Authorized);
    let mut map_a = map.unwrap();
    assert!(map_a.self_node.authorized);
    assert_eq!(map_a.self_node.name, "alpha");
    assert_eq!(map_a.self_node.fqdn, "alpha.prod.warren.internal");
    assert_eq!(map_a.self_node.addresses[0].to_string(), "10.147.0.1/16");
    assert_eq!(
        map_a.self_node.addresses[1].to_string(),
        format!("{}/64", lab.net.ula_address(&a.node_id()))
    );
    assert!(map_a.peers.is_empty());
    assert_eq!(map_a.settings.mtu, 1420);

    // B joins: A's map gains B, online, with its endpoints.
    let mut b = lab.node().await;
    let endpoints = vec!["192.0.2.10:40000".parse().unwrap()];
    b.write(&NodeMessage::Endpoints {
        network_id: lab.net,
        endpoints: endpoints.clone(),
    })
    .await;
    let (outcome, map) = b.join(lab.net, "beta", Some(&key)).await;
    assert_eq!(outcome, JoinOutcome::Authorized);
    let mut map_b = map.unwrap();
    assert_eq!(map_b.self_node.addresses[0].to_string(), "10.147.0.2/16");
    let b_id = b.node_id();
    let before = map_a.version;
    a.wait_for(&mut map_a, |m| {
        m.peers
            .iter()
            .any(|p| p.node_id == b_id && p.online && !p.endpoints.is_empty())
    })
    .await;
    assert!(map_a.version > before);
    let peer = &map_a.peers[0];
    assert_eq!(peer.public_key, b.key.public_key());
    assert_eq!(peer.addresses[0].to_string(), "10.147.0.2/32");
    assert_eq!(peer.addresses[1].prefix_len(), 128);
    assert_eq!(peer.endpoints, endpoints);
    b.wait_for(&mut map_b, |m| m.peers.len() == 1).await;

    // Revoke B through the API: A's map loses B, B's map empties.
    let path = format!("/api/v1/networks/{}/members/{}/revoke", lab.net, b_id);
    let (status, _) = lab.api.admin(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    a.wait_for(&mut map_a, |m| m.peers.is_empty()).await;
    b.wait_for(&mut map_b, |m| {
        !m.self_node.authorized && m.peers.is_empty() && m.self_node.addresses.is_empty()
    })
    .await;
    // And B cannot come back.
    let (outcome, _) = b.join(lab.net, "beta", Some(&key)).await;
    assert_eq!(
        outcome,
        JoinOutcome::Refused {
            reason: "revoked".into()
        }
    );

    // A leaves: its member record is gone.
    a.write(&NodeMessage::Leave {
        network_id: lab.net,
    })
    .await;
    let members = format!("/api/v1/networks/{}/members", lab.net);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, list) = lab.api.admin(Method::GET, &members, None).await;
        if list["members"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "leave not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_members_get_an_empty_map_until_authorized_and_presence_is_audited() {
    let lab = lab().await;
    let mut a = lab.node().await;
    let (outcome, map) = a.join(lab.net, "Pending Box", None).await;
    assert_eq!(outcome, JoinOutcome::Pending);
    let mut map = map.unwrap();
    assert!(!map.self_node.authorized);
    assert!(map.self_node.addresses.is_empty() && map.peers.is_empty());
    assert_eq!(map.self_node.name, "pending-box");

    let path = format!(
        "/api/v1/networks/{}/members/{}/authorize",
        lab.net,
        a.node_id()
    );
    let (status, _) = lab.api.admin(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    a.wait_for(&mut map, |m| {
        m.self_node.authorized && m.self_node.addresses.len() == 2
    })
    .await;

    let (_, member) = lab
        .api
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{}/members/{}", lab.net, a.node_id()),
            None,
        )
        .await;
    assert_eq!(member["online"], true);
    assert_eq!(member["agent_version"], "test-1");
    a.connection.close(0u32.into(), b"bye");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, audit) = lab
            .api
            .admin(
                Method::GET,
                &format!("/api/v1/audit?network={}", lab.net),
                None,
            )
            .await;
        let actions: Vec<String> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect();
        if actions.contains(&"member.offline".to_string()) {
            assert_eq!(
                actions,
                // A pending node writes no presence: it comes online
                // once authorized.
                [
                    "network.create",
                    "member.join",
                    "member.authorize",
                    "member.online",
                    "member.offline"
                ]
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{actions:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, report) = lab
        .api
        .admin(Method::GET, "/api/v1/audit/verify", None)
        .await;
    assert_eq!(report["ok"], true);
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_proof_is_refused_and_the_connection_closed() {
    let lab = lab().await;
    let mut node = TestNode::connect(
        lab.running.quic_addr,
        &lab.running.fingerprint,
        NodePrivateKey::generate(),
    )
    .await;
    let refused = node.handshake(Some([7u8; 32])).await.unwrap_err();
    let ControllerMessage::Error { code, fatal, .. } = refused else {
        panic!("expected an error, got {refused:?}");
    };
    assert_eq!(code, "auth_failed");
    assert!(fatal);
    assert!(node.try_next(Duration::from_secs(2)).await.is_none());
    let closed = tokio::time::timeout(Duration::from_secs(3), node.connection.closed()).await;
    assert!(closed.is_ok(), "controller closes the connection");
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_and_early_requests_get_errors_not_panics() {
    let lab = lab().await;
    // A join before authenticating.
    let mut early = TestNode::connect(
        lab.running.quic_addr,
        &lab.running.fingerprint,
        NodePrivateKey::generate(),
    )
    .await;
    early
        .write(&NodeMessage::Leave {
            network_id: lab.net,
        })
        .await;
    let Some(ControllerMessage::Error { code, .. }) = early.try_next(Duration::from_secs(3)).await
    else {
        panic!("expected an error");
    };
    assert_eq!(code, "unexpected_message");

    // Garbage after authenticating.
    let mut node = lab.node().await;
    node.write_raw(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
        .await;
    let Some(ControllerMessage::Error { code, fatal, .. }) =
        node.try_next(Duration::from_secs(3)).await
    else {
        panic!("expected an error");
    };
    assert_eq!((code.as_str(), fatal), ("bad_frame", true));

    // A length far over the limit.
    let mut huge = lab.node().await;
    huge.write_raw(&u32::MAX.to_be_bytes()).await;
    let Some(ControllerMessage::Error { code, .. }) = huge.try_next(Duration::from_secs(3)).await
    else {
        panic!("expected an error");
    };
    assert_eq!(code, "bad_frame");

    // A join to a network that does not exist.
    let mut lost = lab.node().await;
    let (outcome, _) = lost
        .join("0000000000000001".parse().unwrap(), "x", None)
        .await;
    assert_eq!(
        outcome,
        JoinOutcome::Refused {
            reason: "unknown network".into()
        }
    );
    // The server still works.
    let mut fine = lab.node().await;
    let (outcome, _) = fine.join(lab.net, "fine", None).await;
    assert_eq!(outcome, JoinOutcome::Pending);
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_me_maybe_is_relayed_only_between_authorized_members() {
    let lab = lab().await;
    let key = lab.key(true).await;
    let mut a = lab.node().await;
    let mut b = lab.node().await;
    let mut map_a = a.join(lab.net, "a", Some(&key)).await.1.unwrap();
    b.join(lab.net, "b", Some(&key)).await;
    let b_key = b.key.public_key();
    a.wait_for(&mut map_a, |m| {
        m.peers.iter().any(|p| p.public_key == b_key)
    })
    .await;
    let endpoints: Vec<std::net::SocketAddr> = vec!["198.51.100.4:4242".parse().unwrap()];
    // The NAT hint passes; a birthday hint only with the address the
    // sender's connection comes from (loopback here, so not this one,
    // though it is among its candidates).
    let birthday = NatHint::PerDestination {
        ip: endpoints[0].ip(),
    };
    let easy = NatHint::Independent;
    for (sent, forwarded) in [(Some(easy), Some(easy)), (Some(birthday), None)] {
        a.write(&NodeMessage::CallMeMaybe {
            network_id: lab.net,
            peer: b_key,
            endpoints: endpoints.clone(),
            nat: sent,
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match b.try_next(left).await {
                Some(ControllerMessage::CallMeMaybe {
                    network_id,
                    from,
                    endpoints: got,
                    nat,
                }) => {
                    assert_eq!(
                        (network_id, from, got, nat),
                        (lab.net, a.key.public_key(), endpoints.clone(), forwarded)
                    );
                    break;
                }
                Some(_) => {}
                None => panic!("call-me-maybe never arrived"),
            }
        }
    }
    // A pending node may not ask, and nobody may ask a stranger.
    let mut pending = lab.node().await;
    pending.join(lab.net, "p", None).await;
    pending
        .write(&NodeMessage::CallMeMaybe {
            network_id: lab.net,
            peer: b_key,
            endpoints: endpoints.clone(),
            nat: None,
        })
        .await;
    let Some(ControllerMessage::Error { code, .. }) =
        pending.try_next(Duration::from_secs(3)).await
    else {
        panic!("expected an error");
    };
    assert_eq!(code, "not_a_peer");
    lab.running.shutdown().await;
}
