//! A hostile node for the security suites, built on `warren_proto`: it
//! speaks the control protocol from inside a lab namespace with keys of its
//! own making (any certificate will do for it), and does what no agent
//! would: join with fresh keys over and over, report endpoints no peer
//! should probe, ask peers to probe them, and hold many connections with
//! one key so that the relay copies its frames to each.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use warren_proto::control::{self, ControllerMessage, JoinOutcome, NodeMessage};
use warren_proto::relay::RelayFrame;
use warren_proto::{NetworkId, NodePrivateKey, NodePublicKey};

use crate::error::{LabError, Result};
use crate::in_netns;
use crate::netns::Netns;

const SERVER_NAME: &str = "warren-controller";
const WAIT: Duration = Duration::from_secs(3);

/// An attacker does not check whom it talks to.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config() -> anyhow::Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![control::ALPN.to_vec()];
    Ok(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).context("QUIC TLS setup")?,
    )))
}

/// One authenticated control connection of the hostile node.
struct Session {
    key: NodePrivateKey,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Session {
    async fn open(
        endpoint: &quinn::Endpoint,
        controller: SocketAddr,
        key: NodePrivateKey,
    ) -> anyhow::Result<Session> {
        let connection = endpoint.connect(controller, SERVER_NAME)?.await?;
        let (send, recv) = connection.open_bi().await?;
        let mut session = Session {
            key,
            connection: connection.clone(),
            send,
            recv,
        };
        session
            .write(&NodeMessage::Hello {
                node_key: session.key.public_key(),
                version: "hostile-1".into(),
            })
            .await?;
        let Some(ControllerMessage::Challenge {
            controller_key,
            nonce,
        }) = session.next().await?
        else {
            bail!("no challenge");
        };
        let mut exporter = [0u8; 32];
        connection
            .export_keying_material(&mut exporter, control::EXPORTER_LABEL, &nonce)
            .map_err(|e| anyhow::anyhow!("keying material: {e:?}"))?;
        let proof = control::make_proof(&session.key, &controller_key, &exporter, &nonce)?;
        session.write(&NodeMessage::Auth { proof }).await?;
        match session.next().await? {
            Some(ControllerMessage::Welcome { .. }) => Ok(session),
            other => bail!("not welcomed: {other:?}"),
        }
    }

    async fn write(&mut self, message: &NodeMessage) -> anyhow::Result<()> {
        self.send
            .write_all(&control::encode_frame(message)?)
            .await?;
        Ok(())
    }

    /// The next message, or `None` if nothing comes within [`WAIT`].
    async fn next(&mut self) -> anyhow::Result<Option<ControllerMessage>> {
        let read = async {
            let mut prefix = [0u8; 4];
            self.recv.read_exact(&mut prefix).await?;
            let mut body = vec![0u8; control::frame_len(prefix)?];
            self.recv.read_exact(&mut body).await?;
            anyhow::Ok(control::decode_frame(&body)?)
        };
        match tokio::time::timeout(WAIT, read).await {
            Ok(message) => message.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Joins and returns what the controller answered: the outcome, or the
    /// code of an error (such as `rate_limited`).
    async fn join(&mut self, network: NetworkId, key: Option<&str>) -> anyhow::Result<String> {
        self.write(&NodeMessage::Join {
            network_id: network,
            name: "hostile".into(),
            preauth_key: key.map(str::to_owned),
        })
        .await?;
        loop {
            match self.next().await? {
                Some(ControllerMessage::JoinResult { result, .. }) => {
                    return Ok(match result {
                        JoinOutcome::Authorized => "authorized".into(),
                        JoinOutcome::Pending => "pending".into(),
                        JoinOutcome::Refused { reason } => format!("refused: {reason}"),
                    })
                }
                Some(ControllerMessage::Error { code, .. }) => return Ok(code),
                Some(_) => continue,
                None => bail!("no answer to a join"),
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::io("starting a runtime for the hostile node", e))
}

fn bind(runtime: &tokio::runtime::Runtime) -> anyhow::Result<quinn::Endpoint> {
    let _guard = runtime.enter();
    let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
    endpoint.set_default_client_config(client_config()?);
    Ok(endpoint)
}

/// What became of `count` joins into `network`, each with a fresh key on a
/// connection of its own, made as fast as the controller lets them: the
/// answers (`pending`, `rate_limited`, `refused: ...`) or `connect: ...`
/// for a connection the controller would not take.
pub fn join_flood(
    ns: &Netns,
    controller: SocketAddr,
    network: NetworkId,
    count: usize,
) -> Result<Vec<String>> {
    in_netns::run(ns.name(), || -> Result<Vec<String>> {
        let runtime = runtime()?;
        let endpoint = bind(&runtime).map_err(|e| LabError::Invalid(format!("{e:#}")))?;
        let outcomes = runtime.block_on(async {
            let mut outcomes = Vec::with_capacity(count);
            let mut open = Vec::new();
            for _ in 0..count {
                let session = Session::open(&endpoint, controller, NodePrivateKey::generate());
                let outcome = match tokio::time::timeout(WAIT, session).await {
                    Ok(Ok(mut session)) => {
                        let answer = session.join(network, None).await;
                        // Kept open: the flood holds its connections.
                        open.push(session);
                        answer.unwrap_or_else(|e| format!("join: {e:#}"))
                    }
                    Ok(Err(e)) => format!("connect: {e:#}"),
                    Err(_) => "connect: timed out".into(),
                };
                outcomes.push(outcome);
            }
            outcomes
        });
        endpoint.close(0u32.into(), b"done");
        Ok(outcomes)
    })?
}

/// A member that misbehaves: joins `network` with `preauth_key`, reports
/// `endpoints` as its own, and asks `peer` to probe them; then stays
/// connected for `linger`, so its peers keep it in their maps.
pub fn bad_endpoints(
    ns: &Netns,
    controller: SocketAddr,
    network: NetworkId,
    preauth_key: &str,
    peer: NodePublicKey,
    endpoints: Vec<SocketAddr>,
    linger: Duration,
) -> Result<NodePublicKey> {
    in_netns::run(ns.name(), || -> Result<NodePublicKey> {
        let runtime = runtime()?;
        let endpoint = bind(&runtime).map_err(|e| LabError::Invalid(format!("{e:#}")))?;
        let key = NodePrivateKey::generate();
        let public = key.public_key();
        runtime
            .block_on(async {
                let mut session = Session::open(&endpoint, controller, key).await?;
                let joined = session.join(network, Some(preauth_key)).await?;
                if joined != "authorized" {
                    bail!("the hostile member was not authorized: {joined}");
                }
                session
                    .write(&NodeMessage::Endpoints {
                        network_id: network,
                        endpoints: endpoints.clone(),
                    })
                    .await?;
                for _ in 0..20 {
                    session
                        .write(&NodeMessage::CallMeMaybe {
                            network_id: network,
                            peer,
                            endpoints: endpoints.clone(),
                            nat: None,
                        })
                        .await?;
                }
                tokio::time::sleep(linger).await;
                anyhow::Ok(())
            })
            .map_err(|e| LabError::Invalid(format!("hostile member: {e:#}")))?;
        endpoint.close(0u32.into(), b"done");
        Ok(public)
    })?
}

/// What became of a member's relay frames to a key of its own that held
/// more connections than one key may.
#[derive(Debug)]
pub struct Amplification {
    /// Per destination connection, in the order they were opened: how the
    /// controller closed it (`code N: reason`), or `None` if it is open.
    pub closed: Vec<Option<String>>,
    /// Per destination connection, the relayed frames it received.
    pub received: Vec<usize>,
}

/// A member with two keys from `preauth_key`: the destination opens
/// `connections` connections with its key, then the sender relays
/// `frames` frames of `payload` bytes to it, one every 2 ms, as datagrams.
/// Counts what each destination connection received within 1 s after.
pub fn relay_amplification(
    ns: &Netns,
    controller: SocketAddr,
    network: NetworkId,
    preauth_key: &str,
    connections: usize,
    frames: u64,
    payload: usize,
) -> Result<Amplification> {
    in_netns::run(ns.name(), || -> Result<Amplification> {
        let runtime = runtime()?;
        let endpoint = bind(&runtime).map_err(|e| LabError::Invalid(format!("{e:#}")))?;
        let outcome = runtime
            .block_on(async {
                let mut sender =
                    Session::open(&endpoint, controller, NodePrivateKey::generate()).await?;
                let destination = NodePrivateKey::generate();
                let mut first = Session::open(&endpoint, controller, destination.clone()).await?;
                for session in [&mut sender, &mut first] {
                    let joined = session.join(network, Some(preauth_key)).await?;
                    if joined != "authorized" {
                        bail!("a hostile key was not authorized: {joined}");
                    }
                }
                let mut sessions = vec![first];
                for _ in 1..connections {
                    sessions.push(Session::open(&endpoint, controller, destination.clone()).await?);
                }
                let counts: Vec<Arc<AtomicUsize>> = sessions
                    .iter()
                    .map(|session| {
                        let count = Arc::new(AtomicUsize::new(0));
                        let connection = session.connection.clone();
                        let counted = count.clone();
                        tokio::spawn(async move {
                            while let Ok(bytes) = connection.read_datagram().await {
                                if RelayFrame::decode(&bytes).is_ok() {
                                    counted.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        });
                        count
                    })
                    .collect();
                for seq in 1..=frames {
                    let frame = RelayFrame {
                        network_id: network,
                        peer: destination.public_key(),
                        seq,
                        payload: vec![0x5a; payload],
                    };
                    sender.connection.send_datagram(frame.encode().into())?;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let closed = sessions
                    .iter()
                    .map(|session| {
                        session.connection.close_reason().map(|e| match e {
                            quinn::ConnectionError::ApplicationClosed(close) => format!(
                                "code {}: {}",
                                close.error_code,
                                String::from_utf8_lossy(&close.reason)
                            ),
                            other => other.to_string(),
                        })
                    })
                    .collect();
                let received = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                anyhow::Ok(Amplification { closed, received })
            })
            .map_err(|e| LabError::Invalid(format!("hostile member: {e:#}")))?;
        endpoint.close(0u32.into(), b"done");
        Ok(outcome)
    })?
}
