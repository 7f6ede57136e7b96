//! The one API error type, mapped to status codes here and nowhere else.
//! Bodies are `{"error":{"code":"...","message":"..."}}`; internal causes
//! go to the log only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// No token, an unknown one, or one expired or revoked (the message
    /// says which).
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// An extractor refused the request (body, path or query); `status` is
    /// axum's choice (400, 413, 415, 422).
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    /// Too many failed authentications from this source.
    #[error("too many failed authentications; try again in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// Too many requests in flight.
    #[error("the controller is busy; try again")]
    Overloaded,
    /// The request took longer than the request timeout.
    #[error("the request took too long")]
    Timeout,
    /// A policy document was refused; the code says why.
    #[error("{0}")]
    Policy(crate::policy::PolicyError),
    /// The database cannot be reached (PostgreSQL down or restarting):
    /// nothing was written; the same request may succeed later.
    #[error("the database is unavailable; try again")]
    DatabaseUnavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Rejected { status, .. } => {
                let code = match *status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
                    _ => "bad_request",
                };
                // Extractors only ever refuse with 4xx; anything else is ours to fix.
                let status = if status.is_client_error() {
                    *status
                } else {
                    StatusCode::BAD_REQUEST
                };
                (status, code)
            }
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Policy(e @ crate::policy::PolicyError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, e.code())
            }
            ApiError::Policy(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.code()),
            ApiError::DatabaseUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn rejected(status: StatusCode, message: String) -> Self {
        ApiError::Rejected { status, message }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what.to_string()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            StoreError::Policy(e) => ApiError::Policy(e),
            StoreError::Database(
                e @ (sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)),
            ) => ApiError::DatabaseUnavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "API request failed"),
            ApiError::DatabaseUnavailable(cause) => {
                tracing::warn!(%cause, "API request failed: the database is unavailable")
            }
            _ => {}
        }
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
