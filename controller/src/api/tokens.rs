//! `/api/v1/tokens`: list, create (the secret shown once) and revoke API
//! tokens. Only tokens for every network may manage tokens (`auth` refuses
//! scoped ones); only admins may create and revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warren_proto::NetworkId;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::{ApiState, Caller};
use crate::store::{NewToken, Scope, Token, TokenSpec};

/// Longest lifetime a token may be given: ten years.
const MAX_LIFETIME: time::Duration = time::Duration::days(10 * 366);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    scope: Scope,
    name: Option<String>,
    /// Limit the token to this network.
    network_id: Option<NetworkId>,
    /// RFC 3339; none: the token does not expire.
    expires_at: Option<String>,
}

pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let tokens = state.store().list_tokens().await?;
    Ok(Json(json!({ "tokens": tokens })))
}

pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|text| {
            let at = OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|e| ApiError::BadRequest(format!("expires_at must be RFC 3339: {e}")))?;
            let lifetime = at - OffsetDateTime::now_utc();
            if !lifetime.is_positive() || lifetime > MAX_LIFETIME {
                return Err(ApiError::BadRequest(
                    "expires_at must be in the future and at most ten years away".into(),
                ));
            }
            Ok(at)
        })
        .transpose()?;
    let spec = TokenSpec {
        scope: body.scope,
        name: body.name,
        network_id: body.network_id,
        expires_at,
    };
    let made = state.store().create_token(&caller.actor(), spec).await?;
    tracing::info!(token = %made.token.id, name = %made.token.name, "API token created");
    Ok((StatusCode::CREATED, Json(made)))
}

pub async fn revoke(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Token>, ApiError> {
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest("a token ID is 8 hex digits".into()));
    }
    let token = state
        .store()
        .revoke_token(&caller.actor(), &id.to_ascii_lowercase())
        .await?;
    tracing::info!(token = %token.id, name = %token.name, "API token revoked");
    Ok(Json(token))
}
