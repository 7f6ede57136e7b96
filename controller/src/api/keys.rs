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
use crate::store::{KeyExpiry, NewPreauthKey, PreauthKeySpec};

/// Longest lifetime a key may be given: ten years.
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 86_400);
/// The largest cap a key may have.
pub const MAX_KEY_USES: u32 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// More than one join; defaults to true when `max_uses` is above 1.
    reusable: Option<bool>,
    /// At most this many joins.
    max_uses: Option<u32>,
    /// A humantime duration, e.g. "1h" or "7days", or "never". Absent: 24 h
    /// for a single-use key, 90 days for any other.
    expires: Option<String>,
    /// `tag:NAME`s the members it authorizes carry (servers, cluster
    /// masters: tags instead of an owner).
    #[serde(default)]
    tags: Vec<String>,
}

/// The key a request asks for, or why it cannot have it.
fn spec(body: &CreateKey) -> Result<PreauthKeySpec, ApiError> {
    if let Some(n) = body.max_uses {
        if !(1..=MAX_KEY_USES).contains(&n) {
            return Err(ApiError::BadRequest(format!(
                "max_uses must be between 1 and {MAX_KEY_USES}"
            )));
        }
    }
    let several = body.max_uses.is_some_and(|n| n > 1);
    if body.reusable == Some(false) && several {
        return Err(ApiError::BadRequest(
            "a single-use key has one use: drop reusable=false or max_uses".into(),
        ));
    }
    let reusable = body.reusable.unwrap_or(several);
    let base = if reusable {
        PreauthKeySpec {
            max_uses: body.max_uses,
            ..PreauthKeySpec::reusable()
        }
    } else {
        PreauthKeySpec::single_use()
    };
    let expires = match body.expires.as_deref() {
        None => KeyExpiry::Default,
        Some("never") => KeyExpiry::Never,
        Some(text) => {
            let lifetime = humantime::parse_duration(text)
                .map_err(|e| ApiError::BadRequest(format!("expires: {e} (or \"never\")")))?;
            if lifetime.is_zero() || lifetime > MAX_LIFETIME {
                return Err(ApiError::BadRequest(
                    "expires must be more than zero and at most ten years, or \"never\"".into(),
                ));
            }
            KeyExpiry::At(OffsetDateTime::now_utc() + lifetime)
        }
    };
    if body.tags.len() > crate::store::MAX_TAGS_PER_MEMBER {
        return Err(ApiError::BadRequest(format!(
            "a key carries at most {} tags",
            crate::store::MAX_TAGS_PER_MEMBER
        )));
    }
    let mut tags = Vec::new();
    for tag in &body.tags {
        let name = crate::store::tag_name(tag).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if !tags.iter().any(|t| t == name) {
            tags.push(name.to_owned());
        }
    }
    Ok(base.expires(expires).tagged(tags))
}

pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(net): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<NewPreauthKey>), ApiError> {
    let spec = spec(&body)?;
    let key = state
        .store()
        .create_preauth_key(&caller.actor(), net, spec)
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
