//! Users in the store: one per provider account, following the provider
//! at every sign-in; a signed-in device owned by its person.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use warren_controller::store::{
    Actor, AuditQuery, JoinDecision, JoinRequest, MemberState, NewNetwork, Person, SqliteStore,
    Store, StoreError, UserStore,
};
use warren_proto::{NodeId, NodePrivateKey};

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
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("controller.db"))
        .await
        .unwrap();
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

    // One user per (issuer, subject); later sign-ins update it.
    let first = store.sign_in_user(&ana(&["ops"])).await.unwrap();
    let again = store
        .sign_in_user(&ana(&["data-team", "ops"]))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(again.groups, vec!["data-team", "ops"]);
    assert_eq!(store.list_users().await.unwrap().len(), 1);

    let key = NodePrivateKey::generate().public_key();
    let joined = store
        .join(JoinRequest {
            network_id: net,
            node_key: key,
            name: "laptop".into(),
            preauth_key: None,
            agent_version: String::new(),
            endpoints: vec![],
        })
        .await
        .unwrap();
    assert_eq!(joined.decision, JoinDecision::Pending);
    let node = NodeId::from_key(&key);
    let member = store.confirm_device(&again, net, node).await.unwrap();
    assert_eq!(member.state, MemberState::Authorized);
    assert_eq!(member.owner.as_deref(), Some("ana@example.com"));
    assert!(member.ipv4.is_some() && member.name.as_deref() == Some("laptop"));
    let stored = store.get_member(net, node).await.unwrap();
    assert_eq!(stored.owner.as_deref(), Some("ana@example.com"));

    // Only a pending device can be signed in.
    assert!(matches!(
        store.confirm_device(&again, net, node).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .sign_in_failed(None, Some(net), "eve@elsewhere.test may not sign in here")
        .await
        .unwrap();

    let audit = store
        .audit_page(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let by = |action: &str| {
        audit
            .iter()
            .filter(|e| e.action == action)
            .map(|e| e.actor.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by("user.sign_in").len(), 2);
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
