//! `/api/v1/networks/{id}/policy...` (the access policy: get, set, dry
//! run, explain, history, compiled form) and `/members/{node}/tags`.
//! Explain and the compiled form include active grants; a document's own
//! tests (set, dry run) judge the document alone.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use warren_proto::filter::PortRange;
use warren_proto::{NetworkId, NodeId};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{ApiState, Caller};
use crate::policy::{self, Policy, TestTarget};
use crate::store::{PolicySet, PolicyVersion};

/// The routes of this resource, merged into `/api/v1`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/networks/{id}/policy", get(show).put(set))
        .route("/networks/{id}/policy/test", post(dry_run))
        .route("/networks/{id}/policy/explain", get(explain))
        .route("/networks/{id}/policy/history", get(history))
        .route("/networks/{id}/policy/compiled", get(compiled))
        .route(
            "/networks/{id}/members/{node}/tags",
            get(tags).post(add_tag),
        )
        .route(
            "/networks/{id}/members/{node}/tags/{tag}",
            delete(remove_tag),
        )
}

/// A policy document, as TOML text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    text: String,
}

/// One packet to explain: `to` is a member name or an IP address, `port`
/// is `tcp:6379`, `udp:53` or `icmp`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    from: String,
    to: String,
    port: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTag {
    tag: String,
}

pub async fn show(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
) -> Result<Json<PolicyVersion>, ApiError> {
    Ok(Json(state.store().policy_state(net).await?.current))
}

pub async fn set(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<PolicyText>,
) -> Result<Json<PolicySet>, ApiError> {
    let set = crate::service::set_policy(&state.hub, &caller.actor(), net, &body.text).await?;
    Ok(Json(set))
}

/// Checks a document as `set` would, against the network as it is now,
/// and stores nothing.
pub async fn dry_run(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<PolicyText>,
) -> Result<Json<Value>, ApiError> {
    let current = state.store().policy_state(net).await?;
    let next = current.current.version + 1;
    let checked = policy::check(&body.text, &current.view, next, &[]).map_err(ApiError::Policy)?;
    let members: Vec<Value> = current
        .view
        .members
        .iter()
        .filter(|m| m.authorized)
        .map(|m| {
            let compiled = checked.compiled.member(&m.node_id);
            json!({
                "name": m.name,
                "node_id": m.node_id,
                "peers": checked.compiled.peers_of(&m.node_id).len(),
                "inbound_rules": compiled.filter.inbound.len(),
                "outbound_rules": compiled.filter.outbound.len(),
            })
        })
        .collect();
    Ok(Json(json!({
        "ok": true,
        "would_be_version": next,
        "tests": checked.tests,
        "members": members,
    })))
}

pub async fn explain(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiQuery(query): ApiQuery<ExplainQuery>,
) -> Result<Json<Value>, ApiError> {
    let port: PortRange = query
        .port
        .parse()
        .map_err(|e: warren_proto::filter::PortRangeError| ApiError::BadRequest(e.to_string()))?;
    let to = match query.to.parse::<IpAddr>() {
        Ok(ip) => TestTarget::Ip(ip),
        Err(_) => TestTarget::Member(query.to.clone()),
    };
    let current = state.store().policy_state(net).await?;
    let policy = Policy::parse(&current.current.text).map_err(|e| {
        ApiError::Internal(format!(
            "stored policy v{} does not parse: {e}",
            current.current.version
        ))
    })?;
    let compiled = policy::compile(
        &policy,
        &current.grant_rules(),
        &current.view,
        current.current.version,
    );
    let decision = policy::explain(&compiled, &current.view, &query.from, &to, port)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(json!({
        "from": query.from,
        "to": query.to,
        "port": port,
        "policy_version": current.current.version,
        "allowed": decision.allowed,
        "rule": decision.rule,
        "reason": decision.reason,
    })))
}

pub async fn history(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
) -> Result<Json<Value>, ApiError> {
    let versions = state.store().policy_history(net).await?;
    Ok(Json(json!({ "versions": versions })))
}

/// What each authorized member would receive: its filter and peers.
pub async fn compiled(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
) -> Result<Json<Value>, ApiError> {
    let current = state.store().policy_state(net).await?;
    let policy = Policy::parse(&current.current.text).map_err(|e| {
        ApiError::Internal(format!(
            "stored policy v{} does not parse: {e}",
            current.current.version
        ))
    })?;
    let compiled = policy::compile(
        &policy,
        &current.grant_rules(),
        &current.view,
        current.current.version,
    );
    let members: Vec<Value> = current
        .view
        .members
        .iter()
        .filter(|m| m.authorized)
        .map(|m| {
            let c = compiled.member(&m.node_id);
            json!({ "name": m.name, "node_id": m.node_id, "peers": compiled.peers_of(&m.node_id), "filter": c.filter })
        })
        .collect();
    Ok(Json(
        json!({ "policy_version": compiled.version, "members": members }),
    ))
}

pub async fn tags(
    State(state): State<ApiState>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
) -> Result<Json<Value>, ApiError> {
    let tags = state.store().member_tags(net, node).await?;
    Ok(Json(json!({ "node_id": node, "tags": tags })))
}

pub async fn add_tag(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
    ApiJson(body): ApiJson<NewTag>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tags =
        crate::service::set_tag(&state.hub, &caller.actor(), net, node, &body.tag, true).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "node_id": node, "tags": tags })),
    ))
}

pub async fn remove_tag(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, node, tag)): ApiPath<(NetworkId, NodeId, String)>,
) -> Result<Json<Value>, ApiError> {
    let tags = crate::service::set_tag(&state.hub, &caller.actor(), net, node, &tag, false).await?;
    Ok(Json(json!({ "node_id": node, "tags": tags })))
}
