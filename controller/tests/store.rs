//! The store under concurrency: single-use keys, IPAM and names.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use warren_controller::store::{
    Actor, AuditAction, JoinDecision, JoinRequest, KeyExpiry, NewNetwork, PreauthKeySpec, SqlStore,
    Store,
};
use warren_proto::{NetworkId, NodePrivateKey};

async fn store_with_network(pool: &str) -> (common::TestStore, Arc<SqlStore>, NetworkId) {
    let kept = common::test_store().await;
    let store = kept.store.clone();
    let net = store
        .create_network(
            &Actor::system(),
            NewNetwork {
                name: "prod".into(),
                pool: pool.parse().unwrap(),
                zone: "prod.warren.internal".into(),
                mtu: 1420,
            },
        )
        .await
        .unwrap();
    (kept, Arc::new(store), net.id)
}

async fn reusable_key(store: &SqlStore, net: NetworkId) -> String {
    store
        .create_preauth_key(&Actor::system(), net, PreauthKeySpec::reusable())
        .await
        .unwrap()
        .key
}

fn request(net: NetworkId, name: &str, key: Option<&str>) -> JoinRequest {
    JoinRequest {
        network_id: net,
        node_key: NodePrivateKey::generate().public_key(),
        name: name.into(),
        preauth_key: key.map(str::to_string),
        agent_version: String::new(),
        endpoints: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_single_use_key_admits_exactly_one_of_100_concurrent_joins() {
    let (_dir, store, net) = store_with_network("10.147.0.0/16").await;
    let key = store
        .create_preauth_key(&Actor::system(), net, PreauthKeySpec::single_use())
        .await
        .unwrap()
        .key;
    let joins: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            let req = request(net, &format!("n{i}"), Some(&key));
            tokio::spawn(async move { store.join(req).await.unwrap().decision })
        })
        .collect();
    let mut authorized = 0;
    for join in joins {
        match join.await.unwrap() {
            JoinDecision::Authorized => authorized += 1,
            JoinDecision::Refused(_) => {}
            JoinDecision::Pending => panic!("a keyed join must not become pending"),
        }
    }
    assert_eq!(authorized, 1);
    assert_eq!(store.list_members(net).await.unwrap().len(), 1);
    let keys = store.list_preauth_keys(net).await.unwrap();
    assert_eq!(keys[0].uses, 1);
    let uses = store
        .audit_page(&warren_controller::store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "key.use")
        .count();
    assert_eq!(uses, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_capped_at_three_admits_exactly_three_of_60_concurrent_joins() {
    let (_dir, store, net) = store_with_network("10.147.0.0/16").await;
    let spec = PreauthKeySpec {
        max_uses: Some(3),
        ..PreauthKeySpec::reusable()
    };
    let key = store
        .create_preauth_key(&Actor::system(), net, spec)
        .await
        .unwrap()
        .key;
    let joins: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            let req = request(net, &format!("n{i}"), Some(&key));
            tokio::spawn(async move { store.join(req).await.unwrap().decision })
        })
        .collect();
    let mut authorized = 0;
    for join in joins {
        match join.await.unwrap() {
            JoinDecision::Authorized => authorized += 1,
            JoinDecision::Refused(_) => {}
            JoinDecision::Pending => panic!("a keyed join must not become pending"),
        }
    }
    assert_eq!(authorized, 3);
    assert_eq!(store.list_members(net).await.unwrap().len(), 3);
    let keys = store.list_preauth_keys(net).await.unwrap();
    assert_eq!(
        (keys[0].uses, keys[0].max_uses, keys[0].usable),
        (3, Some(3), false)
    );
    // The next join, after the rush, is refused too.
    let late = store.join(request(net, "late", Some(&key))).await.unwrap();
    assert!(matches!(late.decision, JoinDecision::Refused(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_joins_get_fifty_distinct_addresses() {
    let (_dir, store, net) = store_with_network("10.147.0.0/16").await;
    let key = reusable_key(&store, net).await;
    let joins: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            // Same requested name for all: collisions get suffixes.
            let req = request(net, "web", Some(&key));
            tokio::spawn(async move { store.join(req).await.unwrap().decision })
        })
        .collect();
    for join in joins {
        assert_eq!(join.await.unwrap(), JoinDecision::Authorized);
    }
    let members = store.list_members(net).await.unwrap();
    assert_eq!(members.len(), 50);
    let addrs: BTreeSet<_> = members.iter().map(|m| m.ipv4.unwrap()).collect();
    assert_eq!(addrs.len(), 50);
    let expected: BTreeSet<_> = (1..=50u8)
        .map(|i| std::net::Ipv4Addr::new(10, 147, 0, i))
        .collect();
    assert_eq!(addrs, expected, "lowest free addresses, no gaps");
    let names: BTreeSet<_> = members.iter().map(|m| m.name.clone().unwrap()).collect();
    assert_eq!(names.len(), 50);
    assert!(names.contains("web") && names.contains("web-2") && names.contains("web-50"));
    assert!(store.audit_verify(None).await.unwrap().ok);
}

#[tokio::test]
async fn addresses_are_stable_reused_after_delete_and_pools_run_out() {
    let (_dir, store, net) = store_with_network("192.168.50.0/29").await;
    let key = reusable_key(&store, net).await;
    let mut keys = Vec::new();
    for i in 0..6 {
        let req = request(net, &format!("n{i}"), Some(&key));
        keys.push(req.node_key);
        assert_eq!(
            store.join(req).await.unwrap().decision,
            JoinDecision::Authorized
        );
    }
    let seventh = store.join(request(net, "n7", Some(&key))).await.unwrap();
    assert_eq!(
        seventh.decision,
        JoinDecision::Refused("address pool exhausted".into())
    );
    let members = store.list_members(net).await.unwrap();
    let addrs: BTreeSet<_> = members
        .iter()
        .map(|m| m.ipv4.unwrap().to_string())
        .collect();
    assert!(!addrs.contains("192.168.50.0") && !addrs.contains("192.168.50.7"));

    // Rejoining keeps the address.
    let node2 = warren_proto::NodeId::from_key(&keys[2]);
    let before = store.get_member(net, node2).await.unwrap().ipv4;
    let mut again = request(net, "n2", None);
    again.node_key = keys[2];
    store.join(again).await.unwrap();
    assert_eq!(store.get_member(net, node2).await.unwrap().ipv4, before);

    // A deleted member's address is the lowest free one again.
    store
        .delete_member(&Actor::system(), AuditAction::MemberDelete, net, node2)
        .await
        .unwrap();
    store.join(request(net, "n8", Some(&key))).await.unwrap();
    let members = store.list_members(net).await.unwrap();
    assert!(members
        .iter()
        .any(|m| m.ipv4 == before && m.name.as_deref() == Some("n8")));
}

#[tokio::test]
async fn expired_keys_and_unknown_networks_are_refused() {
    let (_dir, store, net) = store_with_network("10.147.0.0/16").await;
    let past = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let key = store
        .create_preauth_key(
            &Actor::system(),
            net,
            PreauthKeySpec::reusable().expires(KeyExpiry::At(past)),
        )
        .await
        .unwrap();
    assert!(!key.info.usable || key.info.expires_at.is_some());
    let result = store.join(request(net, "x", Some(&key.key))).await.unwrap();
    assert!(matches!(result.decision, JoinDecision::Refused(_)));
    assert!(store.list_members(net).await.unwrap().is_empty());
    let unknown: NetworkId = "0000000000000001".parse().unwrap();
    let result = store.join(request(unknown, "x", None)).await.unwrap();
    assert_eq!(
        result.decision,
        JoinDecision::Refused("unknown network".into())
    );
}

/// Every committed change reaches the feed as one typed record per network
/// and transaction, in sequence; a refused write publishes nothing.
#[tokio::test]
async fn every_commit_yields_its_changes_in_sequence_and_a_refusal_none() {
    use warren_controller::store::{ChangeKind, MemberState, PolicyStore};
    let (_dir, store, net) = store_with_network("10.147.0.0/16").await;
    let mut feed = store.changes().subscribe();
    let mut next = || feed.try_recv().ok().map(|c| (c.network, c.seq, c.kind));

    let key = reusable_key(&store, net).await;
    assert_eq!(next(), Some((net, 2, ChangeKind::Record)), "a key");
    let joined = store.join(request(net, "a", Some(&key))).await.unwrap();
    assert_eq!(joined.decision, JoinDecision::Authorized);
    assert_eq!(next(), Some((net, 3, ChangeKind::Netmap)), "a join");
    assert_eq!(next(), None, "one record per commit");

    let node = store.list_members(net).await.unwrap()[0].node_id;
    let refused = store
        .set_policy(
            &Actor::system(),
            net,
            "[[allow]]\nfrom = [\"nobody\"]\nto = [\"*\"]\nports = [\"*\"]\n",
        )
        .await;
    assert!(refused.is_err());
    assert_eq!(next(), None, "a refused write publishes nothing");

    store
        .set_member_state(&Actor::system(), net, node, MemberState::Revoked)
        .await
        .unwrap();
    assert_eq!(next(), Some((net, 4, ChangeKind::Netmap)), "a revocation");
    assert_eq!(store.changes().seq(net), 4);
    let missed = store.changes().since(net, 2).unwrap();
    assert_eq!(
        missed.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![3, 4],
        "a reader catches up from its sequence"
    );

    store.delete_network(&Actor::system(), net).await.unwrap();
    assert_eq!(next(), Some((net, 5, ChangeKind::Deleted)));
}

/// A change wakes the sessions of its network only, each once however
/// many changes came, and a watch that ends follows nothing.
#[tokio::test]
async fn a_change_wakes_only_the_sessions_that_follow_its_network() {
    use warren_controller::hub::Hub;
    use warren_controller::metrics::Metrics;
    let (_dir, store, a) = store_with_network("10.147.0.0/16").await;
    let b = store
        .create_network(
            &Actor::system(),
            NewNetwork {
                name: "dev".into(),
                pool: "10.148.0.0/16".parse().unwrap(),
                zone: "dev.warren.internal".into(),
                mtu: 1420,
            },
        )
        .await
        .unwrap()
        .id;
    let hub = Hub::new(store.clone(), Arc::new(Metrics::default()));
    let mut on_a = hub.watch(1);
    on_a.follow(a);
    let mut on_b = hub.watch(2);
    on_b.follow(b);
    let (changes_a, changes_b) = (on_a.changes(), on_b.changes());

    for _ in 0..3 {
        reusable_key(&store, a).await; // a record: people only
        store.join(request(a, "x", None)).await.unwrap();
    }
    assert_eq!(
        soon(&changes_a).await.unwrap(),
        BTreeSet::from([a]),
        "three changes, one mark"
    );
    assert!(soon(&changes_a).await.is_err(), "nothing more");
    assert!(soon(&changes_b).await.is_err(), "b's session sleeps");

    store.join(request(b, "y", None)).await.unwrap();
    assert_eq!(soon(&changes_b).await.unwrap(), BTreeSet::from([b]));
    on_b.unfollow(b);
    store.join(request(b, "z", None)).await.unwrap();
    assert!(soon(&changes_b).await.is_err(), "unfollowed");

    drop(on_a);
    store.join(request(a, "w", None)).await.unwrap();
    assert!(
        soon(&changes_a).await.is_err(),
        "a dropped watch follows nothing"
    );
}

/// What `changes` hands over within 200 ms, if anything.
async fn soon(
    changes: &warren_controller::hub::Changes,
) -> Result<BTreeSet<NetworkId>, tokio::time::error::Elapsed> {
    tokio::time::timeout(std::time::Duration::from_millis(200), changes.changed()).await
}
