//! `/api/v1/networks/{id}/members` and one member's actions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warren_proto::{NetworkId, NodeId};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::{ApiState, Caller};
use crate::paths::ReportedPath;
use crate::service;
use crate::store::{Member, MemberState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameMember {
    name: String,
}

/// A member as `GET` shows it: what the database holds, and the paths its
/// agent reports now (live, from the hub; empty when it reports none).
#[derive(Debug, Serialize)]
pub struct MemberView {
    #[serde(flatten)]
    member: Member,
    paths: Vec<ReportedPath>,
}

impl MemberView {
    fn of(state: &ApiState, member: Member) -> Self {
        let paths = state.hub.paths_of(member.network_id, member.node_id);
        Self { member, paths }
    }
}

pub async fn list(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
) -> Result<Json<Value>, ApiError> {
    let members: Vec<MemberView> = state
        .store()
        .list_members(net)
        .await?
        .into_iter()
        .map(|m| MemberView::of(&state, m))
        .collect();
    Ok(Json(json!({ "members": members })))
}

pub async fn show(
    State(state): State<ApiState>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
) -> Result<Json<MemberView>, ApiError> {
    let member = state.store().get_member(net, node).await?;
    Ok(Json(MemberView::of(&state, member)))
}

async fn set_state(
    state: &ApiState,
    caller: &Caller,
    net: NetworkId,
    node: NodeId,
    to: MemberState,
) -> Result<Json<Member>, ApiError> {
    let member = service::set_member_state(&state.hub, &caller.actor(), net, node, to).await?;
    Ok(Json(member))
}

pub async fn authorize(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
) -> Result<Json<Member>, ApiError> {
    set_state(&state, &caller, net, node, MemberState::Authorized).await
}

pub async fn revoke(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
) -> Result<Json<Member>, ApiError> {
    set_state(&state, &caller, net, node, MemberState::Revoked).await
}

/// Ends a signed-in device's sign-in now: it stops working at every peer
/// until its owner signs it in again.
pub async fn expire(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
) -> Result<Json<Member>, ApiError> {
    let member = service::expire_member(&state.hub, &caller.actor(), net, node).await?;
    Ok(Json(member))
}

pub async fn rename(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
    ApiJson(body): ApiJson<RenameMember>,
) -> Result<Json<Member>, ApiError> {
    let member = service::rename_member(&state.hub, &caller.actor(), net, node, &body.name).await?;
    Ok(Json(member))
}

pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, node)): ApiPath<(NetworkId, NodeId)>,
) -> Result<StatusCode, ApiError> {
    service::delete_member(&state.hub, &caller.actor(), net, node).await?;
    Ok(StatusCode::NO_CONTENT)
}
