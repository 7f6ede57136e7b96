//! `/api/v1/audit`: the audit log, paged by id and filtered (time range,
//! actor, action, member, text), chain verification against an optional
//! anchor, and the signed head that every answer carries.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use warren_proto::NetworkId;

use super::error::ApiError;
use super::extract::ApiQuery;
use super::{ApiState, Caller};
use crate::audit_filter::{unix_rfc3339, TypedFilters};
use crate::store::{AuditHead, AuditQuery, AuditVerification};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    since: Option<String>,
    until: Option<String>,
    network: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    member: Option<String>,
    text: Option<String>,
    limit: Option<u32>,
    after: Option<i64>,
}

pub async fn page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let network_id = params
        .network
        .as_deref()
        .map(|n| n.parse::<NetworkId>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // A token scoped to one network reads only that network's entries.
    let network_id = match (caller.network_id, network_id) {
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
    let mut query = AuditQuery {
        network_id,
        after_id: params.after,
        limit,
        ..AuditQuery::default()
    };
    TypedFilters {
        since: params.since.as_deref(),
        until: params.until.as_deref(),
        actor: params.actor.as_deref(),
        action: params.action.as_deref(),
        member: params.member.as_deref(),
        text: params.text.as_deref(),
    }
    .apply(OffsetDateTime::now_utc(), &mut query)
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let entries = state.store().audit_page(&query).await?;
    let head = signed_head(&state, &state.store().audit_head().await?)?;
    // A full page may have more after it; the client passes this as `after`.
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    // The times as resolved (`2h` is relative to now), so that a client
    // following pages keeps one window.
    let since = query.since_unix.and_then(unix_rfc3339);
    let until = query.until_unix.and_then(unix_rfc3339);
    Ok(Json(json!({
        "entries": entries,
        "next_after": next_after,
        "head": head,
        "since": since,
        "until": until,
    })))
}

/// The head as the API shows it: signed when the state has a signer.
fn signed_head(state: &ApiState, head: &AuditHead) -> Result<Value, ApiError> {
    match &state.audit_signer {
        Some(signer) => {
            let signed = signer
                .sign(head)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(json!(signed))
        }
        None => Ok(json!(head)),
    }
}

pub async fn head(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let head = state.store().audit_head().await?;
    Ok(Json(signed_head(&state, &head)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    anchor_id: Option<i64>,
    anchor_hash: Option<String>,
}

/// Recomputes the chain; with `anchor_id` and `anchor_hash` (a head kept
/// earlier) also checks that entry is still there with that hash.
pub async fn verify(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<VerifyParams>,
) -> Result<Json<Value>, ApiError> {
    let anchor = match (params.anchor_id, params.anchor_hash) {
        (None, None) => None,
        (Some(id), Some(hash)) if id >= 0 => Some(AuditHead { id, hash }),
        _ => {
            return Err(ApiError::BadRequest(
                "anchor_id (>= 0) and anchor_hash go together".into(),
            ))
        }
    };
    let report: AuditVerification = state.store().audit_verify(anchor.as_ref()).await?;
    let head = signed_head(&state, &report.head)?;
    let mut body = json!(report);
    body["head"] = head;
    Ok(Json(body))
}
