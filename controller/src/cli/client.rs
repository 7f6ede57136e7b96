//! A small HTTP/1 client for the admin commands, JSON in and out: the
//! admin socket (no token: the controller asks the kernel who we are),
//! plain TCP for `http://` (normally loopback), TLS for `https://`, where
//! the controller's certificate is pinned by its SHA-256 fingerprint (as
//! nodes pin it) or, for an operator's CA-signed certificate, verified
//! against CA roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use warren_proto::control::normalise_fingerprint;
use warren_proto::pinning::PinnedVerifier;

const TIMEOUT: Duration = Duration::from_secs(30);

/// How an `https://` API's certificate is trusted.
#[derive(Debug, Clone, Copy)]
pub struct TrustArgs<'a> {
    /// The certificate's SHA-256, as `warren-controller fingerprint` prints it.
    pub fingerprint: Option<&'a str>,
    /// PEM CA certificates to verify against instead of the system's.
    pub ca_file: Option<&'a Path>,
}

pub struct ApiClient {
    /// `host:port` to connect to and send as `Host`.
    authority: String,
    /// Path prefix of the base URL, without a trailing slash.
    base_path: String,
    token: Option<String>,
    /// What to say when a token is needed and there is none.
    no_token: String,
    /// Set for `https://`.
    tls: Option<Tls>,
    /// Set for the admin socket, which needs no token.
    socket: Option<PathBuf>,
}

struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// Set when the certificate is pinned: what it was pinned to and saw.
    pin: Option<Arc<PinnedVerifier>>,
    /// How the certificate is trusted, for error messages.
    trust: String,
}

impl ApiClient {
    pub fn new(api: &str, token: Option<String>, trust: TrustArgs<'_>) -> anyhow::Result<Self> {
        let uri: Uri = api
            .parse()
            .with_context(|| format!("--api {api:?} is not a URL"))?;
        let (https, default_port) = match uri.scheme_str() {
            Some("http") => (false, 80),
            Some("https") => (true, 443),
            _ => bail!("--api must be an http:// or https:// URL, got {api:?}"),
        };
        let authority = uri
            .authority()
            .with_context(|| format!("--api {api:?} has no host"))?;
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let tls = match https {
            true => Some(Tls::new(&host, trust)?),
            false if trust.fingerprint.is_some() || trust.ca_file.is_some() => {
                bail!("--api-fingerprint and --api-ca are for an https:// API; --api is {api:?}")
            }
            false => None,
        };
        Ok(Self {
            authority: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(default_port)
            ),
            base_path: uri.path().trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.trim().is_empty()),
            no_token: "no API token: pass --token or set WARREN_TOKEN".to_string(),
            tls,
            socket: None,
        })
    }

    /// The API on the controller's admin socket at `path`.
    pub fn local(path: PathBuf) -> Self {
        Self {
            authority: "localhost".to_string(),
            base_path: String::new(),
            token: None,
            no_token: String::new(),
            tls: None,
            socket: Some(path),
        }
    }

    /// The same client, saying `message` when a token is needed and missing.
    pub fn with_no_token_message(self, message: String) -> Self {
        Self {
            no_token: message,
            ..self
        }
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
        if self.socket.is_none() && self.token.is_none() {
            bail!("{}", self.no_token);
        }
        let payload = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(HOST, &self.authority);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(payload))
            .context("building the request")?;
        let (status, bytes) = if let Some(path) = &self.socket {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .with_context(|| format!("connecting to the admin socket {}", path.display()))?;
            exchange(stream, request).await?
        } else {
            self.exchange_tcp(request).await?
        };
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

    async fn exchange_tcp(
        &self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to the API at {}", self.authority))?;
        match &self.tls {
            None => exchange(stream, request).await,
            Some(tls) => {
                let stream = tls.handshake(stream, &self.authority).await?;
                exchange(stream, request).await
            }
        }
    }
}

/// One request and its answer over an open connection.
async fn exchange(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the API")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .context("sending the request to the API (an https:// API on an http:// address?)")?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .context("reading the API's answer")?
        .to_bytes();
    Ok((status, bytes))
}

impl Tls {
    fn new(host: &str, trust: TrustArgs<'_>) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS settings")?;
        let (config, pin, trust) = match (trust.fingerprint, trust.ca_file) {
            (Some(_), Some(_)) => {
                bail!("give --api-fingerprint (pin the certificate) or --api-ca (verify it against a CA), not both")
            }
            (Some(text), None) => {
                let pinned = normalise_fingerprint(text).with_context(|| {
                    format!(
                        "--api-fingerprint must be 64 hex digits (colons allowed), as \
                         `warren-controller fingerprint` prints it; got {text:?}"
                    )
                })?;
                let pin = Arc::new(PinnedVerifier::new(Some(pinned)));
                let config = builder
                    .dangerous()
                    .with_custom_certificate_verifier(pin.clone())
                    .with_no_client_auth();
                (config, Some(pin), "the pinned fingerprint".to_string())
            }
            (None, Some(path)) => {
                let roots = roots_from_file(path)?;
                let config = builder.with_root_certificates(roots).with_no_client_auth();
                (config, None, format!("the CA in {}", path.display()))
            }
            (None, None) => {
                let config = builder
                    .with_root_certificates(system_roots()?)
                    .with_no_client_auth();
                (config, None, "the system's CA roots".to_string())
            }
        };
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host:?} is not a host name or address"))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            pin,
            trust,
        })
    }

    async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
        authority: &str,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let result = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await;
        let error = match result {
            Ok(stream) => return Ok(stream),
            Err(error) => error,
        };
        if let Some(pin) = &self.pin {
            let pinned = pin.pinned().unwrap_or_default();
            if let Some(seen) = pin.seen().filter(|seen| seen != pinned) {
                bail!(
                    "the API at {authority} presented a certificate with fingerprint {seen}, \
                     not the pinned {pinned}: refusing it (another controller, or someone in \
                     between; check --api-fingerprint)"
                );
            }
        }
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let hint = match rustls_error {
            Some(rustls::Error::InvalidCertificate(_)) => format!(
                ": the certificate is not trusted by {}. The controller's own certificate is \
                 self-signed: pin it with --api-fingerprint (`warren-controller fingerprint` \
                 on its host prints it), or give the CA that signed the operator's \
                 certificate with --api-ca",
                self.trust
            ),
            Some(rustls::Error::InvalidMessage(_)) | None => {
                " (is it a plain http:// address?)".to_string()
            }
            Some(_) => String::new(),
        };
        Err(anyhow::Error::new(error)
            .context(format!("TLS handshake with the API at {authority}{hint}")))
    }
}

fn roots_from_file(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading --api-ca {}", path.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("--api-ca {}: not PEM", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("--api-ca {}: not a CA certificate", path.display()))?;
    }
    if roots.is_empty() {
        bail!("--api-ca {}: no certificate in the file", path.display());
    }
    Ok(roots)
}

fn system_roots() -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        bail!(
            "no CA certificates found on this system to verify the https:// API with; \
             pin its certificate with --api-fingerprint or give a CA with --api-ca"
        );
    }
    Ok(roots)
}
