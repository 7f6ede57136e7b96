//! The sign-in pages, on the controller's HTTPS listener:
//!
//! - `GET /signin/CODE`: which device, which network, a link to sign in;
//! - `GET /signin/CODE/start`: to the provider (state, nonce, PKCE), with
//!   a cookie that binds the round trip to this browser;
//! - `GET /oidc/callback` (or `/github/callback`): the provider's answer,
//!   checked, then straight on to the confirmation, so the code does not
//!   stay in the address bar;
//! - `GET /signin/CODE/confirm`, `POST` likewise: "connect this device as
//!   me?", with an anti-forgery token; the member is then authorized as
//!   the person's device.
//!
//! Every page is `no-store`, never framed, sends a referrer only to the
//! controller itself, and runs no script.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::session_pages::{self, SESSION_FLOW};
use super::{random_secret, DeviceRequest, SignIn};
use crate::hub::Hub;
use crate::store::StoreError;
use warren_proto::control::{ControllerMessage, JoinOutcome};

/// The cookie that ties a sign-in to one browser. `__Host-`: only over
/// HTTPS, for this host, path `/`.
const BROWSER_COOKIE: &str = "__Host-warren-browser";

#[derive(Clone)]
pub struct PagesState {
    pub hub: Arc<Hub>,
    pub sign_in: Arc<SignIn>,
    /// Who may sign in on the controller itself (admins, auditors).
    pub roles: Arc<crate::roles::Roles>,
}

pub fn router(state: PagesState) -> Router {
    let callback_path = state.sign_in.provider.callback_path();
    Router::new()
        .route("/signin/{code}", get(device_page))
        .route("/signin/{code}/start", get(start))
        .route(callback_path, get(callback))
        .route("/signin/{code}/confirm", get(confirm_page).post(confirm))
        .route("/login/start", get(session_pages::start))
        .route("/login/done", get(session_pages::done))
        .route("/me", get(session_pages::me))
        .layer(axum::middleware::map_response(page_headers))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(state)
}

async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // A referrer only to our own pages: the provider never sees a
        // device's page address, and our forms carry our Origin (with
        // `no-referrer` browsers send `Origin: null`).
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Text for HTML: the five characters that matter escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body` (already escaped).
pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Warren</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         .button{{display:inline-block;padding:.6rem 1.2rem;background:#1f5f8b;color:#fff;border:0;border-radius:.3rem;font-size:1rem;text-decoration:none;cursor:pointer}}\
         code{{background:#eee;padding:0 .2rem}}</style></head>\
         <body><h1 id=\"title\">{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

pub(super) fn failure(status: StatusCode, title: &str, reason: &str) -> Response {
    page(
        status,
        title,
        &format!("<p id=\"reason\">{}</p>", escape(reason)),
    )
}

fn unknown_device() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "Unknown or expired sign-in",
        "This sign-in page does not exist or has expired. Run warren join on the device again for a new one.",
    )
}

/// The value of our cookie in the request, if any.
pub(super) fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, BROWSER_COOKIE)
}

/// The value of cookie `name` in the request, if any (at most 128 bytes).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// This browser's cookie, and a `Set-Cookie` for a fresh one if it had
/// none.
pub(super) fn set_browser_cookie(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match browser_cookie(headers) {
        Some(existing) => (existing, None),
        None => {
            let fresh = random_secret();
            let cookie = format!(
                "{BROWSER_COOKIE}={fresh}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
                super::DEVICE_TTL.as_secs()
            );
            (fresh, HeaderValue::from_str(&cookie).ok())
        }
    }
}

async fn device_page(State(state): State<PagesState>, Path(code): Path<String>) -> Response {
    let Some(device) = state.sign_in.device(&code) else {
        return unknown_device();
    };
    let network = network_name(&state, device.network).await;
    page(
        StatusCode::OK,
        "Connect a device",
        &format!(
            "<p>A device asks to join <strong id=\"network\">{network}</strong> as \
             <strong id=\"device\">{name}</strong> (node <code>{node}</code>).</p>\
             <p>Sign in to connect it as your device. Only do this for a device you just ran \
             <code>warren join</code> on.</p>\
             <p><a class=\"button\" id=\"sign-in\" href=\"/signin/{code}/start\">Sign in with {provider}</a></p>",
            network = escape(&network),
            name = escape(&device.name),
            node = device.node,
            code = escape(&code),
            provider = escape(&state.sign_in.provider.display_name()),
        ),
    )
}

async fn network_name(state: &PagesState, net: warren_proto::NetworkId) -> String {
    match state.hub.store().get_network(net).await {
        Ok(network) => network.name,
        Err(_) => net.to_string(),
    }
}

async fn start(
    State(state): State<PagesState>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    if state.sign_in.device(&code).is_none() {
        return unknown_device();
    }
    to_provider(&state, &headers, &code).await
}

/// Sends the browser to the provider on a fresh round trip for `flow_code`
/// (a device's code, or [`SESSION_FLOW`]), bound to this browser.
pub(super) async fn to_provider(
    state: &PagesState,
    headers: &HeaderMap,
    flow_code: &str,
) -> Response {
    let begin = match state.sign_in.provider.begin().await {
        Ok(begin) => begin,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in: the provider could not be used");
            return failure(
                StatusCode::BAD_GATEWAY,
                "Sign-in is not available",
                &e.to_string(),
            );
        }
    };
    let (browser, set_cookie) = set_browser_cookie(headers);
    state.sign_in.start_flow(
        &begin.state,
        flow_code,
        &begin.nonce,
        &begin.verifier,
        &browser,
    );
    let mut response = Redirect::to(&begin.url).into_response();
    if let Some(cookie) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(state): State<PagesState>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let store = state.hub.store();
    let (Some(browser), Some(flow_state)) = (browser_cookie(&headers), query.state.as_deref())
    else {
        return failure(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in was not started in this browser. Open the device's sign-in page again.",
        );
    };
    let Some(flow) = state.sign_in.take_flow(flow_state, &browser) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in is unknown, expired, already used, or was started in another browser. Open the device's sign-in page again.",
        );
    };
    let session = flow.code == SESSION_FLOW;
    let device = state.sign_in.device(&flow.code);
    if let Some(error) = query.error {
        let reason = format!(
            "the identity provider said {}{}",
            error,
            query
                .error_description
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        return refuse(&state, device.as_ref(), None, &reason).await;
    }
    let Some(code) = query.code else {
        return failure(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The identity provider sent no code.",
        );
    };
    if device.is_none() && !session {
        return unknown_device();
    }
    let signed_in = match state
        .sign_in
        .provider
        .finish(&code, &flow.nonce, &flow.verifier)
        .await
    {
        Ok(signed_in) if session => return session_pages::finish(&state, signed_in).await,
        Ok(signed_in) => signed_in,
        Err(e) => {
            tracing::info!(error = %e, "sign-in refused");
            return refuse(&state, device.as_ref(), None, &e.to_string()).await;
        }
    };
    let user = match store.sign_in_user(&signed_in.person).await {
        Ok(user) => user,
        Err(e) => return internal(e),
    };
    // What asks the provider about this person again (recheck.rs); a
    // sign-in that gave none stops the checks until the next one does.
    if !user.disabled {
        if let Err(e) = store
            .keep_provider_token(&user.id, signed_in.kept.as_deref())
            .await
        {
            return internal(e);
        }
    }
    if user.disabled {
        let reason = format!("{} is disabled on this controller", user.email);
        return refuse(&state, device.as_ref(), Some(&user.email), &reason).await;
    }
    state.sign_in.offer_confirmation(&flow.code, user, &browser);
    // On to the form: the code leaves the address bar and the history.
    Redirect::to(&format!("/signin/{}/confirm", flow.code)).into_response()
}

/// A refused sign-in: audited (`user.sign_in_failed`), told to the device
/// waiting on the page (its `warren join` or `warren login` stops waiting
/// and says why), and shown.
async fn refuse(
    state: &PagesState,
    device: Option<&DeviceRequest>,
    email: Option<&str>,
    reason: &str,
) -> Response {
    let network = device.map(|d| d.network);
    let _ = state
        .hub
        .store()
        .sign_in_failed(email, network, reason)
        .await;
    if let Some(device) = device {
        tell_device(state, device, reason).await;
    }
    failure(StatusCode::FORBIDDEN, "Sign-in failed", reason)
}

/// Tells the device behind a page that a sign-in on it was refused.
async fn tell_device(state: &PagesState, device: &DeviceRequest, reason: &str) {
    let Ok(member) = state
        .hub
        .store()
        .get_member(device.network, device.node)
        .await
    else {
        return;
    };
    let result = match member.state {
        crate::store::MemberState::Authorized => JoinOutcome::Authorized,
        crate::store::MemberState::Pending => JoinOutcome::Pending,
        crate::store::MemberState::Revoked => return,
    };
    state.hub.deliver(
        &member.public_key,
        &ControllerMessage::JoinResult {
            network_id: device.network,
            result,
            sign_in_url: None,
            sign_in_refused: Some(reason.to_owned()),
        },
    );
}

pub(super) fn internal(e: StoreError) -> Response {
    tracing::error!(error = %e, "sign-in: store error");
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The controller could not record the sign-in. Try again; if it persists, its log says why.",
    )
}

async fn confirm_page(
    State(state): State<PagesState>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(device) = state.sign_in.device(&code) else {
        return unknown_device();
    };
    let browser = browser_cookie(&headers).unwrap_or_default();
    let Some((confirmation, token)) = state.sign_in.show_confirmation(&code, &browser) else {
        return Redirect::to(&format!("/signin/{code}")).into_response();
    };
    let network = network_name(&state, device.network).await;
    page(
        StatusCode::OK,
        "Connect this device?",
        &format!(
            "<p>Signed in as <strong id=\"user\">{email}</strong>.</p>\
             <p>Connect <strong id=\"device\">{name}</strong> (node <code>{node}</code>) to \
             <strong id=\"network\">{network}</strong> as your device?</p>\
             <form method=\"post\" action=\"/signin/{code}/confirm\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <button class=\"button\" id=\"confirm\" type=\"submit\">Connect</button></form>",
            email = escape(&confirmation.user.email),
            name = escape(&device.name),
            node = device.node,
            network = escape(&network),
            code = escape(&code),
            token = escape(&token),
        ),
    )
}

#[derive(Deserialize)]
struct ConfirmForm {
    token: String,
}

async fn confirm(
    State(state): State<PagesState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let Some(device) = state.sign_in.device(&code) else {
        return unknown_device();
    };
    let browser = browser_cookie(&headers).unwrap_or_default();
    let Some(confirmation) = state
        .sign_in
        .take_confirmation(&code, &browser, &form.token)
    else {
        return failure(
            StatusCode::FORBIDDEN,
            "Not confirmed",
            "This confirmation is expired, already used, or was not made in this browser. Open the device's sign-in page again.",
        );
    };
    let store = state.hub.store();
    match store
        .confirm_device(&confirmation.user, device.network, device.node)
        .await
    {
        Ok(member) => {
            state.sign_in.finish_device(&code);
            let network = network_name(&state, device.network).await;
            page(
                StatusCode::OK,
                "Device connected",
                &format!(
                    "<p id=\"done\"><strong>{name}</strong> is connected to <strong>{network}</strong> \
                     as your device. You can close this page.</p>",
                    name = escape(member.display_name()),
                    network = escape(&network),
                ),
            )
        }
        Err(StoreError::Conflict(reason)) => {
            state.sign_in.finish_device(&code);
            let email = confirmation.user.email.clone();
            let _ = store
                .sign_in_failed(Some(&email), Some(device.network), &reason)
                .await;
            tell_device(&state, &device, &reason).await;
            failure(StatusCode::CONFLICT, "Not connected", &reason)
        }
        Err(StoreError::NotFound(_)) => {
            state.sign_in.finish_device(&code);
            failure(
                StatusCode::NOT_FOUND,
                "Not connected",
                "The device left the network, or the network is gone.",
            )
        }
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&\u{1b}</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;?&lt;/a&gt;"
        );
    }

    #[test]
    fn the_browser_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-warren-browser=abc; b=2"),
        );
        assert_eq!(browser_cookie(&headers).as_deref(), Some("abc"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-warren-browser="),
        );
        assert_eq!(browser_cookie(&headers), None);
    }
}
