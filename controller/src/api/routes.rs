//! `/api/v1/networks/{id}/routes`: subnet and exit routes, their approval,
//! and the network's auto-approval rules.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{json, Value};
use warren_proto::{NetworkId, NodeId};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{ApiState, Caller};
use crate::routes::{views, RouteView};
use crate::store::Approvee;

/// The routes of this resource, merged into `/api/v1`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/networks/{id}/routes",
            get(list).post(approve).delete(unapprove),
        )
        .route(
            "/networks/{id}/routes/auto-approvers",
            get(list_rules).post(add_rule).delete(remove_rule),
        )
}

/// Approve `prefix` for `node`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    node: NodeId,
    prefix: IpNet,
}

/// Which approval to withdraw (query parameters).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unapprove {
    node: NodeId,
    prefix: IpNet,
}

/// An auto-approval rule: `node` is a node ID or `*` (any member).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    prefix: IpNet,
    node: String,
}

fn approvee(text: &str) -> Result<Approvee, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("node must be a node ID or \"*\", not {text:?}")))
}

async fn view(state: &ApiState, net: NetworkId) -> Result<Vec<RouteView>, ApiError> {
    // From the database, not the hub's cache: an admin sees what is stored.
    let snapshot = state
        .store()
        .network_snapshot(net)
        .await?
        .ok_or_else(|| ApiError::NotFound("network".into()))?;
    Ok(views(&snapshot))
}

pub async fn list(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "routes": view(&state, net).await? })))
}

pub async fn approve(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<Approve>,
) -> Result<Json<RouteView>, ApiError> {
    crate::service::approve_route(&state.hub, &caller.actor(), net, body.node, body.prefix).await?;
    view(&state, net)
        .await?
        .into_iter()
        .find(|v| v.route.node_id == body.node && v.route.prefix == body.prefix)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("route".into()))
}

pub async fn unapprove(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiQuery(query): ApiQuery<Unapprove>,
) -> Result<StatusCode, ApiError> {
    crate::service::unapprove_route(&state.hub, &caller.actor(), net, query.node, query.prefix)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_rules(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
) -> Result<Json<Value>, ApiError> {
    let rules = state.store().list_auto_approvers(net).await?;
    Ok(Json(json!({ "auto_approvers": rules })))
}

pub async fn add_rule(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<Rule>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let node = approvee(&body.node)?;
    let checks = state.hub.route_checks();
    let (rule, approved) = state
        .store()
        .add_auto_approver(&caller.actor(), net, body.prefix, node, &checks)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "auto_approver": rule, "approved": approved })),
    ))
}

pub async fn remove_rule(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiQuery(query): ApiQuery<Rule>,
) -> Result<StatusCode, ApiError> {
    let node = approvee(&query.node)?;
    state
        .store()
        .remove_auto_approver(&caller.actor(), net, query.prefix, node)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
