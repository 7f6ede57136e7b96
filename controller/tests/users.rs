//! Users in the store: one per provider account, following the provider
//! at every sign-in; a signed-in device owned by its person.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use warren_controller::store::{
    Actor, AuditQuery, JoinDecision, JoinRequest, MemberState, NewNetwork, Person, SqlStore, Store,
    StoreError, UserStore,
};
use warren_proto::{NetworkId, NodeId, NodePrivateKey};

async fn store_with_network() -> (common::TestStore, SqlStore, NetworkId) {
    let kept = common::test_store().await;
    let store = kept.store.clone();
    let net = store
        .create_network(
            &Actor::system(),
            NewNetwork {
                name: "corp".into(),
                pool: "10.147.0.0/16".parse().unwrap(),
                zone: "corp.warren.internal".into(),
                mtu: 1420,
            },
        )
        .await
        .unwrap()
        .id;
    (kept, store, net)
}

/// Joins a new node to `net` without a key: pending.
async fn join_pending(store: &SqlStore, net: NetworkId, name: &str) -> NodeId {
    let key = NodePrivateKey::generate().public_key();
    let joined = store
        .join(JoinRequest {
            network_id: net,
            node_key: key,
            name: name.into(),
            preauth_key: None,
            agent_version: String::new(),
            endpoints: vec![],
        })
        .await
        .unwrap();
    assert_eq!(joined.decision, JoinDecision::Pending);
    NodeId::from_key(&key)
}

/// (action, actor) of every audit entry, oldest first.
async fn actions(store: &SqlStore) -> Vec<(String, String)> {
    store
        .audit_page(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect()
}

fn ana(groups: &[&str]) -> Person {
    Person {
        issuer: "http://idp.test".into(),
        subject: "ana-subject".into(),
        email: "ana@example.com".into(),
        name: "Ana".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_device_is_its_persons_and_everything_is_audited() {
    let (_dir, store, net) = store_with_network().await;

    // One user per (issuer, subject); later sign-ins update it.
    let first = store.sign_in_user(&ana(&["ops"])).await.unwrap();
    let again = store
        .sign_in_user(&ana(&["data-team", "ops"]))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(again.groups, vec!["data-team", "ops"]);
    assert_eq!(store.list_users().await.unwrap().len(), 1);

    let node = join_pending(&store, net, "laptop").await;
    let member = store.confirm_device(&again, net, node).await.unwrap();
    assert_eq!(member.state, MemberState::Authorized);
    assert_eq!(member.owner.as_deref(), Some("ana@example.com"));
    assert!(member.ipv4.is_some() && member.name.as_deref() == Some("laptop"));
    let stored = store.get_member(net, node).await.unwrap();
    assert_eq!(stored.owner.as_deref(), Some("ana@example.com"));

    // Someone else cannot sign ana's device in.
    let bo = store
        .sign_in_user(&Person {
            subject: "bo-subject".into(),
            email: "bo@example.com".into(),
            ..ana(&[])
        })
        .await
        .unwrap();
    assert!(matches!(
        store.confirm_device(&bo, net, node).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .sign_in_failed(None, Some(net), "eve@elsewhere.test may not sign in here")
        .await
        .unwrap();

    let audit = actions(&store).await;
    let by = |action: &str| {
        audit
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, actor)| actor.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by("user.sign_in").len(), 3);
    assert_eq!(
        by("member.sign_in"),
        vec!["user:ana@example.com".to_string()]
    );
    assert_eq!(by("user.sign_in_failed"), vec!["system".to_string()]);
    assert!(store.audit_verify(None).await.unwrap().ok);

    // Disabled, the device reads as revoked and the network's netmaps
    // change; enabled, it is back as it was. Nobody else is touched.
    let version = store.get_network(net).await.unwrap().netmap_version;
    let admin = Actor::token("ops");
    let (user, changed) = store
        .set_user_disabled(&admin, "ana@example.com", true)
        .await
        .unwrap();
    assert!(user.disabled);
    assert_eq!(changed, vec![net]);
    assert_eq!(
        store.get_member(net, node).await.unwrap().state,
        MemberState::Revoked
    );
    assert!(store.get_network(net).await.unwrap().netmap_version > version);
    // A disabled person signing in again is returned as disabled, unchanged.
    assert!(store.sign_in_user(&ana(&[])).await.unwrap().disabled);
    let (_, changed) = store
        .set_user_disabled(&admin, "ana@example.com", true)
        .await
        .unwrap();
    assert!(changed.is_empty(), "disabling twice changes nothing");
    store
        .set_user_disabled(&admin, &user.id, false)
        .await
        .unwrap();
    let back = store.get_member(net, node).await.unwrap();
    assert_eq!(back.state, MemberState::Authorized);
    assert_eq!(back.ipv4, member.ipv4);
    assert!(matches!(
        store
            .set_user_disabled(&admin, "nobody@example.com", true)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_device_expires_and_its_owner_brings_it_back() {
    let (_dir, store, net) = store_with_network().await;
    let admin = Actor::token("ops");
    let network = store.get_network(net).await.unwrap();
    assert_eq!(network.device_expiry_secs, 180 * 24 * 3600);
    let ana = store.sign_in_user(&ana(&[])).await.unwrap();
    let node = join_pending(&store, net, "laptop").await;
    let member = store.confirm_device(&ana, net, node).await.unwrap();
    let expires = member.expires_at.clone().unwrap();
    let in_180_days = time::OffsetDateTime::now_utc() + time::Duration::days(180);
    let at = time::OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        (at - in_180_days).abs() < time::Duration::minutes(1),
        "{expires}"
    );
    assert!(!member.expired);
    // Nothing is due yet.
    assert!(store.expire_due_devices().await.unwrap().is_empty());

    // An admin ends the sign-in: the device reads as pending and expired,
    // keeps its name and address, and netmaps change.
    let version = store.get_network(net).await.unwrap().netmap_version;
    let expired = store.expire_device(&admin, net, node).await.unwrap();
    assert_eq!(expired.state, MemberState::Pending);
    assert!(expired.expired && !expired.authorized);
    assert_eq!(expired.ipv4, member.ipv4);
    assert!(store.get_network(net).await.unwrap().netmap_version > version);
    assert!(matches!(
        store.expire_device(&admin, net, node).await,
        Err(StoreError::Conflict(_))
    ));
    // A join without a key stays pending (it will be offered a sign-in).
    let rejoin = store.get_member(net, node).await.unwrap();
    assert_eq!(rejoin.state, MemberState::Pending);

    // The owner signs in again: on, with a fresh period, same address.
    let back = store.confirm_device(&ana, net, node).await.unwrap();
    assert_eq!(back.state, MemberState::Authorized);
    assert!(!back.expired && back.ipv4 == member.ipv4);
    let stored = store.get_member(net, node).await.unwrap();
    assert!(stored.authorized && !stored.expired);

    // The clock notes a sign-in that ran out by itself, once.
    store
        .update_network(
            &admin,
            net,
            warren_controller::store::NetworkPatch {
                device_expiry_secs: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.confirm_device(&ana, net, node).await.unwrap();
    let due = store.expire_due_devices().await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].expired && due[0].state == MemberState::Pending);
    assert!(store.expire_due_devices().await.unwrap().is_empty());

    // An admin who authorizes an expired device lifts its expiry.
    let approved = store
        .set_member_state(&admin, net, node, MemberState::Authorized)
        .await
        .unwrap();
    assert!(approved.authorized && approved.expires_at.is_none());
    assert!(store.get_member(net, node).await.unwrap().authorized);

    // Devices without an owner have no sign-in to end.
    let other = join_pending(&store, net, "server").await;
    store
        .set_member_state(&admin, net, other, MemberState::Authorized)
        .await
        .unwrap();
    assert!(matches!(
        store.expire_device(&admin, net, other).await,
        Err(StoreError::Conflict(_))
    ));
    let audit = actions(&store).await;
    let expiries: Vec<_> = audit
        .iter()
        .filter(|(a, _)| a == "member.expire")
        .map(|(_, actor)| actor.clone())
        .collect();
    assert_eq!(expiries.len(), 2, "{expiries:?}");
    assert!(
        expiries.contains(&"token:ops".to_string()) && expiries.contains(&"system".to_string())
    );
    assert!(store.audit_verify(None).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_person_takes_their_devices_and_sessions_along() {
    let (_dir, store, net) = store_with_network().await;
    let admin = Actor::token("ops");
    let first = store.sign_in_user(&ana(&["ops"])).await.unwrap();
    let laptop = join_pending(&store, net, "laptop").await;
    store.confirm_device(&first, net, laptop).await.unwrap();
    let server = join_pending(&store, net, "server").await;
    store
        .set_member_state(&admin, net, server, MemberState::Authorized)
        .await
        .unwrap();
    let session = store.start_session(&first, 3600).await.unwrap();
    let version = store.get_network(net).await.unwrap().netmap_version;

    let (gone, changed) = store.delete_user(&admin, "ana@example.com").await.unwrap();
    assert_eq!(gone.id, first.id);
    assert_eq!(changed, vec![net]);
    assert!(matches!(
        store.get_member(net, laptop).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.get_member(net, server).await.unwrap().authorized);
    assert!(store.get_network(net).await.unwrap().netmap_version > version);
    assert!(store.session_user(&session, 3600).await.unwrap().is_none());
    assert!(store.list_users().await.unwrap().is_empty());
    assert!(matches!(
        store.delete_user(&admin, "ana@example.com").await,
        Err(StoreError::NotFound(_))
    ));
    // Signing in again makes a new person, with no devices.
    let again = store.sign_in_user(&ana(&[])).await.unwrap();
    assert_ne!(again.id, first.id);
    let audit = actions(&store).await;
    assert!(audit.contains(&("user.delete".into(), "token:ops".into())));
    assert!(store.audit_verify(None).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_is_asked_again_and_a_person_it_dropped_is_disabled() {
    let (_dir, store, net) = store_with_network().await;
    let first = store.sign_in_user(&ana(&["ops"])).await.unwrap();
    let laptop = join_pending(&store, net, "laptop").await;
    store.confirm_device(&first, net, laptop).await.unwrap();
    // Nothing kept, nothing to ask.
    assert!(store.users_to_recheck(i64::MAX).await.unwrap().is_empty());
    store
        .keep_provider_token(&first.id, Some("refresh-1"))
        .await
        .unwrap();
    // Just asked: not due before its time.
    assert!(store.users_to_recheck(0).await.unwrap().is_empty());
    let due = store.users_to_recheck(i64::MAX).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1, "refresh-1");

    // Same answer: nothing changes but the token.
    let same = store
        .recheck_passed(&first, &ana(&["ops"]), Some("refresh-2"))
        .await
        .unwrap();
    assert!(same.is_empty());
    assert_eq!(
        store.users_to_recheck(i64::MAX).await.unwrap()[0].1,
        "refresh-2"
    );
    // New groups: the user follows, the network's netmaps change.
    let version = store.get_network(net).await.unwrap().netmap_version;
    let moved = store
        .recheck_passed(&first, &ana(&["data-team"]), None)
        .await
        .unwrap();
    assert_eq!(moved, vec![net]);
    assert!(store.get_network(net).await.unwrap().netmap_version > version);
    let member = store.get_member(net, laptop).await.unwrap();
    assert_eq!(member.owner_groups, vec!["data-team"]);

    // Dropped by the provider: disabled, devices revoked, said why.
    let now_user = store.list_users().await.unwrap().remove(0);
    let cut = store
        .removed_at_provider(&now_user, "refresh refused: invalid_grant")
        .await
        .unwrap();
    assert_eq!(cut, vec![net]);
    assert_eq!(
        store.get_member(net, laptop).await.unwrap().state,
        MemberState::Revoked
    );
    assert!(store.users_to_recheck(i64::MAX).await.unwrap().is_empty());
    assert!(store
        .removed_at_provider(&now_user, "again")
        .await
        .unwrap()
        .is_empty());
    let audit = actions(&store).await;
    assert!(audit.contains(&("user.removed_at_provider".into(), "system".into())));
    assert!(audit.iter().any(|(a, _)| a == "user.update"));
}
