//! Upgrades: a database made at every earlier schema version, holding what
//! a controller of that version kept (networks, members authorized and
//! pending, a pre-auth key, an API token, an audit chain), opens with the
//! current controller. Nothing is lost, the chain still verifies, and the
//! controller goes on writing to it. The run tests the store it is given:
//! SQLite, or PostgreSQL (whose schema starts at the SQLite version 15 it
//! was made equal to) in the conformance run.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::AnyPool;
use warren_controller::audit_chain::{entry_hash, EntryFields, GENESIS};
use warren_controller::store::{
    Actor, AuditQuery, JoinDecision, JoinRequest, MemberState, PolicyStore, SqlStore, Store,
};
use warren_lab::postgres::TestDatabase;
use warren_proto::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

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

/// A fresh, empty database of the kind this run tests.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Db {
    fn new() -> Db {
        if common::on_postgres() {
            Db::Postgres(TestDatabase::new().unwrap())
        } else {
            Db::Sqlite(tempfile::tempdir().unwrap())
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self {
            Db::Sqlite(_) => &SQLITE,
            Db::Postgres(_) => &POSTGRES,
        }
    }

    /// The first schema version with the access policy's tables
    /// (`0006_policy.sql`; PostgreSQL's first has them all).
    fn policy_version(&self) -> usize {
        match self {
            Db::Sqlite(_) => 6,
            Db::Postgres(_) => 1,
        }
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join("controller.db").display()),
            Db::Postgres(db) => db.url.clone(),
        }
    }

    /// Runs the first `version` migrations (those not run yet).
    async fn migrate(&self, version: usize) {
        let upto = Migrator {
            migrations: Cow::Owned(self.migrator().migrations[..version].to_vec()),
            ..Migrator::DEFAULT
        };
        match self {
            Db::Sqlite(dir) => {
                let pool = SqlitePool::connect_with(
                    SqliteConnectOptions::new()
                        .filename(dir.path().join("controller.db"))
                        .create_if_missing(true)
                        .foreign_keys(true),
                )
                .await
                .unwrap();
                upto.run(&pool).await.unwrap();
                pool.close().await;
            }
            Db::Postgres(db) => {
                let pool = PgPool::connect(&db.url).await.unwrap();
                upto.run(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// The current controller's store on it.
    async fn open(&self) -> SqlStore {
        match self {
            Db::Sqlite(dir) => SqlStore::open(&dir.path().join("controller.db")).await,
            Db::Postgres(db) => SqlStore::connect_postgres(&db.url).await,
        }
        .unwrap()
    }
}

/// Runs `sql` (placeholders `$1`...) with `binds`, as text or integers.
async fn exec(pool: &AnyPool, sql: &'static str, binds: &[Bind<'_>]) {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = match b {
            Bind::Text(t) => query.bind(t.to_string()),
            Bind::Int(i) => query.bind(*i),
        };
    }
    query
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}
use Bind::{Int, Text};

/// Brings `db` to schema version `version` (the first `version`
/// migrations), with what the first version kept written before the
/// later ones ran, as an upgraded controller would have it.
async fn database_at(db: &Db, version: usize) -> Seed {
    db.migrate(1).await;
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(&db.url()).await.unwrap();
    let seed = Seed {
        authorized: NodePrivateKey::generate().public_key(),
        pending: NodePrivateKey::generate().public_key(),
    };
    let at = "2026-01-02T03:04:05Z";
    let token_hash = hash(TOKEN);
    exec(
        &pool,
        "INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES ('0a0b0c0d', 'ops', 0, $1, $2)",
        &[Text(&token_hash), Text(at)],
    )
    .await;
    exec(
        &pool,
        "INSERT INTO networks (id, name, pool, zone, mtu, netmap_version, created_at) \
         VALUES ($1, 'prod', '10.147.0.0/16', 'prod.warren.internal', 1420, 3, $2)",
        &[Text(NET), Text(at)],
    )
    .await;
    for (key, name, ipv4, state) in [
        (&seed.authorized, "web", 0x0a93_0001i64, 1),
        (&seed.pending, "laptop", 0x0a93_0002, 0),
    ] {
        let node = NodeId::from_key(key).to_string();
        let public = key.to_string();
        exec(
            &pool,
            "INSERT INTO members (network_id, node_id, public_key, name, ipv4, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                Text(NET),
                Text(&node),
                Text(&public),
                Text(name),
                Int(ipv4),
                Int(state),
                Text(at),
            ],
        )
        .await;
    }
    let key_hash = hash(KEY);
    exec(
        &pool,
        "INSERT INTO preauth_keys (id, network_id, hash, reusable, created_by, created_at) \
         VALUES ('1a2b3c4d', $1, $2, 1, 'token:0a0b0c0d', $3)",
        &[Text(NET), Text(&key_hash), Text(at)],
    )
    .await;
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
        exec(
            &pool,
            "INSERT INTO audit_log (id, at, at_unix, actor, action, network_id, target, before, \
             after, prev_hash, hash) VALUES ($1, $2, 1767323045, $3, $4, $5, NULL, NULL, '{}', $6, $7)",
            &[Int(id), Text(at), Text(fields.actor), Text(action), Text(NET), Text(&prev), Text(&hash)],
        )
        .await;
        prev = hash;
    }
    if version >= db.policy_version() {
        // What the access policy's version kept: a document, a tag, a grant.
        db.migrate(db.policy_version()).await;
        exec(
            &pool,
            "INSERT INTO policies (network_id, version, text, created_by, created_at) \
             VALUES ($1, 2, $2, 'token:0a0b0c0d', $3)",
            &[Text(NET), Text(POLICY), Text(at)],
        )
        .await;
        let node = NodeId::from_key(&seed.authorized).to_string();
        exec(
            &pool,
            "INSERT INTO member_tags (network_id, node_id, tag, created_by, created_at) \
             VALUES ($1, $2, 'db', 'token:0a0b0c0d', $3)",
            &[Text(NET), Text(&node), Text(at)],
        )
        .await;
        exec(
            &pool,
            "INSERT INTO grants (id, network_id, source, target, ports, reason, created_by, \
             created_at, ends_at, ends_unix) VALUES ('9a8b7c6d', $1, 'laptop', 'web', \
             '[\"tcp:22\"]', 'upgrade', 'token:0a0b0c0d', $2, '2999-01-01T00:00:00Z', 32472144000)",
            &[Text(NET), Text(at)],
        )
        .await;
    }
    pool.close().await;
    db.migrate(version).await;
    seed
}

const POLICY: &str = "[[allow]]\nfrom = [\"*\"]\nto = [\"tag:db\"]\nports = [\"tcp:5432\"]\n";

#[tokio::test]
async fn a_database_of_every_earlier_schema_version_upgrades_and_keeps_everything() {
    let versions = Db::new().migrator().migrations.len();
    assert!(versions >= 2, "found {versions} migrations");
    let net: NetworkId = NET.parse().unwrap();
    for version in 1..versions {
        let db = Db::new();
        let seed = database_at(&db, version).await;
        let store = db.open().await;
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
        if version >= db.policy_version() {
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
