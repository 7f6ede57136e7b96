//! Serves a router over TCP with HTTP/1.1, in the clear (the API) or over
//! TLS (the API and people's pages): a header-read timeout (which axum's
//! `serve` cannot set), a cap on open connections, each request tagged
//! with its peer's address, a clear answer to plain HTTP on the TLS port,
//! and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use super::ApiLimits;

/// Accepts until `shutdown` resolves, then lets open connections finish
/// their current request and returns once they are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(listener, None, router, limits, shutdown).await;
}

/// [`serve`] over TLS with `tls`. A handshake that does not finish within
/// the header-read timeout is dropped.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(
        listener,
        Some(TlsAcceptor::from(tls)),
        router,
        limits,
        shutdown,
    )
    .await;
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()>,
) {
    accept_each(listener, limits, shutdown, move |(stream, peer), close| {
        let router = router.clone();
        let tls = tls.clone();
        async move {
            let tag = ConnectInfo(peer);
            match tls {
                None => serve_connection(stream, peer, tag, router, limits, close).await,
                Some(acceptor) => match first_byte(&stream, limits).await {
                    Some(TLS_HANDSHAKE) => {
                        let handshake = tokio::time::timeout(
                            limits.header_read_timeout,
                            acceptor.accept(stream),
                        );
                        match handshake.await {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, peer, tag, router, limits, close).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    Some(b'A'..=b'Z') => refuse_plain_http(stream, peer).await,
                    _ => tracing::debug!(%peer, "neither TLS nor HTTP"),
                },
            }
        }
    })
    .await;
}

/// A listener the accept loop takes connections from: TCP here, the
/// admin socket's Unix listener in `local_socket`.
pub(super) trait Accept {
    type Connection: Send + 'static;
    fn accept_one(&self) -> impl Future<Output = std::io::Result<Self::Connection>> + Send;
}

impl Accept for TcpListener {
    type Connection = (TcpStream, SocketAddr);
    fn accept_one(&self) -> impl Future<Output = std::io::Result<Self::Connection>> + Send {
        self.accept()
    }
}

/// Runs `handle` on each accepted connection, at most
/// `limits.max_connections` at once, until `shutdown` resolves; then tells
/// open connections to close (the watch turns true) and waits for them.
pub(super) async fn accept_each<L, H, F>(
    listener: L,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()>,
    handle: H,
) where
    L: Accept,
    H: Fn(L::Connection, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, close) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Past the cap we stop accepting; clients wait in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let connection = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept_one() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let served = handle(connection, close.clone());
        connections.spawn(async move {
            served.await;
            drop(permit);
        });
    }
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The first byte the client sent, without taking it from the stream.
async fn first_byte(stream: &TcpStream, limits: ApiLimits) -> Option<u8> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0]),
        _ => None,
    }
}

/// Plain HTTP sent to the HTTPS port (an `http://` URL with the HTTPS
/// port): one 400 in the clear that says so, instead of a connection
/// that just closes. The request is read first (and the rest drained
/// after), so the answer is not lost to a reset.
async fn refuse_plain_http(mut stream: TcpStream, peer: SocketAddr) {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);
    tracing::debug!(%peer, "plain HTTP on the HTTPS listener");
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let url = match stream.local_addr() {
        Ok(addr) => format!("https://{addr}"),
        Err(_) => "https://".to_string(),
    };
    let body = serde_json::json!({"error": {
        "code": "bad_request",
        "message": format!("this port speaks HTTPS, not plain HTTP: use {url}"),
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         content-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let drain = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(PATIENCE, drain).await;
}

/// Serves HTTP/1.1 on one connection; every request carries `tag` (the
/// peer's address, or on the admin socket who the kernel says it is).
pub(super) async fn serve_connection<T: Clone + Send + Sync + 'static>(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    peer: impl std::fmt::Display,
    tag: T,
    router: Router,
    limits: ApiLimits,
    mut close: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(tag.clone());
        router.clone().call(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = async { let _ = close.wait_for(|c| *c).await; } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        // Header-read timeouts and clients that vanish end up here.
        tracing::debug!(%peer, error = %e, "API connection ended");
    }
}
