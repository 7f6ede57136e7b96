//! `/api/v1/users`: the people who signed devices in; admins disable,
//! enable and delete them. Global: tokens scoped to a network may not reach it.

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::ApiPath;
use super::{ApiState, Caller};
use crate::store::User;

pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let users = state.store().list_users().await?;
    Ok(Json(json!({ "users": users })))
}

pub async fn disable(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(user): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &caller, &user, true).await
}

pub async fn enable(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(user): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &caller, &user, false).await
}

/// Deletes a person with every device they signed in.
pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(user): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    let (user, _networks) = state.store().delete_user(&caller.actor(), &user).await?;
    Ok(Json(user))
}

async fn set_disabled(
    state: &ApiState,
    caller: &Caller,
    user: &str,
    disabled: bool,
) -> Result<Json<User>, ApiError> {
    let (user, _networks) = state
        .store()
        .set_user_disabled(&caller.actor(), user, disabled)
        .await?;
    Ok(Json(user))
}
