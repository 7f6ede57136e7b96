//! `/api/v1/networks/{id}/keys`: pre-auth keys, shown once on creation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use warren_proto::NetworkId;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::{ApiState, Caller};
use crate::store::NewPreauthKey;

/// Longest lifetime a key may be given: ten years.
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 86_400);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    reusable: bool,
    /// A humantime duration, e.g. "1h" or "7days".
    expires: Option<String>,
}

pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<NewPreauthKey>), ApiError> {
    let expires_at = match body.expires.as_deref() {
        None => None,
        Some(text) => {
            let lifetime = humantime::parse_duration(text)
                .map_err(|e| ApiError::BadRequest(format!("expires: {e}")))?;
            if lifetime.is_zero() || lifetime > MAX_LIFETIME {
                return Err(ApiError::BadRequest(
                    "expires must be more than zero and at most ten years".into(),
                ));
            }
            Some(OffsetDateTime::now_utc() + lifetime)
        }
    };
    let key = state
        .store()
        .create_preauth_key(&caller.actor(), net, body.reusable, expires_at)
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

pub async fn list(
    State(state): State<ApiState>,
    ApiPath(net): ApiPath<NetworkId>,
) -> Result<Json<Value>, ApiError> {
    let keys = state.store().list_preauth_keys(net).await?;
    Ok(Json(json!({ "keys": keys })))
}

pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath((net, key_id)): ApiPath<(NetworkId, String)>,
) -> Result<StatusCode, ApiError> {
    if key_id.len() != 8 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest("a key ID is 8 hex digits".into()));
    }
    state
        .store()
        .delete_preauth_key(&caller.actor(), net, &key_id.to_ascii_lowercase())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
