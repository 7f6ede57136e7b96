//! What every HTTP response and request gets, whatever the route: headers
//! that keep answers out of caches and frames, a request timeout and a cap
//! on requests in flight.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::ApiState;

/// The HTTP listener's limits; [`Default`] is what the controller runs with.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// From accepting a connection (or finishing a request on it) to having
    /// read a whole request head; a slower client is disconnected. Also
    /// bounds how long an idle keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// Open connections; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// From the head to the whole answer, body reading included; 408 after.
    pub request_timeout: Duration,
    /// Requests handled at once; past it, 503 with `Retry-After: 1`.
    pub max_in_flight: usize,
    /// Failed authentications a source may have in `auth_window` before it
    /// gets 429 without a token lookup.
    pub auth_failures: u32,
    pub auth_window: Duration,
    /// Sources the failure table tracks one by one (see `auth_limit`).
    pub auth_sources: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 64,
            auth_failures: 10,
            auth_window: Duration::from_secs(60),
            auth_sources: 4096,
        }
    }
}

/// Every answer: never cached (tokens, keys and member lists are secrets
/// or close to them), never sniffed as another type, never framed.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

/// A request waits for nothing: over the in-flight cap it is 503 at once,
/// and one that takes longer than the request timeout is 408.
pub(super) async fn limit_requests(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        tracing::debug!("API request refused: too many in flight");
        return Err(ApiError::Overloaded);
    };
    tokio::time::timeout(state.limits.request_timeout, next.run(request))
        .await
        .map_err(|_| ApiError::Timeout)
}
