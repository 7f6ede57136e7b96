//! `/api/v1/audit`: the audit log, paged by id, and chain verification.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warren_proto::NetworkId;

use super::error::ApiError;
use super::extract::ApiQuery;
use super::{ApiState, Caller};
use crate::store::{AuditQuery, AuditVerification};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    since: Option<String>,
    network: Option<String>,
    limit: Option<u32>,
    after: Option<i64>,
}

pub async fn page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let since_unix = params
        .since
        .as_deref()
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| ApiError::BadRequest(format!("since must be RFC 3339: {e}")))
        })
        .transpose()?;
    let network_id = params
        .network
        .as_deref()
        .map(|n| n.parse::<NetworkId>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // A token scoped to one network reads only that network's entries.
    let network_id = match (caller.0.network_id, network_id) {
        (Some(own), Some(asked)) if asked != own => {
            return Err(ApiError::NotFound("network".into()))
        }
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let query = AuditQuery {
        since_unix,
        network_id,
        after_id: params.after,
        limit,
    };
    let entries = state.store().audit_page(&query).await?;
    // A full page may have more after it; the client passes this as `after`.
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(
        json!({ "entries": entries, "next_after": next_after }),
    ))
}

pub async fn verify(State(state): State<ApiState>) -> Result<Json<AuditVerification>, ApiError> {
    Ok(Json(state.store().audit_verify().await?))
}
