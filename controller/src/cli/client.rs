//! A small HTTP/1 client for the admin commands: plain TCP to the API
//! (normally on loopback), JSON in and out.

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct ApiClient {
    /// `host:port` to connect to and send as `Host`.
    authority: String,
    /// Path prefix of the base URL, without a trailing slash.
    base_path: String,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(api: &str, token: Option<String>) -> anyhow::Result<Self> {
        let uri: Uri = api
            .parse()
            .with_context(|| format!("--api {api:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--api must be an http:// URL (the API is plain HTTP, normally on loopback)");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--api {api:?} has no host"))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Self {
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.trim().is_empty()),
        })
    }

    /// Sends one request; a non-2xx answer becomes an error with the API's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        tokio::time::timeout(TIMEOUT, self.call_inner(method, path, body))
            .await
            .context("the API did not answer in time")?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let Some(token) = &self.token else {
            bail!("no API token: pass --token or set WARREN_TOKEN");
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to the API at {}", self.authority))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the API")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let payload = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(payload))
            .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .context("sending the request to the API")?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the API's answer")?
            .to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).context("the API's answer is not JSON")?
        };
        if !status.is_success() {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            let code = value
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("error");
            bail!("{message} ({} {code})", status.as_u16());
        }
        Ok(value)
    }
}
