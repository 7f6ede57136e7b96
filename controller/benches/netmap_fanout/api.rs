//! The controller's admin HTTP API, over one kept-open HTTP/1 connection so
//! that a timed request pays for no TCP handshake. The API closes a
//! connection that stays idle (its header-read timeout); the next request
//! then opens a new one.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub struct Api {
    addr: SocketAddr,
    token: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Api {
    pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            token: token.to_owned(),
            sender: open(addr).await?,
        })
    }

    /// The connection, opened again if the API closed it.
    async fn ready(&mut self) -> anyhow::Result<()> {
        if self.sender.ready().await.is_err() {
            self.sender = open(self.addr).await?;
            self.sender.ready().await.context("API connection")?;
        }
        Ok(())
    }

    /// Sends one request; a non-2xx answer is an error with the body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        let payload = match body {
            Some(v) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&v)?)
            }
            None => Bytes::new(),
        };
        self.ready().await?;
        let response = self
            .sender
            .send_request(request.body(Full::new(payload))?)
            .await
            .with_context(|| format!("sending {path}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{path}: {status} {}", String::from_utf8_lossy(&bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{path}: answer is not JSON"))
    }

    /// One counter or gauge from `/metrics`.
    pub async fn metric(&mut self, name: &str) -> anyhow::Result<f64> {
        self.ready().await?;
        let request = Request::builder()
            .uri("/metrics")
            .header(HOST, self.addr.to_string())
            .body(Full::new(Bytes::new()))?;
        let response = self.sender.send_request(request).await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .with_context(|| format!("no {name} in /metrics"))?;
        let value = line.split_whitespace().nth(1).context("no value")?;
        Ok(value.parse()?)
    }
}

async fn open(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the API at {addr}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the API")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
