//! Upgrades: a database made at every earlier schema version, holding what
//! a controller of that version kept (networks, members authorized and
//! pending, a pre-auth key, an API token, an audit chain), opens with the
//! current controller. Nothing is lost, the chain still verifies, and the
//! controller goes on writing to it.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::path::Path;

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use warren_controller::audit_chain::{entry_hash, EntryFields, GENESIS};
use warren_controller::store::{
    Actor, AuditQuery, JoinDecision, JoinRequest, MemberState, PolicyStore, SqlStore, Store,
};
use warren_proto::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const NET: &str = "8056c2e21c000001";
const TOKEN: &str = "wt_upgrade-test-token";
const KEY: &str = "wk_upgrade-test-key";

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

struct Seed {
    authorized: NodePublicKey,
    pending: NodePublicKey,
}

/// A database at schema version `version` (the first `version`
/// migrations), with what the first version kept written before the
/// later ones ran, as an upgraded controller would have it.
async fn database_at(path: &Path, version: usize) -> Seed {
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true),
    )
    .await
    .unwrap();
    migrate(&pool, 1).await;
    let seed = Seed {
        authorized: NodePrivateKey::generate().public_key(),
        pending: NodePrivateKey::generate().public_key(),
    };
    let at = "2026-01-02T03:04:05Z";
    sqlx::query("INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES ('0a0b0c0d', 'ops', 0, ?, ?)")
        .bind(hash(TOKEN))
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO networks (id, name, pool, zone, mtu, netmap_version, created_at) \
         VALUES (?, 'prod', '10.147.0.0/16', 'prod.warren.internal', 1420, 3, ?)",
    )
    .bind(NET)
    .bind(at)
    .execute(&pool)
    .await
    .unwrap();
    for (key, name, ipv4, state) in [
        (&seed.authorized, "web", 0x0a93_0001u32, 1),
        (&seed.pending, "laptop", 0x0a93_0002, 0),
    ] {
        sqlx::query(
            "INSERT INTO members (network_id, node_id, public_key, name, ipv4, state, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(NET)
        .bind(NodeId::from_key(key).to_string())
        .bind(key.to_string())
        .bind(name)
        .bind(i64::from(ipv4))
        .bind(state)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO preauth_keys (id, network_id, hash, reusable, created_by, created_at) \
         VALUES ('1a2b3c4d', ?, ?, 1, 'token:0a0b0c0d', ?)",
    )
    .bind(NET)
    .bind(hash(KEY))
    .bind(at)
    .execute(&pool)
    .await
    .unwrap();
    let mut prev = GENESIS.to_string();
    for (id, action) in [(1i64, "network.create"), (2, "member.authorize")] {
        let fields = EntryFields {
            id,
            at,
            actor: "token:0a0b0c0d",
            action,
            network_id: Some(NET),
            target: None,
            before: None,
            after: Some("{}"),
        };
        let hash = entry_hash(&prev, &fields);
        sqlx::query(
            "INSERT INTO audit_log (id, at, at_unix, actor, action, network_id, target, before, \
             after, prev_hash, hash) VALUES (?, ?, 1767323045, ?, ?, ?, NULL, NULL, '{}', ?, ?)",
        )
        .bind(id)
        .bind(at)
        .bind(fields.actor)
        .bind(action)
        .bind(NET)
        .bind(&prev)
        .bind(&hash)
        .execute(&pool)
        .await
        .unwrap();
        prev = hash;
    }
    if version >= POLICY_VERSION {
        // What the access policy's version kept: a document, a tag, a grant.
        migrate(&pool, POLICY_VERSION).await;
        sqlx::query(
            "INSERT INTO policies (network_id, version, text, created_by, created_at) \
             VALUES (?, 2, ?, 'token:0a0b0c0d', ?)",
        )
        .bind(NET)
        .bind(POLICY)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO member_tags (network_id, node_id, tag, created_by, created_at) \
             VALUES (?, ?, 'db', 'token:0a0b0c0d', ?)",
        )
        .bind(NET)
        .bind(NodeId::from_key(&seed.authorized).to_string())
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO grants (id, network_id, source, target, ports, reason, created_by, \
             created_at, ends_at, ends_unix) VALUES ('9a8b7c6d', ?, 'laptop', 'web', \
             '[\"tcp:22\"]', 'upgrade', 'token:0a0b0c0d', ?, '2999-01-01T00:00:00Z', 32472144000)",
        )
        .bind(NET)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    migrate(&pool, version).await;
    pool.close().await;
    seed
}

/// The schema version where the access policy came (`0006_policy.sql`).
const POLICY_VERSION: usize = 6;
const POLICY: &str = "[[allow]]\nfrom = [\"*\"]\nto = [\"tag:db\"]\nports = [\"tcp:5432\"]\n";

/// Runs the first `version` migrations (those not run yet).
async fn migrate(pool: &SqlitePool, version: usize) {
    let upto = Migrator {
        migrations: Cow::Owned(MIGRATOR.migrations[..version].to_vec()),
        ..Migrator::DEFAULT
    };
    upto.run(pool).await.unwrap();
}

#[tokio::test]
async fn a_database_of_every_earlier_schema_version_upgrades_and_keeps_everything() {
    let versions = MIGRATOR.migrations.len();
    assert!(versions >= 15, "found {versions} migrations");
    let net: NetworkId = NET.parse().unwrap();
    for version in 1..versions {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.db");
        let seed = database_at(&path, version).await;
        let store = SqlStore::open(&path)
            .await
            .unwrap_or_else(|e| panic!("opening a version {version} database: {e}"));
        let at = format!("from version {version}");

        let token = store.find_token(TOKEN).await.unwrap();
        assert_eq!(token.map(|t| t.name).as_deref(), Some("ops"), "{at}");
        let network = store.get_network(net).await.unwrap();
        assert_eq!(network.zone, "prod.warren.internal", "{at}");
        let members = store.list_members(net).await.unwrap();
        assert_eq!(members.len(), 2, "{at}");
        let web = store
            .get_member(net, NodeId::from_key(&seed.authorized))
            .await
            .unwrap();
        assert_eq!(web.state, MemberState::Authorized, "{at}");
        assert_eq!(
            web.ipv4.map(|a| a.to_string()).as_deref(),
            Some("10.147.0.1"),
            "{at}"
        );
        assert_eq!(web.name.as_deref(), Some("web"), "{at}");
        let laptop = store
            .get_member(net, NodeId::from_key(&seed.pending))
            .await
            .unwrap();
        assert_eq!(laptop.state, MemberState::Pending, "{at}");
        assert!(
            store.audit_verify(None).await.unwrap().ok,
            "{at}: the chain"
        );
        if version >= POLICY_VERSION {
            let policy = store.policy_state(net).await.unwrap();
            assert_eq!(
                (policy.current.version, policy.current.text.as_str()),
                (2, POLICY),
                "{at}"
            );
            let tags = store.member_tags(net, web.node_id).await.unwrap();
            assert_eq!(tags, ["tag:db"], "{at}");
            let grants = store.list_grants(net, false).await.unwrap();
            assert_eq!(
                grants.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
                ["9a8b7c6d"],
                "{at}"
            );
        }

        // The controller goes on: the old key admits a new member, the
        // policy and the chain take new entries.
        let joined = store
            .join(JoinRequest {
                network_id: net,
                node_key: NodePrivateKey::generate().public_key(),
                name: "db".into(),
                preauth_key: Some(KEY.into()),
                agent_version: "0.9.0".into(),
                endpoints: vec![],
            })
            .await
            .unwrap_or_else(|e| panic!("{at}: join: {e}"));
        assert_eq!(joined.decision, JoinDecision::Authorized, "{at}");
        store
            .set_policy(
                &Actor::system(),
                net,
                "[[allow]]\nfrom = [\"*\"]\nto = [\"web\"]\nports = [\"tcp:443\"]\n",
            )
            .await
            .unwrap_or_else(|e| panic!("{at}: policy: {e}"));
        let entries = store
            .audit_page(&AuditQuery {
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert!(entries.len() >= 4, "{at}: {} entries", entries.len());
        assert!(
            store.audit_verify(None).await.unwrap().ok,
            "{at}: the chain after new entries"
        );
        store.close().await;
    }
}
