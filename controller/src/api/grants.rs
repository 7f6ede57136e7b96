//! `/api/v1/networks/{id}/grants`: temporary access, a rule that ends by
//! itself (the compiler adds active grants as rules named `grant:<id>`).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use warren_proto::filter::PortRange;
use warren_proto::NetworkId;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{ApiState, Caller};
use crate::store::{Grant, NewGrant};

/// The longest a grant may last.
pub const MAX_GRANT: Duration = Duration::from_secs(30 * 24 * 3600);
const MAX_REASON_CHARS: usize = 500;

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
    let duration = humantime::parse_duration(&body.duration).map_err(|e| {
        ApiError::BadRequest(format!("for: {e} (write a duration such as 2h or 20s)"))
    })?;
    if duration.is_zero() || duration > MAX_GRANT {
        return Err(ApiError::BadRequest(
            "for: a grant lasts from 1s to 30 days".into(),
        ));
    }
    let reason = body.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::BadRequest(format!(
            "reason: say why, in 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    let ports = match body.ports {
        None => vec![PortRange::ANY],
        Some(texts) if texts.is_empty() => {
            return Err(ApiError::BadRequest("ports: name at least one".into()))
        }
        Some(texts) => texts
            .iter()
            .map(|t| t.parse::<PortRange>())
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::BadRequest(format!("ports: {e}")))?,
    };
    let ends_at = OffsetDateTime::now_utc()
        + time::Duration::try_from(duration)
            .map_err(|_| ApiError::BadRequest("for: too long".into()))?;
    let new = NewGrant {
        from: body.from,
        to: body.to,
        ports,
        reason,
        ends_at,
    };
    let grant = state.store().add_grant(&caller.actor(), net, new).await?;
    state.hub.changed(net);
    tracing::info!(network = %net, grant = %grant.id, ends_at = %grant.ends_at, "grant added");
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
    let grant = state
        .store()
        .revoke_grant(&caller.actor(), net, &id)
        .await?;
    state.hub.changed(net);
    tracing::info!(network = %net, grant = %grant.id, "grant revoked");
    Ok(Json(grant))
}
