//! The console's pages: one template struct per page (askama checks the
//! templates in `templates/console/` against these structs when the
//! controller compiles), the navigation every page carries, and the
//! small pages for refusals and errors.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::session::{Role, Viewer};
use crate::store::StoreError;

/// What the header of every page shows.
#[derive(Debug, Clone)]
pub struct Nav {
    pub email: String,
    pub role: &'static str,
    pub csrf: String,
    /// Admins and auditors: networks, queue, audit.
    pub staff: bool,
    /// The page follows live changes (server-sent events).
    pub live: bool,
    /// Which top-level page this is.
    pub current: &'static str,
    /// A line about what the last change did.
    pub notice: Option<String>,
}

impl Nav {
    pub fn new(viewer: &Viewer, current: &'static str) -> Nav {
        Nav {
            email: viewer.user.email.clone(),
            role: viewer.role.name(),
            csrf: viewer.csrf.clone(),
            staff: viewer.role != Role::Member,
            live: false,
            current,
            notice: None,
        }
    }

    pub fn live(self) -> Nav {
        Nav { live: true, ..self }
    }

    pub fn notice(self, notice: Option<String>) -> Nav {
        Nav { notice, ..self }
    }
}

/// A rendered page as a response; a template error is the server's.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

pub fn ok(page: &impl Template) -> Response {
    render(StatusCode::OK, page)
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct Message<'a> {
    title: &'a str,
    reason: &'a str,
}

/// A page that only says something (refusals, sign-out).
pub fn message(status: StatusCode, title: &str, reason: &str) -> Response {
    render(status, &Message { title, reason })
}

/// A store failure: the refusals people can act on are said as they are;
/// the rest is logged, and the page says only that it went wrong.
pub fn store_error(e: StoreError) -> Response {
    let status = match &e {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Invalid(_) | StoreError::Policy(_) => StatusCode::BAD_REQUEST,
        StoreError::NotAuthorized(_) => StatusCode::FORBIDDEN,
        _ => return internal(e),
    };
    message(status, "Not done", &e.to_string())
}

/// After a change: back to `to` (the page it was made on) if it was done,
/// else the refusal.
pub fn done_or_refused<T>(done: Result<T, StoreError>, to: &str) -> Response {
    match done {
        Ok(_) => axum::response::Redirect::to(to).into_response(),
        Err(e) => store_error(e),
    }
}

pub fn internal(e: StoreError) -> Response {
    tracing::error!(error = %e, "console: store error");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The controller could not do that. Try again; if it persists, its log says why.",
    )
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct Login {
    /// The identity provider's name, if one is configured.
    pub provider: Option<String>,
}
