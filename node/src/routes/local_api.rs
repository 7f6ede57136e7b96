//! Local-API routes for subnet routes and exit nodes: `GET /v1/routes`,
//! `POST /v1/routes/advertise|accept|masquerade`, and `POST`/`DELETE
//! /v1/exit-node`. Part of the daemon's router
//! ([`crate::daemon::api_endpoints`]), so they sit behind its socket
//! permissions and browser checks.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::oneshot;
use warren_proto::local_api::{ErrorBody, ErrorDetail};
use warren_proto::routes::{AcceptRequest, AdvertiseRequest, ExitNodeRequest, MasqueradeRequest};

use super::requests::{Reply, RoutesRequest};
use crate::daemon::api_endpoints::{Endpoint, Requests};
use crate::daemon::Request;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/routes", status),
        Endpoint::post("/v1/routes/advertise", advertise),
        Endpoint::post("/v1/routes/accept", accept),
        Endpoint::post("/v1/routes/masquerade", masquerade),
        Endpoint::post("/v1/exit-node", exit_use),
        Endpoint::delete("/v1/exit-node", exit_off),
    ]
}

async fn status(State(requests): State<Requests>) -> Response {
    let (tx, rx) = oneshot::channel();
    if requests
        .send(Request::Routes(RoutesRequest::Status(tx)))
        .await
        .is_err()
    {
        return stopping();
    }
    match rx.await {
        Ok(status) => Json(status).into_response(),
        Err(_) => stopping(),
    }
}

/// Sends a change to the event loop and answers with the new status.
async fn change<T>(
    requests: &Requests,
    body: Result<Json<T>, JsonRejection>,
    make: impl FnOnce(T, Reply) -> RoutesRequest,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    let (tx, rx) = oneshot::channel();
    if requests
        .send(Request::Routes(make(body, tx)))
        .await
        .is_err()
    {
        return stopping();
    }
    match rx.await {
        Ok(Ok(status)) => Json(status).into_response(),
        Ok(Err(refusal)) => {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, refusal.code, &refusal.message)
        }
        Err(_) => stopping(),
    }
}

async fn advertise(
    State(requests): State<Requests>,
    req: Result<Json<AdvertiseRequest>, JsonRejection>,
) -> Response {
    change(&requests, req, RoutesRequest::Advertise).await
}

async fn accept(
    State(requests): State<Requests>,
    req: Result<Json<AcceptRequest>, JsonRejection>,
) -> Response {
    change(&requests, req, RoutesRequest::Accept).await
}

async fn masquerade(
    State(requests): State<Requests>,
    req: Result<Json<MasqueradeRequest>, JsonRejection>,
) -> Response {
    change(&requests, req, RoutesRequest::Masquerade).await
}

async fn exit_use(
    State(requests): State<Requests>,
    req: Result<Json<ExitNodeRequest>, JsonRejection>,
) -> Response {
    change(&requests, req, |r, tx| RoutesRequest::ExitNode(Some(r), tx)).await
}

async fn exit_off(State(requests): State<Requests>) -> Response {
    change(&requests, Ok(Json(())), |(), tx| {
        RoutesRequest::ExitNode(None, tx)
    })
    .await
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
