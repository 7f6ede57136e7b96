//! The real binary killed with SIGKILL during a stream of API writes, 200
//! times: after every kill the database opens intact, the audit chain
//! verifies, and nothing acknowledged is lost. On SQLite, or on PostgreSQL
//! with `WARREN_TEST_DATABASE=postgres`.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand_core::RngCore;
use serde_json::{json, Value};
use warren_controller::store::{SqlStore, Store};

const BIN: &str = env!("CARGO_BIN_EXE_warren-controller");
const ROUNDS: usize = 200;

/// `--database URL` when the run is on PostgreSQL.
fn database_args(database: Option<&str>) -> Vec<String> {
    database
        .map(|url| vec!["--database".to_string(), url.to_string()])
        .unwrap_or_default()
}

fn token(dir: &Path, database: Option<&str>) -> String {
    let out = Command::new(BIN)
        .args([
            "token",
            "create",
            "--scope",
            "admin",
            "--name",
            "crash",
            "--data-dir",
        ])
        .arg(dir)
        .args(database_args(database))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts `serve` on loopback ports and returns it with its API address.
fn start(dir: &Path, database: Option<&str>) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen-quic",
            "127.0.0.1:0",
            "--listen-api",
            "127.0.0.1:0",
            "--listen-stun",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .args(database_args(database))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("api: http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("controller started");
    (child, addr)
}

async fn post(addr: &str, token: &str, path: &str, body: &Value) -> Option<Value> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let request = hyper::Request::post(path)
        .header("host", addr)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let response = sender.send_request(request).await.ok()?;
    let status = response.status();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    // Only a complete 2xx answer counts as acknowledged.
    status
        .is_success()
        .then(|| serde_json::from_slice(&bytes).ok())
        .flatten()
}

#[derive(Default, Clone)]
struct Acked {
    networks: Vec<String>,
    keys: Vec<String>,
}

/// Writes until the controller stops answering.
async fn writer(addr: String, token: String, tag: String, acked: Arc<Mutex<Acked>>) {
    for i in 0.. {
        let name = format!("{tag}-{i}");
        let Some(made) = post(&addr, &token, "/api/v1/networks", &json!({ "name": name })).await
        else {
            return;
        };
        let id = made["id"].as_str().unwrap().to_string();
        acked.lock().unwrap().networks.push(id.clone());
        let path = format!("/api/v1/networks/{id}/keys");
        let Some(key) = post(&addr, &token, &path, &json!({ "reusable": true })).await else {
            return;
        };
        acked
            .lock()
            .unwrap()
            .keys
            .push(key["id"].as_str().unwrap().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let postgres =
        common::on_postgres().then(|| warren_lab::postgres::TestDatabase::new().unwrap());
    let database = postgres.as_ref().map(|db| db.url.as_str());
    let token = token(&data, database);
    let acked = Arc::new(Mutex::new(Acked::default()));
    for round in 0..ROUNDS {
        let (mut child, addr) = start(&data, database);
        let writers: Vec<_> = (0..2)
            .map(|w| {
                tokio::spawn(writer(
                    addr.clone(),
                    token.clone(),
                    format!("r{round}w{w}"),
                    acked.clone(),
                ))
            })
            .collect();
        let delay = 20 + u64::from(rand_core::OsRng.next_u32() % 120);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in writers {
            tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .unwrap()
                .unwrap();
        }
        // Every kill recovers clean, checked before the next start.
        let so_far = acked.lock().unwrap().clone();
        check(&data, database, &so_far).await;
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.networks.len() > ROUNDS,
        "the writers got some writes in: {}",
        acked.networks.len()
    );
}

/// The database opens and is intact, every acknowledged write is there,
/// and the audit chain verifies.
async fn check(data: &Path, database: Option<&str>, acked: &Acked) {
    sqlx::any::install_default_drivers();
    let (store, pool) = match database {
        Some(url) => (
            SqlStore::connect_postgres(url).await.unwrap(),
            sqlx::AnyPool::connect(url).await.unwrap(),
        ),
        None => {
            let db = data.join("controller.db");
            let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(check, "ok");
            (SqlStore::open(&db).await.unwrap(), pool)
        }
    };
    let networks: Vec<(String,)> = sqlx::query_as("SELECT id FROM networks")
        .fetch_all(&pool)
        .await
        .unwrap();
    let keys: Vec<(String,)> = sqlx::query_as("SELECT id FROM preauth_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    let networks: std::collections::HashSet<_> = networks.into_iter().map(|(i,)| i).collect();
    let keys: std::collections::HashSet<_> = keys.into_iter().map(|(i,)| i).collect();
    for id in &acked.networks {
        assert!(networks.contains(id), "acknowledged network {id} lost");
    }
    for id in &acked.keys {
        assert!(keys.contains(id), "acknowledged key {id} lost");
    }
    let report = store.audit_verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    pool.close().await;
    store.close().await;
}
