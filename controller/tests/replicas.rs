//! Several replicas on one PostgreSQL database, at the store: what one
//! commits reaches the others' change feeds, presence belongs to the
//! replica holding a member's connection, a replica that is gone has its
//! members taken offline (unless they moved), and messages for nodes
//! reach the replica that holds them. On SQLite (one process) there is
//! nothing to share, and these tests say so and check that.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{on_postgres, Harness};
use warren_controller::store::{
    Actor, ChangeKind, JoinRequest, MemberState, NewNetwork, SqlStore, Store,
};
use warren_proto::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

/// How long another replica may take to hear of a change.
const HEARD_WITHIN: Duration = Duration::from_secs(3);

async fn network(store: &SqlStore) -> NetworkId {
    store
        .create_network(
            &Actor::system(),
            NewNetwork {
                name: "prod".into(),
                pool: "10.147.0.0/16".parse().unwrap(),
                zone: "prod.warren.internal".into(),
                mtu: 1280,
            },
        )
        .await
        .unwrap()
        .id
}

/// An authorized member of `net`.
async fn member(store: &SqlStore, net: NetworkId, name: &str) -> NodePublicKey {
    let key = NodePrivateKey::generate().public_key();
    store
        .join(JoinRequest {
            network_id: net,
            node_key: key,
            name: name.into(),
            preauth_key: None,
            agent_version: "0.1.0".into(),
            endpoints: vec![],
        })
        .await
        .unwrap();
    store
        .set_member_state(
            &Actor::system(),
            net,
            NodeId::from_key(&key),
            MemberState::Authorized,
        )
        .await
        .unwrap();
    key
}

async fn online(store: &SqlStore, net: NetworkId, key: &NodePublicKey) -> bool {
    store
        .get_member(net, NodeId::from_key(key))
        .await
        .unwrap()
        .online
}

#[tokio::test]
async fn a_change_committed_on_one_replica_reaches_the_others_feed() {
    let h = Harness::new().await;
    let a = &h.store;
    let b = h.second_store().await;
    let follower = b.follow().await.unwrap();
    if !on_postgres() {
        assert!(follower.is_none(), "SQLite has no other replicas to follow");
        assert!(!a.is_shared());
        return;
    }
    let _a_follower = a.follow().await.unwrap();
    let mut heard = b.changes().subscribe();
    let net = network(a).await;
    let change = tokio::time::timeout(HEARD_WITHIN, heard.recv())
        .await
        .expect("the other replica heard nothing")
        .unwrap();
    assert_eq!((change.network, change.kind), (net, ChangeKind::Netmap));
    // Its own changes are published once, by itself, not again from the log.
    let mut own = a.changes().subscribe();
    let key = member(&b, net, "laptop").await;
    let mut kinds = Vec::new();
    while let Ok(Ok(change)) = tokio::time::timeout(HEARD_WITHIN, heard.recv()).await {
        kinds.push(change.kind);
        if kinds.len() == 2 {
            break;
        }
    }
    assert_eq!(
        kinds,
        vec![ChangeKind::Netmap, ChangeKind::Netmap],
        "b: join, authorize"
    );
    let change = tokio::time::timeout(HEARD_WITHIN, own.recv())
        .await
        .expect("a heard nothing of b's join")
        .unwrap();
    assert_eq!(change.network, net);
    assert!(!online(a, net, &key).await);
    drop(follower);
}

#[tokio::test]
async fn presence_belongs_to_the_replica_that_holds_the_connection() {
    let h = Harness::new().await;
    let a = &h.store;
    let b = h.second_store().await;
    let net = network(a).await;
    let key = member(a, net, "laptop").await;
    a.register_replica(Some("192.0.2.1:7443"), None)
        .await
        .unwrap();
    b.register_replica(Some("192.0.2.2:7443"), None)
        .await
        .unwrap();
    assert!(a.set_presence(net, &key, true).await.unwrap());
    if !on_postgres() {
        assert!(a.replicas().await.unwrap().is_empty());
        return;
    }
    let mut replicas: Vec<_> = a
        .replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.control.unwrap())
        .collect();
    replicas.sort();
    assert_eq!(replicas, vec!["192.0.2.1:7443", "192.0.2.2:7443"]);

    // The node moves to b before a notices its old connection is gone:
    // a's late "offline" changes nothing.
    assert!(
        !b.set_presence(net, &key, true).await.unwrap(),
        "moving is not a transition"
    );
    assert!(!a.set_presence(net, &key, false).await.unwrap());
    assert!(
        online(a, net, &key).await,
        "a's late offline took it offline"
    );

    // b dies (its heartbeat stops); a's heartbeat takes b's members offline.
    let pool = h.raw_pool().await;
    sqlx::query("UPDATE replicas SET heartbeat_ms = 0 WHERE id = $1")
        .bind(b.replica_id())
        .execute(&pool)
        .await
        .unwrap();
    assert!(!a.heartbeat().await.unwrap(), "a is alive");
    assert!(!online(a, net, &key).await, "b's member is still online");
    let ids: Vec<_> = a
        .replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![a.replica_id().to_owned()]);

    // b comes back late: it learns it was taken for gone.
    assert!(b.heartbeat().await.unwrap());
    assert!(!b.heartbeat().await.unwrap());

    // A member that moved to a live replica before its old one was taken
    // for gone stays online: nobody flaps.
    assert!(b.set_presence(net, &key, true).await.unwrap());
    assert!(a.set_presence(net, &key, true).await.is_ok());
    sqlx::query("UPDATE replicas SET heartbeat_ms = 0 WHERE id = $1")
        .bind(b.replica_id())
        .execute(&pool)
        .await
        .unwrap();
    a.heartbeat().await.unwrap();
    assert!(online(a, net, &key).await, "moved to a, yet taken offline");

    // A process started again at a's address replaces it: a's members are
    // not connected to it, so they go offline at once.
    let again = h.second_store().await;
    again
        .register_replica(Some("192.0.2.1:7443"), None)
        .await
        .unwrap();
    assert_eq!(again.reset_presence().await.unwrap(), vec![net]);
    assert!(
        !online(a, net, &key).await,
        "a's member still online after a's restart"
    );
    let audit = a.audit_verify(None).await.unwrap();
    assert!(audit.ok, "{audit:?}");
}

#[tokio::test]
async fn a_message_for_a_node_reaches_the_replica_holding_it() {
    let h = Harness::new().await;
    let a = &h.store;
    let b = h.second_store().await;
    let _follower = b.follow().await.unwrap();
    let mut inbox = b.forwarded();
    let key = NodePrivateKey::generate().public_key();
    a.forward(&key, "{\"type\":\"call_me_maybe\"}")
        .await
        .unwrap();
    let got = tokio::time::timeout(HEARD_WITHIN, inbox.recv()).await;
    if !on_postgres() {
        assert!(got.is_err(), "SQLite forwarded something: {got:?}");
        return;
    }
    let got = got.expect("b got nothing").unwrap();
    assert_eq!(got.to, key);
    assert_eq!(got.body, "{\"type\":\"call_me_maybe\"}");
    // The sender does not hear itself.
    let _a_follower = a.follow().await.unwrap();
    let mut own = a.forwarded();
    b.forward(&key, "{}").await.unwrap();
    a.forward(&key, "{\"mine\":1}").await.unwrap();
    let got = tokio::time::timeout(HEARD_WITHIN, own.recv())
        .await
        .expect("a got nothing")
        .unwrap();
    assert_eq!(got.body, "{}");
    // Too large for a notice: refused, not truncated.
    let big = "x".repeat(warren_controller::store::sql::MAX_FORWARD + 1);
    assert!(a.forward(&key, &big).await.is_err());
}
