//! Who is calling: the bearer token, its state (expired, revoked), its
//! scope (admin, auditor, one network), failed attempts per source, and
//! when it was last used; or, on the HTTPS pages' listener, a person's
//! session cookie and the role `[roles]` gives them; or, on the admin
//! socket, the user the kernel says the process runs as.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use time::OffsetDateTime;
use warren_proto::NetworkId;

use super::error::ApiError;
use super::local_socket::LocalPeer;
use super::{ApiState, Caller};
use crate::store::{Scope, Token, TokenState};

/// Longest secret we look up; ours are 46 characters.
const MAX_SECRET_LEN: usize = 256;

/// Bearer token in, [`Caller`] out. Auditors may only read; a token scoped
/// to a network reaches only that network; a source with too many failures
/// is refused before any lookup.
pub(super) async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // On the admin socket the kernel says who calls; no token is looked at.
    if let Some(peer) = request.extensions().get::<LocalPeer>() {
        let caller = peer.caller()?;
        request.extensions_mut().insert(caller);
        return Ok(next.run(request).await);
    }
    let source = source_of(&request);
    let started = Instant::now();
    if let Some(wait) = state.auth_failures.blocked(source, started) {
        return Err(ApiError::TooManyRequests {
            retry_after: wait.as_secs().max(1),
        });
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    let caller = match identify(&state, request.headers(), reads).await {
        Ok(caller) => caller,
        Err(e) => {
            if matches!(e, ApiError::Unauthorized(_)) {
                state.auth_failures.record(source, started);
                tracing::debug!(?source, reason = %e, "API authentication failed");
            }
            return Err(e);
        }
    };
    if !reads && caller.scope != Scope::Admin {
        return Err(ApiError::Forbidden(
            "this caller's scope is read-only (auditor)".into(),
        ));
    }
    if let Some(own) = caller.network_id {
        scoped_access(own, request.method(), request.uri().path())?;
    }
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// A bearer token if one is given, else a session cookie where sessions
/// are accepted.
async fn identify(state: &ApiState, headers: &HeaderMap, reads: bool) -> Result<Caller, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        let token = identify_token(state, headers).await?;
        record_use(state, &token);
        return Ok(Caller::token(&token));
    }
    let cookie = crate::identity::pages::cookie(headers, super::SESSION_COOKIE);
    if let (Some(sessions), Some(secret)) = (&state.sessions, cookie) {
        return identify_person(state, sessions, headers, &secret, reads).await;
    }
    Err(ApiError::Unauthorized(
        "a valid bearer token is required".into(),
    ))
}

/// A person's session: live, its user enabled and holding a role. A
/// request that changes something must come from the pages' own origin
/// (the cookie is SameSite=Strict too: two locks on cross-site forgery).
async fn identify_person(
    state: &ApiState,
    sessions: &super::Sessions,
    headers: &HeaderMap,
    secret: &str,
    reads: bool,
) -> Result<Caller, ApiError> {
    let user = state
        .store()
        .session_user(secret, crate::console::session::SESSION_IDLE_SECS)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the session ended: sign in again".into()))?;
    let scope = sessions.roles.scope_of(&user).ok_or_else(|| {
        ApiError::Forbidden(format!(
            "{} holds no admin or auditor role on this controller",
            user.email
        ))
    })?;
    if !reads {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if origin != Some(sessions.origin.as_str()) {
            return Err(ApiError::Forbidden(
                "a change made with a session must come from the controller's own pages (Origin)"
                    .into(),
            ));
        }
    }
    Ok(Caller::person(&user.email, scope))
}

async fn identify_token(state: &ApiState, headers: &HeaderMap) -> Result<Token, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(|| ApiError::Unauthorized("a valid bearer token is required".into()))?;
    let token = state
        .store()
        .find_token(secret)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
    match token.state {
        TokenState::Active => Ok(token),
        TokenState::Expired => Err(ApiError::Unauthorized(format!(
            "token {} expired at {}",
            token.id,
            token.expires_at.as_deref().unwrap_or("?")
        ))),
        TokenState::Revoked => Err(ApiError::Unauthorized(format!(
            "token {} was revoked at {}",
            token.id,
            token.revoked_at.as_deref().unwrap_or("?")
        ))),
    }
}

/// The secret of `Authorization: Bearer <secret>`; the scheme is
/// case-insensitive (RFC 9110, section 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, secret) = value.trim_start().split_once([' ', '\t'])?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !secret.is_empty()
        && secret.len() <= MAX_SECRET_LEN
        && !secret.contains(char::is_whitespace))
    .then_some(secret)
}

/// What a token scoped to `own` may reach: that network's resources, the
/// network list (filtered by the handler) and the audit log (filtered by
/// the handler). Other networks look as if they did not exist; everything
/// global (network create, tokens, audit verify and head) is 403. `path` is one the
/// router matched, so only its shape matters here.
fn scoped_access(own: NetworkId, method: &Method, path: &str) -> Result<(), ApiError> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let reads = matches!(*method, Method::GET | Method::HEAD);
    match segments.as_slice() {
        ["networks", id, ..] => {
            let id: NetworkId = id
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("bad network ID {id:?}")))?;
            if id == own {
                Ok(())
            } else {
                Err(ApiError::NotFound("network".into()))
            }
        }
        ["networks"] | ["audit"] | ["info"] if reads => Ok(()),
        _ => Err(ApiError::Forbidden(format!(
            "this token is limited to network {own}"
        ))),
    }
}

/// Writes the token's last use off the request path, at most once per
/// interval per token: the stored time decides across replicas, and the
/// in-process table stops a burst of requests from queueing many writes.
fn record_use(state: &ApiState, token: &Token) {
    let now = OffsetDateTime::now_utc();
    let now_unix = now.unix_timestamp();
    if !token.touch_due(now_unix) {
        return;
    }
    {
        let mut touched = state.touched.lock().unwrap_or_else(|e| e.into_inner());
        let due = |last: &i64| now_unix - last >= crate::store::TOKEN_TOUCH_INTERVAL;
        if touched.get(&token.id).is_some_and(|last| !due(last)) {
            return;
        }
        if touched.len() >= 1024 {
            touched.retain(|_, last| !due(last));
        }
        touched.insert(token.id.clone(), now_unix);
    }
    let store = state.store().clone();
    let id = token.id.clone();
    tokio::spawn(async move {
        if let Err(e) = store.touch_token(&id, now).await {
            tracing::warn!(token = %id, error = %e, "could not record a token's last use");
        }
    });
}

/// The peer's address, which the server puts in every request; none in
/// tests that call the router directly.
fn source_of(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_secret_one_word() {
        assert_eq!(bearer("Bearer wt_abc"), Some("wt_abc"));
        assert_eq!(bearer("bearer wt_abc"), Some("wt_abc"));
        assert_eq!(bearer("BEARER  wt_abc "), Some("wt_abc"));
        assert_eq!(bearer("Basic wt_abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer(&format!("Bearer {}", "x".repeat(300))), None);
    }

    #[test]
    fn a_scoped_token_reaches_only_its_network() {
        let own: NetworkId = "0123456789abcdef".parse().unwrap();
        let ok = |m: Method, path: &str| scoped_access(own, &m, path).is_ok();
        assert!(ok(Method::GET, "/api/v1/networks/0123456789ABCDEF/members"));
        assert!(ok(Method::DELETE, "/networks/0123456789abcdef"));
        assert!(matches!(
            scoped_access(own, &Method::GET, "/networks/fedcba9876543210/keys"),
            Err(ApiError::NotFound(_))
        ));
        assert!(ok(Method::GET, "/api/v1/networks"));
        assert!(ok(Method::GET, "/api/v1/audit"));
        for (method, path) in [
            (Method::POST, "/api/v1/networks"),
            (Method::GET, "/api/v1/tokens"),
            (Method::POST, "/api/v1/tokens"),
            (Method::DELETE, "/api/v1/tokens/0123abcd"),
            (Method::GET, "/api/v1/audit/verify"),
            (Method::GET, "/api/v1/audit/head"),
        ] {
            assert!(
                matches!(
                    scoped_access(own, &method, path),
                    Err(ApiError::Forbidden(_))
                ),
                "{method} {path}"
            );
        }
    }
}
