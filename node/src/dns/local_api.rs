//! Local-API routes for DNS and services: `GET /v1/dns`, and
//! `GET`/`POST`/`DELETE /v1/services`. Part of the daemon's router
//! ([`crate::daemon::api_endpoints`]), so they sit behind its socket
//! permissions and browser checks.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::sync::oneshot;
use warren_proto::local_api::{ErrorBody, ErrorDetail};
use warren_proto::local_dns::{ServiceRemove, ServiceRequest};

use super::DnsRequest;
use crate::daemon::api_endpoints::{Endpoint, Requests};
use crate::daemon::{Refusal, Request};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/dns", status),
        Endpoint::get("/v1/services", list),
        Endpoint::post("/v1/services", add),
        Endpoint::delete("/v1/services", remove),
    ]
}

/// Sends `make(reply)` to the event loop and turns its answer into a response.
async fn ask<T, F>(requests: &Requests, make: F) -> Result<T, Response>
where
    F: FnOnce(oneshot::Sender<T>) -> DnsRequest,
{
    let (tx, rx) = oneshot::channel();
    if requests.send(Request::Dns(make(tx))).await.is_err() {
        return Err(stopping());
    }
    rx.await.map_err(|_| stopping())
}

async fn status(State(requests): State<Requests>) -> Response {
    json(ask(&requests, DnsRequest::Status).await)
}

async fn list(State(requests): State<Requests>) -> Response {
    json(ask(&requests, DnsRequest::ListServices).await)
}

async fn add(
    State(requests): State<Requests>,
    body: Result<Json<ServiceRequest>, JsonRejection>,
) -> Response {
    let Json(add) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    match ask(&requests, |tx| DnsRequest::AddService(add, tx)).await {
        Ok(Ok(published)) => Json(published).into_response(),
        Ok(Err(refusal)) => refused(refusal),
        Err(response) => response,
    }
}

async fn remove(
    State(requests): State<Requests>,
    body: Result<Json<ServiceRemove>, JsonRejection>,
) -> Response {
    let Json(remove) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    match ask(&requests, |tx| DnsRequest::RemoveService(remove, tx)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(refusal)) => refused(refusal),
        Err(response) => response,
    }
}

fn json<T: Serialize>(answer: Result<T, Response>) -> Response {
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(response) => response,
    }
}

fn refused(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, refusal.code, &refusal.message)
}

fn stopping() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopping",
        "the agent is stopping",
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    };
    (status, Json(body)).into_response()
}
