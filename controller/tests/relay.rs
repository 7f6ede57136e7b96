//! The relay on a real server on loopback: authenticated test nodes send
//! relay frames as datagrams and on streams; the abuse cases are refused
//! and counted; a relay-only instance serves members of its controller's
//! database.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::node::{RelayInbox, TestNode, Via};
use warren_controller::metrics::{RelayDrop, RelayRefusal};
use warren_controller::relay::{CLOSE_SUPERSEDED, LINKS_PER_KEY};
use warren_controller::server::{self, RelayLimits, Role, Running, ServerOptions};
use warren_controller::store::{Actor, AuditQuery, MemberState, NewNetwork, PreauthKeySpec, Store};
use warren_proto::control::{ControllerMessage, JoinOutcome, NodeMessage};
use warren_proto::relay::RelayFrame;
use warren_proto::{NetworkId, NodeId};

/// Nothing more arrives within this when nothing should.
const QUIET: Duration = Duration::from_millis(300);

struct Lab {
    dir: tempfile::TempDir,
    running: Running,
}

async fn lab(relay: RelayLimits) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ServerOptions::loopback(dir.path().join("data"));
    options.relay = relay;
    let running = server::start(options).await.unwrap();
    Lab { dir, running }
}

impl Lab {
    fn store(&self) -> &std::sync::Arc<dyn Store> {
        self.running.hub.store()
    }

    async fn network(&self, name: &str) -> NetworkId {
        self.store()
            .create_network(
                &Actor::system(),
                NewNetwork {
                    name: name.into(),
                    pool: "10.147.0.0/16".parse().unwrap(),
                    zone: format!("{name}.warren.internal"),
                    mtu: 1420,
                },
            )
            .await
            .unwrap()
            .id
    }

    async fn key(&self, net: NetworkId) -> String {
        self.store()
            .create_preauth_key(&Actor::system(), net, PreauthKeySpec::reusable())
            .await
            .unwrap()
            .key
    }

    /// A node that joined `net` (authorized with `key`, else pending).
    async fn member(&self, net: NetworkId, name: &str, key: Option<&str>) -> TestNode {
        let mut node =
            TestNode::authenticated(self.running.quic_addr, &self.running.fingerprint).await;
        let (outcome, _) = node.join(net, name, key).await;
        let expected = if key.is_some() {
            JoinOutcome::Authorized
        } else {
            JoinOutcome::Pending
        };
        assert_eq!(outcome, expected);
        node
    }

    fn refused(&self, reason: RelayRefusal) -> u64 {
        self.running.hub.metrics().relay_refused(reason)
    }
}

fn frame(net: NetworkId, to: &TestNode, seq: u64, payload: Vec<u8>) -> RelayFrame {
    RelayFrame {
        network_id: net,
        peer: to.key.public_key(),
        seq,
        payload,
    }
}

/// Waits until `done` holds; panics after five seconds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_travel_as_datagrams_and_streams_named_by_their_sender() {
    let lab = lab(RelayLimits::default()).await;
    let net = lab.network("prod").await;
    let key = lab.key(net).await;
    let a = lab.member(net, "a", Some(&key)).await;
    let b = lab.member(net, "b", Some(&key)).await;
    let mut inbox_a = a.relay_inbox();
    let mut inbox_b = b.relay_inbox();

    // Small: one datagram each way.
    a.send_relay_datagram(&frame(net, &b, 1, vec![0xab; 100]));
    let (via, got) = inbox_b.expect().await;
    assert_eq!(via, Via::Datagram);
    assert_eq!(got.network_id, net);
    assert_eq!(got.peer, a.key.public_key(), "the relay names the sender");
    assert_eq!(got.payload, vec![0xab; 100]);
    assert_eq!(got.seq, 1);
    b.send_relay_datagram(&frame(net, &a, 1, b"pong".to_vec()));
    let (_, got) = inbox_a.expect().await;
    assert_eq!(
        (got.peer, got.payload),
        (b.key.public_key(), b"pong".to_vec())
    );

    // Too big for any datagram: records on a stream, arriving whole and in
    // order, the relay's own stream to b carrying both.
    let big: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    assert!(big.len() > b.connection.max_datagram_size().unwrap());
    let bigger: Vec<u8> = big.iter().rev().copied().collect();
    a.send_relay_records(&[
        &frame(net, &b, 2, big.clone()).encode(),
        &frame(net, &b, 3, bigger.clone()).encode(),
    ])
    .await;
    for (payload, seq) in [(&big, 2), (&bigger, 3)] {
        let (via, got) = inbox_b.expect().await;
        assert_eq!(via, Via::Stream);
        assert_eq!(&got.payload, payload);
        assert_eq!(got.peer, a.key.public_key());
        assert_eq!(
            got.seq, seq,
            "the relay numbers its own frames per connection"
        );
    }

    // A small frame that came on a stream still leaves as a datagram.
    a.send_relay_records(&[&frame(net, &b, 4, vec![7; 10]).encode()])
        .await;
    let (via, got) = inbox_b.expect().await;
    assert_eq!((via, got.payload), (Via::Datagram, vec![7; 10]));

    let metrics = lab.running.hub.metrics();
    eventually("five frames counted", || {
        metrics
            .relay_frames
            .load(std::sync::atomic::Ordering::Relaxed)
            == 5
    })
    .await;
    let text = metrics.render();
    assert!(
        text.contains("warren_relay_stream_frames_total 2"),
        "{text}"
    );
    assert!(text.contains("warren_relay_bytes_total 8114"), "{text}");
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_outside_the_senders_networks_and_replays_are_refused() {
    let lab = lab(RelayLimits::default()).await;
    let prod = lab.network("prod").await;
    let other = lab.network("other").await;
    let prod_key = lab.key(prod).await;
    let other_key = lab.key(other).await;
    let a = lab.member(prod, "a", Some(&prod_key)).await;
    let b = lab.member(prod, "b", Some(&prod_key)).await;
    let d = lab.member(other, "d", Some(&other_key)).await;
    let pending = lab.member(prod, "p", None).await;
    let mut inbox_a = a.relay_inbox();
    let mut inbox_b = b.relay_inbox();
    let mut inbox_d = d.relay_inbox();
    let mut inbox_p = pending.relay_inbox();

    // To a node of another network, in either network's name.
    a.send_relay_datagram(&frame(prod, &d, 1, b"to d".to_vec()));
    a.send_relay_datagram(&frame(other, &d, 2, b"to d".to_vec()));
    // From that node into a network it is not in.
    d.send_relay_datagram(&frame(prod, &b, 1, b"from d".to_vec()));
    // To and from a member that is not authorized.
    a.send_relay_datagram(&frame(prod, &pending, 3, b"to p".to_vec()));
    pending.send_relay_datagram(&frame(prod, &a, 1, b"from p".to_vec()));
    // To itself, and to a network that does not exist.
    a.send_relay_datagram(&frame(prod, &a, 4, b"self".to_vec()));
    let nowhere: NetworkId = "00000000000000aa".parse().unwrap();
    a.send_relay_datagram(&frame(nowhere, &b, 5, b"nowhere".to_vec()));
    eventually("seven frames refused as not a peer", || {
        lab.refused(RelayRefusal::NotAPeer) == 7
    })
    .await;

    // The same sequence number again, as a datagram and on a stream.
    a.send_relay_datagram(&frame(prod, &b, 10, b"once".to_vec()));
    let (_, first) = inbox_b.expect().await;
    assert_eq!(first.payload, b"once");
    a.send_relay_datagram(&frame(prod, &b, 10, b"twice".to_vec()));
    a.send_relay_records(&[&frame(prod, &b, 10, b"thrice".to_vec()).encode()])
        .await;
    eventually("two replays refused", || {
        lab.refused(RelayRefusal::Replay) == 2
    })
    .await;
    // Not a frame at all, on both paths, and a record of an impossible
    // length: refused, and the connection lives.
    a.connection.send_datagram(vec![1, 2, 3].into()).unwrap();
    a.send_relay_records(&[&[9; 60]]).await;
    a.send_relay_raw_stream(&u32::MAX.to_be_bytes()).await;
    eventually("garbage refused", || {
        lab.refused(RelayRefusal::Malformed) == 3
    })
    .await;
    a.send_relay_datagram(&frame(prod, &b, 11, b"after".to_vec()));
    let (_, second) = inbox_b.expect().await;
    assert_eq!(second.payload, b"after", "the replays were not delivered");
    assert!(inbox_b.next(QUIET).await.is_none());
    assert!(inbox_d.next(QUIET).await.is_none(), "nothing reached d");
    assert!(inbox_p.next(QUIET).await.is_none(), "nothing reached p");
    assert!(inbox_a.next(QUIET).await.is_none(), "nothing reached a");

    let text = lab.running.hub.metrics().render();
    assert!(
        text.contains("warren_relay_refused_total{reason=\"not_a_peer\"} 7"),
        "{text}"
    );
    assert!(
        text.contains("warren_relay_refused_total{reason=\"replay\"} 2"),
        "{text}"
    );
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_carries_only_what_the_policy_lets_two_members_exchange() {
    let lab = lab(RelayLimits::default()).await;
    let net = lab.network("prod").await;
    let key = lab.key(net).await;
    let a = lab.member(net, "a", Some(&key)).await;
    let b = lab.member(net, "b", Some(&key)).await;
    let c = lab.member(net, "c", Some(&key)).await;
    let policy = "[[allow]]\nfrom = [\"a\"]\nto = [\"b\"]\nports = [\"tcp:22\"]\n";
    lab.store()
        .set_policy(&Actor::system(), net, policy)
        .await
        .unwrap();
    let mut inbox_a = a.relay_inbox();
    let mut inbox_b = b.relay_inbox();
    // a and b may exchange packets (either way: replies); c may not reach
    // either, nor they c.
    a.send_relay_datagram(&frame(net, &b, 1, b"a to b".to_vec()));
    assert_eq!(inbox_b.expect().await.1.payload, b"a to b");
    b.send_relay_datagram(&frame(net, &a, 1, b"b to a".to_vec()));
    assert_eq!(inbox_a.expect().await.1.payload, b"b to a");
    c.send_relay_datagram(&frame(net, &a, 1, b"c to a".to_vec()));
    c.send_relay_datagram(&frame(net, &b, 2, b"c to b".to_vec()));
    a.send_relay_datagram(&frame(net, &c, 2, b"a to c".to_vec()));
    eventually("three frames refused as not a peer", || {
        lab.refused(RelayRefusal::NotAPeer) == 3
    })
    .await;
    assert!(inbox_a.next(QUIET).await.is_none());
    assert!(inbox_b.next(QUIET).await.is_none());
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_over_its_quota_is_cut_off_while_others_still_flow() {
    // Nine 1049-byte frames fit the burst; refill is negligible.
    let lab = lab(RelayLimits {
        rate: 1,
        burst: 10_000,
    })
    .await;
    let net = lab.network("prod").await;
    let key = lab.key(net).await;
    let a = lab.member(net, "a", Some(&key)).await;
    let b = lab.member(net, "b", Some(&key)).await;
    let c = lab.member(net, "c", Some(&key)).await;
    let mut inbox_b = b.relay_inbox();

    for seq in 1..=20 {
        a.send_relay_datagram(&frame(net, &b, seq, vec![0xaa; 1000]));
    }
    eventually("a's frames past its burst refused", || {
        lab.refused(RelayRefusal::Quota) == 11
    })
    .await;
    // The quota is the node's, not the connection's: a second connection
    // of the same node gets nothing more.
    let a2 = TestNode::authenticated_as(
        lab.running.quic_addr,
        &lab.running.fingerprint,
        a.key.clone(),
    )
    .await;
    a2.send_relay_datagram(&frame(net, &b, 1, vec![0xaa; 1000]));
    eventually("the second connection is over quota too", || {
        lab.refused(RelayRefusal::Quota) == 12
    })
    .await;
    // Another node's traffic still flows.
    for seq in 1..=5 {
        c.send_relay_datagram(&frame(net, &b, seq, vec![0xcc; 1000]));
    }

    let (mut from_a, mut from_c) = (0, 0);
    while let Some((_, got)) = inbox_b.next(Duration::from_secs(2)).await {
        if got.peer == a.key.public_key() {
            from_a += 1;
        } else if got.peer == c.key.public_key() {
            from_c += 1;
        }
        if from_a == 9 && from_c == 5 {
            break;
        }
    }
    assert_eq!((from_a, from_c), (9, 5));
    assert!(inbox_b.next(QUIET).await.is_none());
    lab.running.shutdown().await;
}

/// `n` more connections of `node`'s key, each with its relay inbox.
async fn more_connections(lab: &Lab, node: &TestNode, n: usize) -> Vec<(TestNode, RelayInbox)> {
    let mut more = Vec::new();
    for _ in 0..n {
        let extra = TestNode::authenticated_as(
            lab.running.quic_addr,
            &lab.running.fingerprint,
            node.key.clone(),
        )
        .await;
        let inbox = extra.relay_inbox();
        more.push((extra, inbox));
    }
    more
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holds_at_most_four_connections_and_a_fifth_closes_the_oldest() {
    let lab = lab(RelayLimits::default()).await;
    let net = lab.network("prod").await;
    let key = lab.key(net).await;
    let a = lab.member(net, "a", Some(&key)).await;
    let b = lab.member(net, "b", Some(&key)).await;
    let mut extra = more_connections(&lab, &b, LINKS_PER_KEY).await;
    // b's first connection was the oldest of five: closed, and said why.
    let closed = tokio::time::timeout(Duration::from_secs(5), b.connection.closed())
        .await
        .expect("the oldest connection is closed");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_SUPERSEDED));
        }
        other => panic!("closed otherwise: {other}"),
    }
    let metrics = lab.running.hub.metrics().clone();
    assert_eq!(
        metrics
            .relay_links_superseded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Its session ends with it: a and b's four newer connections remain.
    eventually("the closed connection's session ends", || {
        metrics
            .connected_nodes
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1 + LINKS_PER_KEY as i64
    })
    .await;
    // One frame to b reaches its four newer connections, once each.
    a.send_relay_datagram(&frame(net, &b, 1, vec![0xab; 100]));
    for (_, inbox) in extra.iter_mut() {
        let (_, got) = inbox.expect().await;
        assert_eq!(got.peer, a.key.public_key());
        assert!(inbox.next(QUIET).await.is_none());
    }
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_pays_for_every_copy() {
    // b holds four connections, so a 1049-byte frame costs a 4196 bytes:
    // two frames fit its 10 000-byte burst, not nine.
    let lab = lab(RelayLimits {
        rate: 1,
        burst: 10_000,
    })
    .await;
    let net = lab.network("prod").await;
    let key = lab.key(net).await;
    let a = lab.member(net, "a", Some(&key)).await;
    let b = lab.member(net, "b", Some(&key)).await;
    let mut inboxes = vec![b.relay_inbox()];
    let extra = more_connections(&lab, &b, LINKS_PER_KEY - 1).await;
    let (extra_nodes, extra_inboxes): (Vec<_>, Vec<_>) = extra.into_iter().unzip();
    inboxes.extend(extra_inboxes);
    for seq in 1..=5 {
        a.send_relay_datagram(&frame(net, &b, seq, vec![0xaa; 1000]));
    }
    eventually("a's frames past two refused", || {
        lab.refused(RelayRefusal::Quota) == 3
    })
    .await;
    for inbox in inboxes.iter_mut() {
        let mut seen = 0;
        while inbox.next(QUIET).await.is_some() {
            seen += 1;
        }
        assert_eq!(seen, 2, "copies per connection");
    }
    drop(extra_nodes);
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_for_an_offline_peer_are_dropped_and_counted() {
    let lab = lab(RelayLimits::default()).await;
    let net = lab.network("prod").await;
    let key = lab.key(net).await;
    let a = lab.member(net, "a", Some(&key)).await;
    let b = lab.member(net, "b", Some(&key)).await;
    let b_key = b.key.clone();
    b.connection.close(0u32.into(), b"bye");
    drop(b);
    let to_b = RelayFrame {
        network_id: net,
        peer: b_key.public_key(),
        seq: 1,
        payload: vec![1; 10],
    };
    // The controller notices the close, then the frame has nowhere to go.
    let metrics = lab.running.hub.metrics().clone();
    eventually("b gone", || {
        metrics
            .connected_nodes
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    a.send_relay_datagram(&to_b);
    eventually("dropped as offline", || {
        metrics.relay_dropped(RelayDrop::Offline) == 1
    })
    .await;
    lab.running.shutdown().await;
}

fn all_entries() -> AuditQuery {
    AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    }
}

/// A relay-only instance with its own state in `state`, reading the
/// database in `data`, which a controller made.
async fn relay_only(data: &Path, state: &Path) -> Running {
    let any_port = "127.0.0.1:0".parse().unwrap();
    server::start(ServerOptions {
        role: Role::RelayOnly,
        data_dir: data.to_path_buf(),
        database: None,
        state_dir: Some(state.to_path_buf()),
        listen_quic: any_port,
        quic_fallback_v4: false,
        listen_tcp: None,
        listen_api: Some(any_port),
        api_hosts: vec![],
        admin_socket: None,
        listen_stun: vec![],
        stun_fallback_v4: false,
        relay: RelayLimits::default(),
        advertise_relay: None,
        advertise_address: None,
        retry_above_handshakes: warren_controller::control::admission::RETRY_ABOVE_HANDSHAKES,
        listen_https: None,
        https_certificate: None,
        listen_dns: None,
        sign_in: None,
        roles: Default::default(),
        public_url: None,
        site_mapped_range: warren_controller::store::DEFAULT_SITE_MAPPED_RANGE,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_instance_relays_for_its_controllers_members_and_writes_nothing() {
    let lab = lab(RelayLimits::default()).await;
    let net = lab.network("prod").await;
    let key = lab.key(net).await;
    let a = lab.member(net, "a", Some(&key)).await;
    let b = lab.member(net, "b", Some(&key)).await;

    // Nothing to serve without a controller's database, and never with
    // the controller's own key and certificate.
    let empty = tempfile::tempdir().unwrap();
    let data = lab.dir.path().join("data");
    let state = lab.dir.path().join("relay-state");
    let missing = ServerOptions {
        role: Role::RelayOnly,
        state_dir: Some(state.clone()),
        ..ServerOptions::loopback(empty.path().join("none"))
    };
    assert!(server::start(missing).await.is_err());
    assert!(!empty.path().join("none").exists(), "made nothing");
    assert!(!state.exists(), "made nothing");
    let in_the_controllers_dir = ServerOptions {
        role: Role::RelayOnly,
        state_dir: Some(data.clone()),
        ..ServerOptions::loopback(data.clone())
    };
    let refused = server::start(in_the_controllers_dir).await.err().unwrap();
    assert!(
        refused.to_string().contains("controller's data directory"),
        "{refused}"
    );

    let relay = relay_only(&data, &state).await;
    assert_ne!(
        relay.fingerprint, lab.running.fingerprint,
        "a certificate of its own"
    );
    // Its state holds its own key and certificate, nothing of the controller's.
    let mut files: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["relay.key", "tls-cert.pem", "tls-key.pem"]);
    assert!(relay.stun_addrs.is_empty());
    let audit_before = lab.store().audit_page(&all_entries()).await.unwrap().len();

    let mut a2 =
        TestNode::authenticated_as(relay.quic_addr, &relay.fingerprint, a.key.clone()).await;
    let b2 = TestNode::authenticated_as(relay.quic_addr, &relay.fingerprint, b.key.clone()).await;
    let mut inbox_b2 = b2.relay_inbox();
    // Control requests belong to the controller.
    a2.write(&NodeMessage::Join {
        network_id: net,
        name: "a".into(),
        preauth_key: None,
    })
    .await;
    let ControllerMessage::Error { code, fatal, .. } = a2.next().await else {
        panic!("expected an error");
    };
    assert_eq!((code.as_str(), fatal), ("relay_only", false));

    a2.send_relay_datagram(&frame(net, &b2, 1, b"via relay".to_vec()));
    let (_, got) = inbox_b2.expect().await;
    assert_eq!(
        (got.peer, got.payload),
        (a.key.public_key(), b"via relay".to_vec())
    );

    // A revocation on the controller reaches the relay within its refresh.
    lab.store()
        .set_member_state(
            &Actor::system(),
            net,
            NodeId::from_key(&b.key.public_key()),
            MemberState::Revoked,
        )
        .await
        .unwrap();
    let refused = || relay.hub.metrics().relay_refused(RelayRefusal::NotAPeer);
    let deadline =
        tokio::time::Instant::now() + server::RELAY_MEMBERSHIP_REFRESH + Duration::from_secs(3);
    let mut seq = 2;
    while refused() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocation never seen"
        );
        a2.send_relay_datagram(&frame(net, &b2, seq, b"x".to_vec()));
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let frames sent before the revocation drain, then nothing more passes.
    while inbox_b2.next(QUIET).await.is_some() {}
    a2.send_relay_datagram(&frame(net, &b2, seq, b"late".to_vec()));
    assert!(inbox_b2.next(QUIET).await.is_none());

    // The relay wrote nothing: no presence, no audit entries. What is new
    // is the revocation, and the controller (which hears of it from its
    // store) ending b's own session there.
    let entries = lab.store().audit_page(&all_entries()).await.unwrap();
    let new: Vec<&str> = entries[audit_before..]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(new[0], "member.revoke", "{new:?}");
    assert!(
        new[1..].iter().all(|a| *a == "member.offline"),
        "only the revocation and its effect on the controller: {new:?}"
    );
    relay.shutdown().await;
    lab.running.shutdown().await;
}
