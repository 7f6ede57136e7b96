//! `/api/v1/networks/{id}/grants`: temporary access, a rule that ends by
//! itself (the compiler adds active grants as rules named `grant:<id>`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use warren_proto::NetworkId;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{ApiState, Caller};
use crate::store::Grant;

pub use crate::service::MAX_GRANT;

/// The routes of this resource, merged into `/api/v1`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/networks/{id}/grants", get(list).post(add))
        .route("/networks/{id}/grants/{grant}", delete(revoke))
}

/// A grant to make: `from` and `to` are written as in a rule, `for` is a
/// duration such as `2h` or `20s`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddGrant {
    from: String,
    to: String,
    #[serde(default)]
    ports: Option<Vec<String>>,
    #[serde(rename = "for")]
    duration: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Ended and revoked grants too.
    #[serde(default)]
    all: bool,
}

pub async fn add(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<AddGrant>,
) -> Result<(StatusCode, Json<Grant>), ApiError> {
    let new = crate::service::new_grant(
        body.from,
        body.to,
        body.ports.as_deref(),
        &body.duration,
        &body.reason,
    )
    .map_err(ApiError::BadRequest)?;
    let grant = crate::service::add_grant(&state.hub, &caller.actor(), net, new).await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

pub async fn list(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let grants = state.store().list_grants(net, query.all).await?;
    Ok(Json(json!({ "grants": grants })))
}

pub async fn revoke(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, id)): ApiPath<(NetworkId, String)>,
) -> Result<Json<Grant>, ApiError> {
    let grant = crate::service::revoke_grant(&state.hub, &caller.actor(), net, &id).await?;
    Ok(Json(grant))
}
