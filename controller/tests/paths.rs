//! Path reports on the real control server: what a member's agent says of
//! its paths shows in the members API (only its own, only about members),
//! live watchers hear of it without a netmap push, it goes with the
//! session, and messages the controller does not know leave the session up.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::node::TestNode;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use warren_proto::control::{
    ControllerMessage, JoinOutcome, NodeMessage, PeerPath, PeerPathKind, MAX_PEER_PATHS,
};
use warren_proto::{NetworkId, NodePrivateKey, NodePublicKey};

type Lab = common::Served;

impl Lab {
    async fn key(&self) -> String {
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

    async fn member(&self, node: &TestNode) -> Value {
        let (status, member) = self
            .api
            .admin(
                Method::GET,
                &format!("/api/v1/networks/{}/members/{}", self.net, node.node_id()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{member}");
        member
    }

    /// Polls `node`'s member until its `paths` satisfy `done`; panics after 5 s.
    async fn wait_paths(&self, node: &TestNode, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let member = self.member(node).await;
            let paths = member["paths"].as_array().cloned().unwrap();
            if done(&paths) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; paths: {paths:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn direct(peer: NodePublicKey, port: u16) -> PeerPath {
    PeerPath {
        peer,
        kind: PeerPathKind::Direct,
        endpoint: Some(([192, 0, 2, 7], port).into()),
        last_handshake_secs_ago: Some(4),
    }
}

fn relayed(peer: NodePublicKey) -> PeerPath {
    PeerPath {
        peer,
        kind: PeerPathKind::Relayed,
        endpoint: None,
        last_handshake_secs_ago: None,
    }
}

fn report(network_id: NetworkId, paths: Vec<PeerPath>) -> NodeMessage {
    NodeMessage::Paths { network_id, paths }
}

/// The next `Error` the node gets (netmap pushes skipped): (code, fatal).
async fn next_error(node: &mut TestNode) -> (String, bool) {
    loop {
        match node.try_next(Duration::from_secs(3)).await {
            Some(ControllerMessage::Error { code, fatal, .. }) => return (code, fatal),
            Some(_) => continue,
            None => panic!("expected an error"),
        }
    }
}

/// Whether a live notice for `net` is waiting (or comes within a second).
async fn heard(live: &mut broadcast::Receiver<NetworkId>, net: NetworkId) -> bool {
    let wait = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match live.recv().await {
                Ok(n) if n == net => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    });
    wait.await.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_show_their_own_reported_paths_to_members_until_the_session_ends() {
    let (lab, Pair { mut a, b }) = lab_with_pair().await;
    assert!(
        matches!(
            a.welcome,
            Some(ControllerMessage::Welcome {
                accepts_paths: true,
                ..
            })
        ),
        "{:?}",
        a.welcome
    );
    assert_eq!(lab.member(&a).await["paths"], json!([]));
    let mut live = lab.running.hub.subscribe_live();
    let mut changes = lab.running.hub.subscribe();

    // About b (kept), a stranger, itself, and b again (all dropped).
    let stranger = NodePrivateKey::generate().public_key();
    let paths = vec![
        direct(b.key.public_key(), 41641),
        relayed(stranger),
        direct(a.key.public_key(), 1),
        relayed(b.key.public_key()),
    ];
    a.write(&report(lab.net, paths)).await;
    lab.wait_paths(&a, "a's path to b", |p| !p.is_empty()).await;
    let member = lab.member(&a).await;
    assert_eq!(
        member["paths"],
        json!([{
            "peer": b.node_id().to_string(),
            "peer_name": "b",
            "kind": "direct",
            "endpoint": "192.0.2.7:41641",
            "last_handshake_secs_ago": 4,
        }])
    );
    // b reported nothing: it shows nothing, whatever a said about it.
    assert_eq!(lab.member(&b).await["paths"], json!([]));
    assert!(heard(&mut live, lab.net).await, "no live notice");
    // A paths-only change rebuilds no netmap: no stored-change notice.
    assert!(changes.try_recv().is_err());

    // The list shows the same, and every member has a `paths` array.
    let (status, list) = lab
        .api
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{}/members", lab.net),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for m in list["members"].as_array().unwrap() {
        let want = if m["node_id"] == member["node_id"] {
            member["paths"].clone()
        } else {
            json!([])
        };
        assert_eq!(m["paths"], want, "{m}");
    }

    // Relayed now.
    a.write(&report(lab.net, vec![relayed(b.key.public_key())]))
        .await;
    lab.wait_paths(&a, "a's path to b to be relayed", |p| {
        p.len() == 1 && p[0]["kind"] == "relayed" && p[0]["endpoint"].is_null()
    })
    .await;

    // Far more entries than the cap: clipped, and the session goes on.
    let many = vec![relayed(b.key.public_key()); MAX_PEER_PATHS * 3];
    a.write(&report(lab.net, many)).await;
    a.write(&report(lab.net, vec![direct(b.key.public_key(), 7)]))
        .await;
    lab.wait_paths(&a, "the report after the long one", |p| {
        p.len() == 1 && p[0]["kind"] == "direct"
    })
    .await;

    // The session ends: its report goes.
    while live.try_recv().is_ok() {}
    a.connection.close(0u32.into(), b"bye");
    lab.wait_paths(&a, "a's report to go with its session", |p| p.is_empty())
        .await;
    assert!(heard(&mut live, lab.net).await, "no live notice of the end");
    drop(b);
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_authorized_members_report_and_unknown_messages_leave_the_session_up() {
    let (lab, pair) = lab_with_pair().await;
    // A pending member may not report.
    let mut c = lab.node().await;
    let (outcome, _) = c.join(lab.net, "c", None).await;
    assert_eq!(outcome, JoinOutcome::Pending);
    c.write(&report(lab.net, vec![relayed(pair.a.key.public_key())]))
        .await;
    assert_eq!(next_error(&mut c).await, ("not_a_member".into(), false));
    assert_eq!(lab.member(&c).await["paths"], json!([]));

    // Nor a member on a connection that did not join.
    let mut other = TestNode::authenticated_as(
        lab.running.quic_addr,
        &lab.running.fingerprint,
        pair.b.key.clone(),
    )
    .await;
    other
        .write(&report(lab.net, vec![relayed(pair.a.key.public_key())]))
        .await;
    assert_eq!(next_error(&mut other).await, ("not_a_member".into(), false));

    // A message type from a newer agent: refused, not fatal.
    c.write_raw(&frame(br#"{"type":"from_the_future","network_id":"x"}"#))
        .await;
    assert_eq!(next_error(&mut c).await, ("unknown_message".into(), false));
    c.write(&NodeMessage::Resync {
        network_id: lab.net,
    })
    .await;
    let mut resynced = false;
    while let Some(message) = c.try_next(Duration::from_secs(3)).await {
        if matches!(message, ControllerMessage::Netmap(_)) {
            resynced = true;
            break;
        }
    }
    assert!(
        resynced,
        "the session did not go on after an unknown message"
    );
    drop(pair);
    lab.running.shutdown().await;
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

struct Pair {
    a: TestNode,
    b: TestNode,
}

/// A controller with members "a" and "b" authorized and connected.
async fn lab_with_pair() -> (Lab, Pair) {
    let lab = common::served().await;
    let key = lab.key().await;
    let mut a = lab.node().await;
    let mut b = lab.node().await;
    for (node, name) in [(&mut a, "a"), (&mut b, "b")] {
        let (outcome, _) = node.join(lab.net, name, Some(&key)).await;
        assert_eq!(outcome, JoinOutcome::Authorized);
    }
    (lab, Pair { a, b })
}
