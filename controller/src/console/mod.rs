//! The web console and service portal, on the controller's HTTPS listener:
//! server-rendered pages from templates compiled into the binary (askama),
//! with every asset embedded, a little script for live updates and copy
//! buttons, and no API token anywhere near the browser.
//!
//! - `/login` (provider or break-glass code), `/logout`;
//! - `/console`: networks (admins, auditors) or the portal (everyone else);
//! - `/console/networks/ID[/routes|/policy|/grants]`, `/console/queue`,
//!   `/console/audit`: admins change, auditors look;
//! - `/console/portal`, `/console/devices`, `/console/access`: what a
//!   person may reach, their own devices, and the access they asked for;
//! - `/console/events`: server-sent events, one per change.
//!
//! Who may do what is in [`session`]; changes go through
//! [`crate::service`], the same calls the API makes.

// A refusal is a page: handlers return `Result<_, Response>` and answer
// with the error as it is, as axum's own extractors do.
#![allow(clippy::result_large_err)]

mod access;
mod assets;
mod audit;
mod grants;
mod highlight;
mod live;
mod members;
mod networks;
mod policy;
mod portal;
pub mod session;
pub mod views;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::hub::Hub;
use crate::identity::SignIn;
use crate::roles::Roles;

/// What every console page can reach.
#[derive(Clone)]
pub struct ConsoleState {
    pub hub: Arc<Hub>,
    pub roles: Arc<Roles>,
    /// `https://HOST[:PORT]`: the only origin whose forms change things.
    pub origin: String,
    /// The identity provider people sign in with, if one is configured.
    pub sign_in: Option<Arc<SignIn>>,
    /// Caps the live-update streams open at once.
    live: Arc<tokio::sync::Semaphore>,
}

impl ConsoleState {
    pub fn new(
        hub: Arc<Hub>,
        roles: Arc<Roles>,
        origin: String,
        sign_in: Option<Arc<SignIn>>,
    ) -> Self {
        Self {
            hub,
            roles,
            origin,
            sign_in,
            live: Arc::new(tokio::sync::Semaphore::new(live::MAX_STREAMS)),
        }
    }
}

/// Form bodies are small; a policy document is the largest.
const FORM_LIMIT: usize = 256 * 1024;

pub fn router(state: ConsoleState) -> Router {
    let network = Router::new()
        .route("/", get(members::page))
        .route("/members/{node}/{action}", post(members::act))
        .route("/routes", get(networks::routes))
        .route("/routes/{action}", post(networks::route_act))
        .route("/policy", get(policy::page).post(policy::save))
        .route("/grants", get(grants::page).post(grants::add))
        .route("/grants/{grant}/revoke", post(grants::revoke))
        .route("/requests/{request}/{action}", post(access::decide));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/login", get(login))
        .route("/login/code", post(session::redeem_code))
        .route("/logout", post(session::logout))
        .route("/console", get(networks::home))
        .route("/console/queue", get(networks::queue))
        .route("/console/audit", get(audit::page))
        .route("/console/audit/export", get(audit::export))
        .route("/console/portal", get(portal::portal))
        .route("/console/devices", get(portal::devices))
        .route(
            "/console/devices/{net}/{node}/{action}",
            post(portal::device_act),
        )
        .route("/console/access", get(access::page).post(access::request))
        .route(
            "/console/access/{net}/{request}/withdraw",
            post(access::withdraw),
        )
        .route("/console/events", get(live::events))
        .route("/console/assets/{file}", get(assets::serve))
        .nest("/console/networks/{net}", network)
        .layer(axum::middleware::map_response(page_headers))
        .layer(axum::extract::DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

async fn login(State(state): State<ConsoleState>) -> Response {
    views::ok(&views::Login {
        provider: state.sign_in.as_ref().map(|s| s.provider.display_name()),
    })
}

/// The content security policy of every page: scripts, styles and
/// images only from the console itself (no inline script or style), live
/// updates from here, forms only to here, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers for every answer: never cached (assets say otherwise), never
/// framed, never sniffed; a referrer only to the console itself, so a
/// form's `Origin` is ours (with `no-referrer` browsers send `null`) and
/// no page address leaks to the services the portal links to.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response.into_response()
}
