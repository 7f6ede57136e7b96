//! Routes about the API itself: OpenAPI document, health, metrics, fallbacks.

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::ApiState;

/// The hand-written OpenAPI 3 description of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn healthz(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    // A cheap read proves the database answers.
    state.store().list_networks().await?;
    Ok((StatusCode::OK, Json(json!({ "status": "ok" }))))
}

pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.hub.metrics().render(),
    )
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("route {}", uri.path()))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
