//! Shared test helpers: an API harness over a fresh database, and a QUIC
//! test node that speaks the control protocol.
//!
//! The database is a SQLite file in a temporary directory, or, with
//! `WARREN_TEST_DATABASE=postgres`, a fresh database on a real PostgreSQL
//! server the test starts ([`warren_lab::postgres`]): `scripts/test` runs
//! the store's conformance suites both ways.
#![allow(dead_code)]

pub mod node;
pub mod policy;
pub mod routes;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tower::ServiceExt;
use warren_controller::api::{self, ApiState};
use warren_controller::audit_anchor::HeadSigner;
use warren_controller::hub::Hub;
use warren_controller::metrics::Metrics;
use warren_controller::store::{Actor, Scope, SqlStore, Store, TokenSpec};

/// A fresh store, and what keeps it: the directory (SQLite) or the
/// server (PostgreSQL).
pub struct TestStore {
    pub store: SqlStore,
    pub dir: tempfile::TempDir,
    pub postgres: Option<warren_lab::postgres::TestDatabase>,
}

/// Whether this run tests PostgreSQL (`WARREN_TEST_DATABASE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("WARREN_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A fresh store on the database this run tests.
pub async fn test_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    if on_postgres() {
        let db = warren_lab::postgres::TestDatabase::new().unwrap();
        let store = SqlStore::connect_postgres(&db.url).await.unwrap();
        return TestStore {
            store,
            dir,
            postgres: Some(db),
        };
    }
    let store = SqlStore::open(&dir.path().join("controller.db"))
        .await
        .unwrap();
    TestStore {
        store,
        dir,
        postgres: None,
    }
}

/// An API over a fresh database, with an admin and an auditor token.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub postgres: Option<warren_lab::postgres::TestDatabase>,
    pub store: SqlStore,
    pub hub: Arc<Hub>,
    pub router: Router,
    pub admin: String,
    pub auditor: String,
    /// The fingerprint of the certificate that signs audit heads.
    pub fingerprint: String,
}

impl Harness {
    pub async fn new() -> Self {
        let TestStore {
            store,
            dir,
            postgres,
        } = test_store().await;
        let admin = store
            .create_token(
                &Actor::system(),
                TokenSpec::new(Scope::Admin, Some("admin")),
            )
            .await
            .unwrap();
        let auditor = store
            .create_token(
                &Actor::system(),
                TokenSpec::new(Scope::Auditor, Some("auditor")),
            )
            .await
            .unwrap();
        let hub = Hub::new(Arc::new(store.clone()), Arc::new(Metrics::default()));
        let made = rcgen::generate_simple_self_signed(vec!["warren-controller".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let signer = HeadSigner::new(made.cert.der(), &key).unwrap();
        let fingerprint = warren_controller::data_dir::fingerprint(made.cert.der());
        let router =
            api::router(ApiState::new(hub.clone(), vec![]).with_audit_signer(Arc::new(signer)));
        Self {
            dir,
            postgres,
            store,
            hub,
            router,
            admin: admin.secret,
            auditor: auditor.secret,
            fingerprint,
        }
    }

    /// Another store on the same database, as a second controller
    /// process (a replica) would open it.
    pub async fn second_store(&self) -> SqlStore {
        match &self.postgres {
            Some(db) => SqlStore::connect_postgres(&db.url).await.unwrap(),
            None => SqlStore::open(&self.dir.path().join("controller.db"))
                .await
                .unwrap(),
        }
    }

    /// A plain pool on the database, as someone who has the file (or the
    /// database's password) would open it. Statements number their
    /// placeholders (`$1`), which both databases read.
    pub async fn raw_pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match &self.postgres {
            Some(db) => db.url.clone(),
            None => format!(
                "sqlite://{}",
                self.dir.path().join("controller.db").display()
            ),
        };
        sqlx::AnyPool::connect(&url).await.unwrap()
    }

    /// The statement that drops the audit log's trigger `name`.
    pub fn drop_audit_trigger(&self, name: &str) -> String {
        match self.postgres {
            Some(_) => format!("DROP TRIGGER {name} ON audit_log"),
            None => format!("DROP TRIGGER {name}"),
        }
    }

    /// Sends a request with a JSON body (if any) and returns status and JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                builder = builder.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    /// Sends a raw request.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.admin.clone();
        self.call(method, path, Some(&token), body).await
    }

    /// Creates a network through the API and returns its ID.
    pub async fn network(&self, name: &str) -> String {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/networks",
                Some(serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}

impl Harness {
    /// A node joins `net` straight through the store, with a pre-auth key
    /// or (without one) pending; its node ID.
    pub async fn join(
        &self,
        net: &str,
        name: &str,
        preauth_key: Option<&str>,
    ) -> warren_proto::NodeId {
        let node_key = warren_proto::NodePrivateKey::generate().public_key();
        self.store
            .join(warren_controller::store::JoinRequest {
                network_id: net.parse().unwrap(),
                node_key,
                name: name.into(),
                preauth_key: preauth_key.map(str::to_string),
                agent_version: "0.1.0".into(),
                endpoints: vec![],
            })
            .await
            .unwrap();
        warren_proto::NodeId::from_key(&node_key)
    }
}

/// Asserts the error body shape and returns its code.
pub fn error_code(body: &Value) -> &str {
    let message = body["error"]["message"].as_str();
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "no message in {body}"
    );
    body["error"]["code"].as_str().expect("error code")
}

/// An API router over an existing store, with its own admin token.
pub struct ApiHandle {
    router: Router,
    admin: String,
}

impl ApiHandle {
    pub async fn new(router: Router, store: Arc<dyn Store>) -> Self {
        let admin = store
            .create_token(
                &Actor::system(),
                TokenSpec::new(Scope::Admin, Some("test-admin")),
            )
            .await
            .unwrap()
            .secret;
        Self { router, admin }
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.admin));
        let body = match body {
            Some(v) => {
                builder = builder.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }
}

/// Creates the network "prod" (10.147.0.0/16, zone prod.warren.internal)
/// as the system, as most control-protocol tests start.
pub async fn prod_network(store: &Arc<dyn Store>) -> warren_proto::NetworkId {
    store
        .create_network(
            &warren_controller::store::Actor::system(),
            warren_controller::store::NewNetwork {
                name: "prod".into(),
                pool: "10.147.0.0/16".parse().unwrap(),
                zone: "prod.warren.internal".into(),
                mtu: 1420,
            },
        )
        .await
        .unwrap()
        .id
}

/// A whole controller served on loopback (QUIC, STUN) with the network
/// "prod" and an API handle on its store.
pub struct Served {
    pub _dir: tempfile::TempDir,
    pub _postgres: Option<warren_lab::postgres::TestDatabase>,
    pub running: warren_controller::server::Running,
    pub net: warren_proto::NetworkId,
    pub api: ApiHandle,
}

pub async fn served() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let postgres = on_postgres().then(|| warren_lab::postgres::TestDatabase::new().unwrap());
    let mut options = warren_controller::server::ServerOptions::loopback(dir.path().join("data"));
    options.database = postgres.as_ref().map(|db| db.url.clone());
    let running = warren_controller::server::start(options).await.unwrap();
    let store = running.hub.store().clone();
    let net = prod_network(&store).await;
    let api = ApiHandle::new(
        api::router(ApiState::new(running.hub.clone(), vec![])),
        store,
    )
    .await;
    Served {
        _dir: dir,
        _postgres: postgres,
        running,
        net,
        api,
    }
}

impl Served {
    /// A node that joined the network with a fresh key, and its first netmap.
    pub async fn joined(&self, name: &str) -> (node::TestNode, warren_proto::netmap::Netmap) {
        let (_, made) = self
            .api
            .admin(
                Method::POST,
                &format!("/api/v1/networks/{}/keys", self.net),
                Some(serde_json::json!({})),
            )
            .await;
        let mut node =
            node::TestNode::authenticated(self.running.quic_addr, &self.running.fingerprint).await;
        let (_, map) = node.join(self.net, name, made["key"].as_str()).await;
        (node, map.unwrap())
    }
}
