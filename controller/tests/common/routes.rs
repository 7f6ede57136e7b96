//! Helpers of the route and site suites: routes advertised through the
//! store (as a node's session writes them), approved and listed through
//! the API.

use axum::http::{Method, StatusCode};
use ipnet::IpNet;
use serde_json::{json, Value};
use warren_controller::store::{RouteChecks, RouteStore, SqlStore, Store, StoreError};
use warren_proto::site::SiteSpec;
use warren_proto::{NodeId, NodePublicKey};

use super::Harness;

pub fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A member's full key: self-writes name a member by it, as its session does.
pub async fn key_of(store: &SqlStore, net: &str, node: NodeId) -> NodePublicKey {
    store
        .get_member(net.parse().unwrap(), node)
        .await
        .unwrap()
        .public_key
}

/// `node` advertises `routes` (for site `spec`, if any) under `checks`.
pub async fn advertise_with(
    store: &SqlStore,
    net: &str,
    node: NodeId,
    routes: &[&str],
    spec: Option<&SiteSpec>,
    checks: &RouteChecks,
) -> Result<(), StoreError> {
    let routes: Vec<IpNet> = routes.iter().map(|r| p(r)).collect();
    let key = key_of(store, net, node).await;
    store
        .set_advertised_routes(net.parse().unwrap(), &key, &routes, spec, checks)
        .await
        .map(|_| ())
}

/// `node` advertises `routes` (for site `spec`, if any) under the default
/// checks, which must accept them.
pub async fn advertise(
    h: &Harness,
    net: &str,
    node: NodeId,
    routes: &[&str],
    spec: Option<&SiteSpec>,
) {
    advertise_with(&h.store, net, node, routes, spec, &RouteChecks::default())
        .await
        .unwrap();
}

/// An admin approves `node`'s route to `prefix`: the API's answer.
pub async fn approve(h: &Harness, net: &str, node: NodeId, prefix: &str) -> (StatusCode, Value) {
    h.admin(
        Method::POST,
        &format!("/api/v1/networks/{net}/routes"),
        Some(json!({ "node": node, "prefix": prefix })),
    )
    .await
}

/// The API's list of the network's routes.
pub async fn routes(h: &Harness, net: &str) -> Vec<Value> {
    let (status, list) = h
        .admin(Method::GET, &format!("/api/v1/networks/{net}/routes"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["routes"].as_array().unwrap().clone()
}
