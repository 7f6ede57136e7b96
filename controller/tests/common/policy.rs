//! Helpers of the policy and grant suites: a network of members with
//! tags and a route, and the policy, explain, audit and grant calls.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use warren_controller::store::{JoinRequest, Store};
use warren_proto::{NodeId, NodePrivateKey};

use super::routes::{advertise, approve};
use super::Harness;

pub const ISSUE_EXAMPLE: &str = r#"[groups]
ops = ["laptop-ana", "tag:ci"]
dev = ["laptop-bo"]

[[allow]]
from = ["group:ops"]
to = ["10.96.0.0/12"]
ports = ["tcp:6379"]

[[allow]]
from = ["group:dev"]
to = ["master"]
ports = ["tcp:3000", "icmp"]

[[test]]
from = "laptop-bo"
to = "10.96.0.10"
port = "tcp:6379"
expect = "deny"
"#;

/// A member joined straight through the store, authorized by a key.
pub async fn member(h: &Harness, net: &str, name: &str) -> NodeId {
    member_at(h, net, name, "192.0.2.10:41641").await
}

/// [`member`], reporting `endpoint` as its address.
pub async fn member_at(h: &Harness, net: &str, name: &str, endpoint: &str) -> NodeId {
    let (status, made) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/keys"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let node_key = NodePrivateKey::generate().public_key();
    h.store
        .join(JoinRequest {
            network_id: net.parse().unwrap(),
            node_key,
            name: name.into(),
            preauth_key: made["key"].as_str().map(str::to_string),
            agent_version: "0.1.0".into(),
            endpoints: vec![endpoint.parse().unwrap()],
        })
        .await
        .unwrap();
    NodeId::from_key(&node_key)
}

/// The issue's cluster: two laptops, a CI runner tagged `ci`, and a master
/// serving 10.96.0.0/12.
pub async fn cluster(h: &Harness) -> String {
    let net = h.network("prod").await;
    member(h, &net, "laptop-ana").await;
    member(h, &net, "laptop-bo").await;
    let ci = member(h, &net, "ci-runner").await;
    let master = member(h, &net, "master").await;
    let (status, body) = tag(h, &net, ci, "tag:ci").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    advertise(h, &net, master, &["10.96.0.0/12"], None).await;
    let (status, body) = approve(h, &net, master, "10.96.0.0/12").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    net
}

pub async fn tag(h: &Harness, net: &str, node: NodeId, tag: &str) -> (StatusCode, Value) {
    h.admin(
        Method::POST,
        &format!("/api/v1/networks/{net}/members/{node}/tags"),
        Some(json!({ "tag": tag })),
    )
    .await
}

pub async fn set_policy(h: &Harness, net: &str, text: &str) -> (StatusCode, Value) {
    h.admin(
        Method::PUT,
        &format!("/api/v1/networks/{net}/policy"),
        Some(json!({ "text": text })),
    )
    .await
}

pub async fn current(h: &Harness, net: &str) -> Value {
    let (status, body) = h
        .admin(Method::GET, &format!("/api/v1/networks/{net}/policy"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub async fn explain(h: &Harness, net: &str, from: &str, to: &str, port: &str) -> Value {
    let (status, body) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy/explain?from={from}&to={to}&port={port}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub async fn audit(h: &Harness, action: &str) -> Vec<Value> {
    let (_, page) = h.admin(Method::GET, "/api/v1/audit?limit=1000", None).await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

pub async fn add_grant(h: &Harness, net: &str, body: Value) -> (StatusCode, Value) {
    h.admin(
        Method::POST,
        &format!("/api/v1/networks/{net}/grants"),
        Some(body),
    )
    .await
}

pub async fn grants(h: &Harness, net: &str, all: bool) -> Vec<Value> {
    let (status, body) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/grants?all={all}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["grants"].as_array().unwrap().clone()
}
