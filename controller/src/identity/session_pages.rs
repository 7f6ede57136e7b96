//! Signing in on the controller itself, for the console (everyone) and
//! the API (admins and auditors): a session cookie.
//!
//! - `GET /login` ([`crate::console`]): a link to sign in with the provider;
//! - `GET /login/start`: to the provider (the same round trip as a
//!   device's, with no device);
//! - the provider's callback ([`super::pages`]) hands a round trip with no
//!   device to [`finish`]: an enabled person gets a session;
//! - `GET /login/done`: on to the console from our own page, so the
//!   `SameSite=Strict` cookie goes along;
//! - `GET /me`: who is signed in, and as what; `POST /logout`
//!   ([`crate::console`]) ends it.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::pages::{escape, failure, page, PagesState};
use super::SignedIn;
use crate::api::SESSION_COOKIE;
use crate::console::session::{session_cookie, Role, SESSION_IDLE_SECS, SESSION_TTL_SECS};

/// Marks a round trip that signs a person in on the controller itself
/// (device codes are never empty).
pub const SESSION_FLOW: &str = "";

pub async fn start(State(state): State<PagesState>, headers: HeaderMap) -> Response {
    super::pages::to_provider(&state, &headers, SESSION_FLOW).await
}

/// The provider's answer for a session round trip, already checked: a
/// session for a person who holds a role, a refusal (audited) otherwise.
pub async fn finish(state: &PagesState, signed_in: SignedIn) -> Response {
    let store = state.hub.store();
    let user = match store.sign_in_user(&signed_in.person).await {
        Ok(user) => user,
        Err(e) => return super::pages::internal(e),
    };
    // Everyone enabled may sign in: the console shows people without a
    // role the services they may reach and their own devices.
    if user.disabled {
        let reason = format!("{} is disabled on this controller.", user.email);
        let _ = store.sign_in_failed(Some(&user.email), None, &reason).await;
        return failure(StatusCode::FORBIDDEN, "Sign-in failed", &reason);
    }
    if let Err(e) = store
        .keep_provider_token(&user.id, signed_in.kept.as_deref())
        .await
    {
        return super::pages::internal(e);
    }
    let secret = match store.start_session(&user, SESSION_TTL_SECS).await {
        Ok(secret) => secret,
        Err(e) => return super::pages::internal(e),
    };
    // On, so the code leaves the address bar.
    let mut response = Redirect::to("/login/done").into_response();
    if let Some(cookie) = session_cookie(Some(&secret)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Reached through the provider's redirects, which a `SameSite=Strict`
/// cookie does not follow: our own page sends the browser on to the
/// console.
pub async fn done() -> Response {
    let mut response = page(
        StatusCode::OK,
        "Signed in",
        "<p><a class=\"button\" id=\"continue\" href=\"/console\">Continue</a></p>",
    );
    response
        .headers_mut()
        .insert(header::REFRESH, HeaderValue::from_static("0; url=/console"));
    response
}

/// The session's secret, if the browser sent one.
fn session_secret(headers: &HeaderMap) -> Option<String> {
    super::pages::cookie(headers, SESSION_COOKIE)
}

pub async fn me(State(state): State<PagesState>, headers: HeaderMap) -> Response {
    let Some(secret) = session_secret(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let user = match state
        .hub
        .store()
        .session_user(&secret, SESSION_IDLE_SECS)
        .await
    {
        Ok(user) => user,
        Err(e) => return super::pages::internal(e),
    };
    let Some(user) = user else {
        return Redirect::to("/login").into_response();
    };
    let role = Role::of(state.roles.scope_of(&user)).name();
    page(
        StatusCode::OK,
        "Signed in",
        &format!(
            "<p>Signed in as <strong id=\"user\">{email}</strong>, \
             <strong id=\"role\">{role}</strong>. <a href=\"/console\">The console</a>; \
             for admins and auditors the API (<code>/api/v1</code>) accepts this session \
             where it accepts a token.</p>\
             <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <button class=\"button\" id=\"sign-out\" type=\"submit\">Sign out</button></form>",
            email = escape(&user.email),
            token = crate::console::session::form_token(&secret),
        ),
    )
}
