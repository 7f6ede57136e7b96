//! Signing in on the controller itself (admins and auditors), for the API
//! and the console: a session cookie accepted where a token is.
//!
//! - `GET /login`: a link to sign in with the provider;
//! - `GET /login/start`: to the provider (the same round trip as a
//!   device's, with no device);
//! - the provider's callback ([`super::pages`]) hands a round trip with no
//!   device to [`finish`]: a person holding a role gets a session;
//! - `GET /login/done`: on to `/me` from our own page, so the `SameSite=
//!   Strict` cookie goes along;
//! - `GET /me`: who is signed in, and as what; `POST /logout` ends it.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::pages::{escape, failure, page, PagesState};
use super::SignedIn;
use crate::api::SESSION_COOKIE;
use crate::store::Scope;

/// How long a session lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Marks a round trip that signs a person in on the controller itself
/// (device codes are never empty).
pub const SESSION_FLOW: &str = "";

pub async fn login(State(state): State<PagesState>) -> Response {
    page(
        StatusCode::OK,
        "Sign in to Warren",
        &format!(
            "<p>Admins and auditors sign in here to use the controller's API and console.</p>\
             <p><a class=\"button\" id=\"sign-in\" href=\"/login/start\">Sign in with {}</a></p>",
            escape(&state.sign_in.provider.display_name())
        ),
    )
}

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
    let refused = if user.disabled {
        Some(format!("{} is disabled on this controller.", user.email))
    } else if state.roles.scope_of(&user).is_none() {
        Some(format!(
            "{} holds no admin or auditor role on this controller.",
            user.email
        ))
    } else {
        None
    };
    if let Some(reason) = refused {
        let _ = store.sign_in_failed(Some(&user.email), None, &reason).await;
        return failure(StatusCode::FORBIDDEN, "Sign-in failed", &reason);
    }
    if let Err(e) = store
        .keep_provider_token(&user.id, signed_in.kept.as_deref())
        .await
    {
        return super::pages::internal(e);
    }
    let ttl = i64::try_from(SESSION_TTL.as_secs()).unwrap_or(i64::MAX);
    let secret = match store.start_session(&user, ttl).await {
        Ok(secret) => secret,
        Err(e) => return super::pages::internal(e),
    };
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={ttl}"
    );
    // On, so the code leaves the address bar.
    let mut response = Redirect::to("/login/done").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Reached through the provider's redirects, which a `SameSite=Strict`
/// cookie does not follow: our own page sends the browser on to `/me`.
pub async fn done() -> Response {
    let mut response = page(
        StatusCode::OK,
        "Signed in",
        "<p><a class=\"button\" id=\"continue\" href=\"/me\">Continue</a></p>",
    );
    response
        .headers_mut()
        .insert(header::REFRESH, HeaderValue::from_static("0; url=/me"));
    response
}

/// The session's secret, if the browser sent one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    super::pages::cookie(headers, SESSION_COOKIE)
}

pub async fn me(State(state): State<PagesState>, headers: HeaderMap) -> Response {
    let Some(secret) = session_cookie(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let user = match state.hub.store().session_user(&secret).await {
        Ok(user) => user,
        Err(e) => return super::pages::internal(e),
    };
    let Some(user) = user else {
        return Redirect::to("/login").into_response();
    };
    let role = match state.roles.scope_of(&user) {
        Some(Scope::Admin) => "admin",
        Some(Scope::Auditor) => "auditor",
        None => "no role",
    };
    page(
        StatusCode::OK,
        "Signed in",
        &format!(
            "<p>Signed in as <strong id=\"user\">{email}</strong>, \
             <strong id=\"role\">{role}</strong>. The API (<code>/api/v1</code>) accepts this \
             session where it accepts a token.</p>\
             <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <button class=\"button\" id=\"sign-out\" type=\"submit\">Sign out</button></form>",
            email = escape(&user.email),
            token = form_token(&secret),
        ),
    )
}

/// The sign-out form's anti-forgery token: derived from the session's
/// secret, which only this browser holds (the cookie is HttpOnly), so a
/// form on another site cannot carry it.
fn form_token(secret: &str) -> String {
    hex::encode(&super::digest(&format!("sign-out:{secret}"))[..16])
}

#[derive(serde::Deserialize)]
pub struct LogoutForm {
    token: String,
}

/// Ends the session: only with the form's token (a form elsewhere cannot
/// sign people out).
pub async fn logout(
    State(state): State<PagesState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LogoutForm>,
) -> Response {
    let Some(secret) = session_cookie(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let expected = form_token(&secret);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        form.token.as_bytes(),
        expected.as_bytes(),
    )) {
        return failure(
            StatusCode::FORBIDDEN,
            "Not signed out",
            "Sign out from the controller's own page.",
        );
    }
    if let Err(e) = state.hub.store().end_session(&secret).await {
        return super::pages::internal(e);
    }
    let mut response = page(
        StatusCode::OK,
        "Signed out",
        "<p id=\"done\">You are signed out.</p>",
    );
    let gone = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(gone) = HeaderValue::from_str(&gone) {
        response.headers_mut().insert(header::SET_COOKIE, gone);
    }
    response
}
