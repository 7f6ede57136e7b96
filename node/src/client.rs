//! The CLI's client for the agent's local API on its Unix socket.

use std::path::Path;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use warren_proto::local_api::ErrorBody;

use crate::daemon::api::LOCAL_HOST;

/// GETs `path` from the agent and decodes its JSON answer.
pub async fn get<T: DeserializeOwned>(socket: &Path, path: &str) -> anyhow::Result<T> {
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
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, LOCAL_HOST)
        .body(Empty::<Bytes>::new())
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
            Ok(e) => bail!("agent: {} ({})", e.error.message, e.error.code),
            Err(_) => bail!("agent answered {status}"),
        }
    }
    serde_json::from_slice(&body).context("decoding the agent's answer")
}
