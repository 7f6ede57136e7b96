//! Who looks at the console, and whether a change really comes from them.
//!
//! A session is the `__Host-warren-session` cookie (`Secure`, `HttpOnly`,
//! `SameSite=Strict`) the sign-in pages set; it ends 12 hours after
//! sign-in, or after an idle hour. Every change is a form POST that must
//! carry the session's form token and, when the browser says where it comes
//! from (`Origin`, `Sec-Fetch-Site`), come from the console's own origin.
//! The token is derived from the session's secret, which only this browser
//! holds, so a page elsewhere can neither read nor forge it.
//!
//! Break-glass: `warren-controller console login-code` prints a one-time
//! code; `POST /login/code` trades it for an admin session.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ConsoleState;
use crate::api::SESSION_COOKIE;
use crate::roles::BREAK_GLASS_ISSUER;
use crate::store::{Person, Scope, User};

/// A session ends this many seconds after sign-in, whatever happens.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// ... and this many after its last use.
pub const SESSION_IDLE_SECS: i64 = 3600;
/// How long (seconds) a break-glass code may wait to be used.
pub const LOGIN_CODE_TTL_SECS: i64 = 10 * 60;

/// What a signed-in person may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sees and changes everything.
    Admin,
    /// Sees everything, changes nothing.
    Auditor,
    /// Sees the portal, their own devices and grants.
    Member,
}

impl Role {
    pub fn of(scope: Option<Scope>) -> Role {
        match scope {
            Some(Scope::Admin) => Role::Admin,
            Some(Scope::Auditor) => Role::Auditor,
            None => Role::Member,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Member => "member",
        }
    }

    /// Admins and auditors see every network and member.
    pub fn sees_all(self) -> bool {
        self != Role::Member
    }
}

/// The signed-in person behind a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    pub role: Role,
    /// The form token every change must carry.
    pub csrf: String,
    /// The session's secret (signing out ends it).
    secret: String,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// A refusal unless the viewer is an admin.
    pub fn require_admin(&self) -> Result<(), Response> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(refusal(
                StatusCode::FORBIDDEN,
                &format!(
                    "{} is {}: only admins change this",
                    self.user.email,
                    self.role.name()
                ),
            ))
        }
    }

    /// Whether `email` is the viewer's own (devices they own).
    pub fn owns(&self, owner: Option<&str>) -> bool {
        owner.is_some_and(|o| o.eq_ignore_ascii_case(&self.user.email))
    }
}

/// The form token of a session: derived from its secret.
pub fn form_token(secret: &str) -> String {
    hex::encode(&crate::identity::digest(&format!("console-form:{secret}"))[..16])
}

/// A small page that says why a request was refused.
pub fn refusal(status: StatusCode, reason: &str) -> Response {
    super::views::message(status, "Refused", reason)
}

fn session_secret(headers: &HeaderMap) -> Option<String> {
    crate::identity::pages::cookie(headers, SESSION_COOKIE)
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let signed_out = || {
            if parts.method == axum::http::Method::GET {
                Redirect::to("/login").into_response()
            } else {
                refusal(
                    StatusCode::UNAUTHORIZED,
                    "Your session ended: sign in again.",
                )
            }
        };
        let Some(secret) = session_secret(&parts.headers) else {
            return Err(signed_out());
        };
        let user = match state
            .hub
            .store()
            .session_user(&secret, SESSION_IDLE_SECS)
            .await
        {
            Ok(Some(user)) => user,
            Ok(None) => return Err(signed_out()),
            Err(e) => return Err(super::views::internal(e)),
        };
        Ok(Viewer {
            role: Role::of(state.roles.scope_of(&user)),
            csrf: form_token(&secret),
            user,
            secret,
        })
    }
}

/// A viewer who sees every network: an admin or an auditor. Anyone else
/// gets `403` before the handler runs.
pub struct Staff(pub Viewer);

impl FromRequestParts<ConsoleState> for Staff {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if !viewer.role.sees_all() {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "Only admins and auditors see this page.",
            ));
        }
        Ok(Staff(viewer))
    }
}

/// Refuses a request another site's page made: a foreign `Origin`, or
/// `Sec-Fetch-Site: cross-site`. A request with neither (a script, curl)
/// still needs the form token.
pub fn same_origin(headers: &HeaderMap, origin: &str) -> Result<(), Response> {
    if let Some(sent) = headers.get(header::ORIGIN) {
        if sent.to_str().ok() != Some(origin) {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "This change comes from another site (Origin): refused.",
            ));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This change comes from another site (Sec-Fetch-Site): refused.",
        ));
    }
    Ok(())
}

/// A form with the session's token.
#[derive(Debug, Deserialize)]
struct WithToken<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

/// A state change: the signed-in viewer and their form, after the origin
/// and form token checks.
pub struct Change<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<ConsoleState> for Change<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        same_origin(&parts.headers, &state.origin)?;
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let axum::Form(with) = axum::Form::<WithToken<T>>::from_request(request, state)
            .await
            .map_err(|e| {
                refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("The form: {}", e.body_text()),
                )
            })?;
        if with.csrf.is_empty()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(
                with.csrf.as_bytes(),
                viewer.csrf.as_bytes(),
            ))
        {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "This form has no valid form token (CSRF): reload the page and try again.",
            ));
        }
        Ok(Change {
            viewer,
            form: with.form,
        })
    }
}

/// A form with nothing but its token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// The `Set-Cookie` of a new session, or of its end (`secret` `None`).
pub fn session_cookie(secret: Option<&str>) -> Option<HeaderValue> {
    let text = match secret {
        Some(secret) => format!(
            "{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={SESSION_TTL_SECS}"
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    HeaderValue::from_str(&text).ok()
}

/// The person a break-glass code signs in.
pub fn break_glass_person() -> Person {
    Person {
        issuer: BREAK_GLASS_ISSUER.into(),
        subject: "admin".into(),
        email: "break-glass@warren.invalid".into(),
        name: "Break-glass admin".into(),
        groups: Vec::new(),
    }
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// `POST /login/code`: a live code, used up, for an admin session.
pub async fn redeem_code(
    axum::extract::State(state): axum::extract::State<ConsoleState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    if let Err(refused) = same_origin(&headers, &state.origin) {
        return refused;
    }
    let code = form.code.trim();
    let store = state.hub.store();
    let taken = if code.is_empty() || code.len() > 128 {
        Ok(false)
    } else {
        store.take_login_code(code).await
    };
    match taken {
        Ok(true) => {}
        Ok(false) => {
            let _ = store
                .sign_in_failed(None, None, "break-glass code unknown, used or expired")
                .await;
            return refusal(
                StatusCode::FORBIDDEN,
                "That code is unknown, used or expired. Run warren-controller console login-code for a new one.",
            );
        }
        Err(e) => return super::views::internal(e),
    }
    let started = async {
        let user = store.sign_in_user(&break_glass_person()).await?;
        store.start_session(&user, SESSION_TTL_SECS).await
    };
    match started.await {
        Ok(secret) => signed_in(&secret),
        Err(e) => super::views::internal(e),
    }
}

/// On to the console with a new session's cookie.
pub fn signed_in(secret: &str) -> Response {
    let mut response = Redirect::to("/console").into_response();
    if let Some(cookie) = session_cookie(Some(secret)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /logout`: ends the session, with the form's token (a form
/// elsewhere cannot sign people out).
pub async fn logout(
    axum::extract::State(state): axum::extract::State<ConsoleState>,
    change: Change<Empty>,
) -> Response {
    if let Err(e) = state.hub.store().end_session(&change.viewer.secret).await {
        return super::views::internal(e);
    }
    let mut response = super::views::message(StatusCode::OK, "Signed out", "You are signed out.");
    if let Some(gone) = session_cookie(None) {
        response.headers_mut().insert(header::SET_COOKIE, gone);
    }
    response
}
