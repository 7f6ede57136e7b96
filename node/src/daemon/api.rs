//! The local API: HTTP/JSON on a Unix socket, for the CLI. Never a TCP listener.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use axum::extract::rejection::JsonRejection;
use axum::extract::Path as UrlPath;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use warren_proto::local_api::{
    ErrorBody, ErrorDetail, JoinRequest, PathKind, PingReply, PingRequest,
};
use warren_proto::NetworkId;

use super::api_endpoints::{self, Endpoint};
use super::caller::{self, Access, Caller, Policy};
use super::network::PingOutcome;
use super::{Refusal, Request};
use crate::platform::sockopt::{effective_uid, peer_groups};
use warren_engine::Via;

/// The Host header the CLI sends; anything else is a browser being rebound.
pub const LOCAL_HOST: &str = "local.warren";

/// Binds the socket (mode 0660); the future serves it until dropped.
/// Members of `admin_gid` may change things; of the socket's group, read.
pub fn serve(
    path: &Path,
    requests: mpsc::Sender<Request>,
    admin_gid: Option<u32>,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating socket folder {}", dir.display()))?;
    }
    // A socket file left by a crash would make bind fail.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another agent is already listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding local API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting mode of {}", path.display()))?;
    let router = api_endpoints::router(api_endpoints::all())
        .fallback(not_found)
        .layer(middleware::from_fn(check_access))
        .layer(middleware::from_fn(refuse_browsers))
        .with_state(requests);
    Ok(accept_loop(listener, router, admin_gid))
}

/// The daemon's own endpoints (DNS and routes add theirs in [`api_endpoints::all`]).
pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/status", status),
        Endpoint::post("/v1/networks", join),
        Endpoint::delete("/v1/networks/{id}", leave),
        Endpoint::post("/v1/networks/{id}/login", login),
        Endpoint::post("/v1/networks/{id}/down", down),
        Endpoint::post("/v1/networks/{id}/up", up),
        Endpoint::post("/v1/ping", ping),
        Endpoint::get("/v1/netcheck", netcheck),
        Endpoint::get("/v1/explain", explain),
    ]
}

async fn accept_loop(listener: UnixListener, router: Router, admin_gid: Option<u32>) {
    let own_uid = effective_uid();
    // Connections end with the loop: dropping it drops them.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "local API accept failed");
                continue;
            }
        };
        // The socket's mode lets only root and its group connect; the
        // caller's own groups are checked too, so a loosened mode or a
        // descriptor passed on does not let anyone else in.
        let policy = Policy {
            own_uid,
            socket_gid: socket_group(&listener),
            admin_gid,
        };
        let access = match (stream.peer_cred(), peer_groups(&stream)) {
            (Ok(cred), Ok(groups)) => caller_access(
                &policy,
                caller::from_socket(cred.uid(), cred.gid(), &groups),
            ),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "local API peer credentials unavailable");
                continue;
            }
        };
        let Some(access) = access else {
            continue;
        };
        let service = TowerToHyperService::new(router.clone().layer(Extension(access)));
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "local API connection ended");
            }
        });
    }
}

/// A socket owned by a non-root group (the `warren` group of the packages)
/// with mode g+rw admits that group's members, to read.
fn socket_group(listener: &UnixListener) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().and_then(|p| std::fs::metadata(p).ok()))
        .filter(|m| m.gid() != 0 && m.mode() & 0o060 == 0o060)
        .map(|m| m.gid())
}

/// What the process at the other end may do, or `None` (logged) if nothing.
fn caller_access(policy: &Policy, caller: Caller) -> Option<Access> {
    let access = policy.access(&caller);
    if access.is_none() {
        tracing::warn!(uid = caller.uid, groups = ?caller.groups, "local API connection refused: not in the socket's group");
    }
    access
}

/// Changes need root, the agent's user or `admin-group`; the socket's group may only read.
async fn check_access(request: HttpRequest, next: Next) -> Response {
    let have = request.extensions().get::<Access>().copied();
    let need = caller::needed(request.method(), request.uri().path());
    if have.is_some_and(|have| have >= need) {
        return next.run(request).await;
    }
    tracing::warn!(method = %request.method(), path = request.uri().path(), "local API change refused: caller is not an admin");
    error(
        StatusCode::FORBIDDEN,
        "not_admin",
        "permission denied: changes need root or a member of the agent's admin-group; members of the socket's group may only read",
    )
}

async fn refuse_browsers(request: HttpRequest, next: Next) -> Response {
    let headers = request.headers();
    let foreign_host = headers.get(header::HOST).is_some_and(|h| {
        h.to_str()
            .map_or(true, |h| h != LOCAL_HOST && h != "localhost")
    });
    if foreign_host || headers.contains_key(header::ORIGIN) || headers.contains_key(header::REFERER)
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "browsers may not use the local API",
        );
    }
    next.run(request).await
}

async fn status(State(requests): State<mpsc::Sender<Request>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if requests.send(Request::Status(tx)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the agent is stopping",
        );
    }
    match rx.await {
        Ok(status) => Json(status).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the agent is stopping",
        ),
    }
}

async fn join(
    State(requests): State<mpsc::Sender<Request>>,
    body: Result<Json<JoinRequest>, JsonRejection>,
) -> Response {
    let Json(join) = match body {
        Ok(j) => j,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    let (tx, rx) = oneshot::channel();
    if requests.send(Request::Join(join, tx)).await.is_err() {
        return stopping();
    }
    match rx.await {
        Ok(Ok(status)) => Json(status).into_response(),
        Ok(Err(refusal)) => refused(refusal),
        Err(_) => stopping(),
    }
}

async fn leave(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    for_network(&requests, &id, Request::Leave, |()| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}

/// `warren login`: the network's status once the controller was asked for
/// a sign-in page (it arrives in `sign_in_url` moments later).
async fn login(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    for_network(&requests, &id, Request::Login, |status| {
        Json(status).into_response()
    })
    .await
}

/// `warren down`: the network's status, down.
async fn down(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    for_network(&requests, &id, Request::Down, |status| {
        Json(status).into_response()
    })
    .await
}

/// `warren up`: the network's status as it comes back (`connecting`, or
/// `authorized` from its cached netmap).
async fn up(
    State(requests): State<mpsc::Sender<Request>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    for_network(&requests, &id, Request::Up, |status| {
        Json(status).into_response()
    })
    .await
}

/// Asks the event loop something about network `id` (from the path) and
/// answers with `ok` of what it says, or its refusal.
async fn for_network<T>(
    requests: &mpsc::Sender<Request>,
    id: &str,
    request: impl FnOnce(NetworkId, oneshot::Sender<Result<T, Refusal>>) -> Request,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    let id: NetworkId = match id.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_network_id", &e.to_string()),
    };
    let (tx, rx) = oneshot::channel();
    if requests.send(request(id, tx)).await.is_err() {
        return stopping();
    }
    match rx.await {
        Ok(Ok(answer)) => ok(answer),
        Ok(Err(refusal)) => refused(refusal),
        Err(_) => stopping(),
    }
}

async fn ping(
    State(requests): State<mpsc::Sender<Request>>,
    body: Result<Json<PingRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(j) => j,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    let (tx, rx) = oneshot::channel();
    if requests
        .send(Request::Ping(request.peer, tx))
        .await
        .is_err()
    {
        return stopping();
    }
    let target = match rx.await {
        Ok(Ok(t)) => t,
        Ok(Err(refusal)) => return refused(refusal),
        Err(_) => return stopping(),
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(6), target.answer).await;
    let (path, endpoint, rtt) = match outcome {
        Ok(Ok(PingOutcome::Answered { via, rtt })) => match via {
            Via::Udp(addr) => (PathKind::Direct, Some(addr.to_string()), Some(rtt)),
            Via::Relay(_) => (PathKind::Relay, None, Some(rtt)),
        },
        Ok(Ok(PingOutcome::UnknownPeer)) => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_peer",
                "that peer is not in this network",
            )
        }
        _ => (PathKind::None, None, None),
    };
    Json(PingReply {
        network: target.network,
        peer: target.key,
        name: target.name,
        path,
        endpoint,
        rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
    })
    .into_response()
}

async fn netcheck(State(requests): State<mpsc::Sender<Request>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if requests.send(Request::Netcheck(tx)).await.is_err() {
        return stopping();
    }
    match rx.await {
        Ok(report) => Json(report).into_response(),
        Err(_) => stopping(),
    }
}

/// `GET /v1/explain?to=DEST&port=PROTO:PORT` (`port` defaults to `icmp`).
async fn explain(
    State(requests): State<mpsc::Sender<Request>>,
    query: Result<axum::extract::Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let axum::extract::Query(query) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    let port = match query.port.as_deref().unwrap_or("icmp").parse() {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_port", &format!("{e}")),
    };
    let (tx, rx) = oneshot::channel();
    if requests
        .send(Request::Explain(query.to, port, tx))
        .await
        .is_err()
    {
        return stopping();
    }
    match rx.await {
        Ok(Ok(reply)) => Json(reply).into_response(),
        Ok(Err(refusal)) => refused(refusal),
        Err(_) => stopping(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ExplainQuery {
    to: String,
    port: Option<String>,
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

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
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

/// The local API's fuzz target, replayed over its committed inputs.
#[cfg(test)]
#[path = "../../../fuzz/checks/local_api.rs"]
mod fuzz_inputs;
