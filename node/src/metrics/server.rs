//! The metrics listener: plain HTTP/1.1 on TCP, one route (`GET /metrics`),
//! 404 for every other path. Read-only: it asks the event loop for a
//! snapshot and can change nothing. Bounded: a few connections at once,
//! each for a limited time, and a scrape that the agent does not answer
//! in time gets 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::exposition::CONTENT_TYPE;
use super::MetricsSettings;
use crate::daemon::Request;

/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 8;
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may stay open (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// The most a request's head may take: a scrape sends a few hundred bytes.
/// (hyper refuses less than 8 KiB; this constant is above it.)
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long a scrape waits for the event loop.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound listener, not yet serving.
pub struct Listener {
    listener: TcpListener,
    /// Whether `Host` must name this machine (a loopback listener: a
    /// browser rebound to it would send a foreign name).
    local_only: bool,
}

impl Listener {
    /// Binds the address; a busy or foreign address is an error here, at start.
    pub async fn bind(settings: &MetricsSettings) -> anyhow::Result<Listener> {
        settings.check().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding the metrics endpoint {}", settings.listen))?;
        Ok(Listener {
            listener,
            local_only: settings.listen.ip().is_loopback(),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves the page until the future is dropped.
    pub fn serve(
        self,
        requests: mpsc::Sender<Request>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        if let Some(addr) = self.local_addr() {
            tracing::info!(listen = %addr, "metrics endpoint listening");
        }
        let router = Router::new()
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(
                self.local_only,
                refuse_browsers,
            ))
            .with_state(requests);
        accept_loop(self.listener, router)
    }
}

async fn accept_loop(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Connections end with the loop: dropping it drops them.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                // Out of descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%from, "metrics connection refused: too many open");
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(e)) => tracing::debug!(%from, error = %e, "metrics connection ended"),
                Err(_) => tracing::debug!(%from, "metrics connection closed after its lifetime"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

/// A page in a browser could read the node's peers through a rebound name;
/// it always sends a foreign `Host`, or an `Origin` or `Referer`.
async fn refuse_browsers(
    State(local_only): State<bool>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let headers = request.headers();
    if headers.contains_key(header::ORIGIN)
        || headers.contains_key(header::REFERER)
        || (local_only && !local_host(headers))
    {
        return text(StatusCode::FORBIDDEN, "browsers may not read the metrics\n");
    }
    next.run(request).await
}

/// Whether `Host` (if any) names this machine: `localhost` or an IP literal.
fn local_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        return rest.split_once(']').is_some_and(|(ip, port)| {
            (port.is_empty() || port.starts_with(':')) && ip.parse::<std::net::Ipv6Addr>().is_ok()
        });
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

async fn metrics(State(requests): State<mpsc::Sender<Request>>) -> Response {
    let (tx, rx) = oneshot::channel();
    let asked = async {
        requests.send(Request::Metrics(tx)).await.ok()?;
        rx.await.ok()
    };
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, asked).await {
        Ok(Some(snapshot)) => (
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            super::render::render(&snapshot),
        )
            .into_response(),
        Ok(None) => text(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping\n"),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not answer in time\n",
        ),
    }
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found: the metrics are at /metrics\n",
    )
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn host(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        local_host(&headers)
    }

    #[test]
    fn only_names_of_this_machine_pass_as_host() {
        for ok in [
            "127.0.0.1:9101",
            "127.0.0.1",
            "localhost:9101",
            "LOCALHOST",
            "[::1]:9101",
            "[::1]",
        ] {
            assert!(host(ok), "{ok}");
        }
        for bad in [
            "evil.example:9101",
            "evil.example",
            "localhost.evil:9101",
            "",
        ] {
            assert!(!host(bad), "{bad}");
        }
        assert!(local_host(&HeaderMap::new()), "HTTP/1.0 sends no Host");
    }
}
