//! The HTTP API: `/api/v1` (bearer tokens; auditors read, admins write,
//! network-scoped tokens reach one network), `/api/v1/openapi.json`,
//! `/healthz` and `/metrics`, in the clear on `listen-api`, over TLS on
//! the HTTPS listener, and on the admin socket (no token: the kernel says
//! who calls).
//!
//! Handlers are thin: validate, call the store, tell the hub what changed.
//! `auth` decides who calls, `hygiene` what every exchange gets, `listener`
//! serves it all over TCP with a header-read timeout, `local_socket` on
//! the admin socket.

pub mod audit;
mod auth;
pub mod auth_limit;
pub mod error;
pub mod extract;
pub mod grants;
pub mod hygiene;
pub mod info;
pub mod keys;
pub mod listener;
pub mod local_socket;
pub mod members;
pub mod meta;
pub mod networks;
pub mod policy;
pub mod routes;
pub mod tokens;
pub mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::audit_anchor::HeadSigner;
use crate::hub::Hub;
use crate::store::{Actor, Scope, Store, Token};
use auth_limit::AuthFailures;
use error::ApiError;
pub use hygiene::ApiLimits;

/// Request bodies larger than this get 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub hub: Arc<Hub>,
    /// Host names (besides IP literals and `localhost`) the API answers to.
    pub allowed_hosts: Arc<Vec<String>>,
    pub limits: ApiLimits,
    in_flight: Arc<Semaphore>,
    auth_failures: Arc<AuthFailures>,
    /// Token ID -> unix time this process last queued a last-use write.
    touched: Arc<Mutex<HashMap<String, i64>>>,
    /// Signs the audit head handed out with pages and verifications; a
    /// state without one hands out the head unsigned.
    audit_signer: Option<Arc<HeadSigner>>,
    /// Set where the API is served on the HTTPS pages' listener.
    sessions: Option<Sessions>,
    /// What `/api/v1/info` answers; set by the server.
    info: Option<Arc<info::ControllerInfo>>,
}

impl ApiState {
    pub fn new(hub: Arc<Hub>, allowed_hosts: Vec<String>) -> Self {
        let limits = ApiLimits::default();
        Self {
            hub,
            allowed_hosts: Arc::new(allowed_hosts),
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            auth_failures: Arc::new(AuthFailures::new(
                limits.auth_failures,
                limits.auth_window,
                limits.auth_sources,
            )),
            touched: Arc::default(),
            audit_signer: None,
            sessions: None,
            info: None,
        }
    }

    /// The same state, answering `/api/v1/info` with `info`.
    pub fn with_info(self, info: Arc<info::ControllerInfo>) -> Self {
        Self {
            info: Some(info),
            ..self
        }
    }

    /// The same state, accepting people's sessions too, and answering to
    /// the pages' host name.
    pub fn with_sessions(self, sessions: Sessions) -> Self {
        let mut hosts = (*self.allowed_hosts).clone();
        if let Some(host) = sessions
            .origin
            .strip_prefix("https://")
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host))
        {
            hosts.push(host.trim_matches(['[', ']']).to_ascii_lowercase());
        }
        Self {
            sessions: Some(sessions),
            allowed_hosts: Arc::new(hosts),
            ..self
        }
    }

    /// The same state, signing audit heads with `signer`.
    pub fn with_audit_signer(self, signer: Arc<HeadSigner>) -> Self {
        Self {
            audit_signer: Some(signer),
            ..self
        }
    }

    /// The same state with other limits (tests shorten them).
    pub fn with_limits(self, limits: ApiLimits) -> Self {
        Self {
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            auth_failures: Arc::new(AuthFailures::new(
                limits.auth_failures,
                limits.auth_window,
                limits.auth_sources,
            )),
            ..self
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.hub.store()
    }
}

/// The authenticated caller, put in request extensions by [`authenticate`]:
/// a token, a person's session on the controller's HTTPS pages, or a local
/// process on the admin socket.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who the audit log names: `token:NAME`, `user:EMAIL` or `local:...`.
    actor: Actor,
    pub scope: Scope,
    /// Set: the caller sees and changes only this network.
    pub network_id: Option<warren_proto::NetworkId>,
}

impl Caller {
    pub fn token(token: &Token) -> Self {
        Caller {
            actor: Actor::token(&token.name),
            scope: token.scope,
            network_id: token.network_id,
        }
    }

    pub fn person(email: &str, scope: Scope) -> Self {
        Caller {
            actor: Actor::user(email),
            scope,
            network_id: None,
        }
    }

    /// A process on the controller's host that the admin socket let in.
    pub fn local(actor: Actor) -> Self {
        Caller {
            actor,
            scope: Scope::Admin,
            network_id: None,
        }
    }

    pub fn actor(&self) -> Actor {
        self.actor.clone()
    }
}

/// Sessions of people signed in on the HTTPS pages, accepted where a token
/// is: the roles they may hold, and the pages' origin (the only one whose
/// requests may change things with a session cookie).
#[derive(Debug, Clone)]
pub struct Sessions {
    pub roles: Arc<crate::roles::Roles>,
    /// `https://HOST[:PORT]`, as browsers send it in `Origin`.
    pub origin: String,
}

/// The cookie that holds a session's secret.
pub const SESSION_COOKIE: &str = "__Host-warren-session";

/// The whole API as one router.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/networks", get(networks::list).post(networks::create))
        .route(
            "/networks/{id}",
            get(networks::show)
                .patch(networks::update)
                .delete(networks::delete),
        )
        .route("/networks/{id}/members", get(members::list))
        .route(
            "/networks/{id}/members/{node}",
            get(members::show)
                .patch(members::rename)
                .delete(members::delete),
        )
        .route(
            "/networks/{id}/members/{node}/authorize",
            post(members::authorize),
        )
        .route(
            "/networks/{id}/members/{node}/revoke",
            post(members::revoke),
        )
        .route(
            "/networks/{id}/members/{node}/expire",
            post(members::expire),
        )
        .route("/networks/{id}/keys", get(keys::list).post(keys::create))
        .route(
            "/networks/{id}/keys/{key}",
            axum::routing::delete(keys::delete),
        )
        .route("/info", get(info::show))
        .route("/audit", get(audit::page))
        .route("/audit/head", get(audit::head))
        .route("/audit/verify", get(audit::verify))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/users", get(users::list))
        .route("/users/{user}", delete(users::delete))
        .route("/users/{user}/disable", post(users::disable))
        .route("/users/{user}/enable", post(users::enable))
        .merge(routes::router())
        .merge(policy::router())
        .merge(grants::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .nest("/api/v1", v1)
        .route("/api/v1/openapi.json", get(meta::openapi))
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), guard_origin))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            hygiene::limit_requests,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .layer(middleware::from_fn(hygiene::security_headers))
        .with_state(state)
}

/// Only `/healthz` and `/metrics` (for a relay-only instance, which has no
/// API of its own), with the same Host and Origin checks.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard_origin))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            hygiene::limit_requests,
        ))
        .layer(middleware::from_fn(hygiene::security_headers))
        .with_state(state)
}

/// Browsers are not clients of the token API: a request with `Origin` or
/// `Referer`, or for a host name we do not serve, is refused, so a web page
/// cannot reach the API through DNS rebinding or cross-site requests. On
/// the HTTPS pages' listener the pages' own origin is the one exception.
async fn guard_origin(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let own = |value: Option<&header::HeaderValue>, page: bool| {
        let Some(value) = value else {
            return true;
        };
        let (Some(sessions), Ok(value)) = (&state.sessions, value.to_str()) else {
            return false;
        };
        value == sessions.origin
            || (page
                && value
                    .strip_prefix(sessions.origin.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    };
    if !own(headers.get(header::ORIGIN), false) || !own(headers.get(header::REFERER), true) {
        return Err(ApiError::Forbidden(
            "requests from web pages (Origin or Referer) are refused".into(),
        ));
    }
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !host_allowed(host, &state.allowed_hosts) {
            return Err(ApiError::Forbidden(format!(
                "host {:?} is not served here (see api-hosts)",
                host.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(next.run(request).await)
}

fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

async fn count_responses(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state
        .hub
        .metrics()
        .count_api_response(response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_are_ip_literals_localhost_or_listed() {
        let allowed = vec!["ctl.example.org".to_string()];
        assert!(host_allowed("127.0.0.1:7480", &allowed));
        assert!(host_allowed("[::1]:7480", &allowed));
        assert!(host_allowed("localhost:7480", &allowed));
        assert!(host_allowed("ctl.example.org", &allowed));
        assert!(!host_allowed("evil.example:7480", &allowed));
    }
}
