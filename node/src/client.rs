//! The CLI's client for the agent's local API on its Unix socket.

use std::path::Path;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;
use warren_proto::local_api::ErrorBody;

use crate::daemon::api::LOCAL_HOST;

/// GETs `path` from the agent and decodes its JSON answer.
pub async fn get<T: DeserializeOwned>(socket: &Path, path: &str) -> anyhow::Result<T> {
    let body = request(socket, hyper::Method::GET, path, None).await?;
    serde_json::from_slice(&body).context("decoding the agent's answer")
}

/// POSTs `body` as JSON to `path` and decodes the JSON answer.
pub async fn post<B: Serialize, T: DeserializeOwned>(
    socket: &Path,
    path: &str,
    body: &B,
) -> anyhow::Result<T> {
    let body = serde_json::to_vec(body).context("encoding request")?;
    let answer = request(socket, hyper::Method::POST, path, Some(body)).await?;
    serde_json::from_slice(&answer).context("decoding the agent's answer")
}

pub async fn delete(socket: &Path, path: &str) -> anyhow::Result<()> {
    request(socket, hyper::Method::DELETE, path, None)
        .await
        .map(|_| ())
}

/// DELETEs `path` with `body` as JSON.
pub async fn delete_json<B: Serialize>(socket: &Path, path: &str, body: &B) -> anyhow::Result<()> {
    let body = serde_json::to_vec(body).context("encoding request")?;
    request(socket, hyper::Method::DELETE, path, Some(body))
        .await
        .map(|_| ())
}

async fn request(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Bytes> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the agent at {} (is `warren daemon` running? set --socket or WARREN_SOCKET)",
            socket.display()
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("talking to the agent")?;
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, LOCAL_HOST);
    if body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("building request")?;
    let response = sender
        .send_request(request)
        .await
        .context("sending request to the agent")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the agent's answer")?
        .to_bytes();
    if !status.is_success() {
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => bail!("{} ({})", e.error.message, e.error.code),
            Err(_) => bail!("agent answered {status}"),
        }
    }
    Ok(body)
}
