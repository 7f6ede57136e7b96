//! One authenticated link to a controller or a relay-only instance: the
//! dial (QUIC over UDP, or over TCP as the fallback), the key proof, and
//! the framed control stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use warren_proto::control::{self, normalise_fingerprint, ControllerMessage, NodeMessage};
use warren_proto::local_api::ControlTransport;
use warren_proto::NodePrivateKey;

use super::quic_config::{dial, Fallback};
use super::{targets, Liveness};

/// One authenticated QUIC connection, to a controller or a relay-only
/// instance, with its control stream.
pub(super) struct Link {
    /// Kept so the socket lives as long as the connection.
    pub(super) _endpoint: quinn::Endpoint,
    pub(super) connection: quinn::Connection,
    pub(super) send: quinn::SendStream,
    pub(super) frames: mpsc::Receiver<anyhow::Result<ControllerMessage>>,
    pub(super) remote: SocketAddr,
    pub(super) transport: ControlTransport,
    /// The relay-only instance the controller named in `Welcome`.
    pub(super) relay: Option<NamedRelay>,
    /// Whether `Welcome` said the controller takes path reports.
    pub(super) accepts_paths: bool,
    /// The controller's running replicas, as `Welcome` named them.
    pub(super) replicas: Vec<String>,
}

/// A relay-only instance as a controller's `Welcome` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NamedRelay {
    /// `HOST:PORT`.
    pub(super) target: String,
    /// The fingerprint of its own certificate, normalised; `None` from
    /// controllers whose relay served their own certificate.
    pub(super) fingerprint: Option<String>,
}

impl NamedRelay {
    /// What `Welcome` says, checked: a fingerprint that is not 64 hex
    /// digits names no relay the node could pin, so the node keeps
    /// relaying through the controller.
    pub(super) fn from_welcome(relay: Option<String>, fingerprint: Option<String>) -> Option<Self> {
        let target = relay?;
        let fingerprint = match fingerprint {
            None => None,
            Some(text) => match normalise_fingerprint(&text) {
                Some(fp) => Some(fp),
                None => {
                    tracing::warn!(%target, "the controller named a relay-only instance with a malformed fingerprint: relaying through the controller");
                    return None;
                }
            },
        };
        Some(Self {
            target,
            fingerprint,
        })
    }
}

/// Dials `target` (`HOST:PORT`), checks its certificate against
/// `fingerprint` (or records it in `seen`), and proves the node key.
pub(super) async fn open_link(
    target: &str,
    fingerprint: Option<String>,
    seen: &Arc<Mutex<Option<String>>>,
    key: &NodePrivateKey,
    liveness: Liveness,
    fallback: Fallback,
) -> anyhow::Result<Link> {
    let addr = tokio::net::lookup_host(target)
        .await
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("{target} has no address"))?;
    let (endpoint, connection, transport) = dial(
        super::proxy::host_of(target),
        addr,
        fingerprint,
        seen,
        liveness,
        fallback,
    )
    .await
    .with_context(|| format!("connecting to {target}"))?;
    let (mut send, recv) = connection
        .open_bi()
        .await
        .context("opening control stream")?;
    let mut frames = spawn_reader(recv);
    let Welcomed {
        relay,
        accepts_paths,
        replicas,
    } = authenticate(&connection, &mut send, &mut frames, key).await?;
    Ok(Link {
        replicas,
        _endpoint: endpoint,
        connection,
        send,
        frames,
        remote: addr,
        transport,
        relay,
        accepts_paths,
    })
}

/// What `Welcome` said.
pub(super) struct Welcomed {
    /// The relay-only instance to use.
    pub(super) relay: Option<NamedRelay>,
    /// Whether the controller takes path reports.
    pub(super) accepts_paths: bool,
    /// The controller's running replicas.
    pub(super) replicas: Vec<String>,
}

/// Proves the node key; returns what `Welcome` said.
pub(super) async fn authenticate(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    frames: &mut mpsc::Receiver<anyhow::Result<ControllerMessage>>,
    key: &NodePrivateKey,
) -> anyhow::Result<Welcomed> {
    write(
        send,
        &NodeMessage::Hello {
            node_key: key.public_key(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )
    .await?;
    let challenge = tokio::time::timeout(Duration::from_secs(10), frames.recv())
        .await
        .context("controller did not send a challenge")?
        .context("controller closed the control stream")??;
    let ControllerMessage::Challenge {
        controller_key,
        nonce,
    } = challenge
    else {
        bail!("controller sent {challenge:?} instead of a challenge");
    };
    let mut exporter = [0u8; 32];
    connection
        .export_keying_material(&mut exporter, control::EXPORTER_LABEL, &nonce)
        .map_err(|_| anyhow::anyhow!("TLS exporter unavailable"))?;
    let proof = control::make_proof(key, &controller_key, &exporter, &nonce)?;
    write(send, &NodeMessage::Auth { proof }).await?;
    match tokio::time::timeout(Duration::from_secs(10), frames.recv())
        .await
        .context("controller did not answer the proof")?
        .context("controller closed the control stream")??
    {
        ControllerMessage::Welcome {
            relay,
            relay_fingerprint,
            accepts_paths,
            replicas,
        } => Ok(Welcomed {
            relay: NamedRelay::from_welcome(relay, relay_fingerprint),
            accepts_paths,
            // Bounded: a controller names a handful, not thousands.
            replicas: replicas.into_iter().take(targets::MAX_REPLICAS).collect(),
        }),
        ControllerMessage::Error { message, .. } => bail!("controller refused us: {message}"),
        other => bail!("controller sent {other:?} instead of welcome"),
    }
}

pub(super) async fn write(
    send: &mut quinn::SendStream,
    message: &NodeMessage,
) -> anyhow::Result<()> {
    let frame = control::encode_frame(message)?;
    send.write_all(&frame)
        .await
        .context("writing to controller")?;
    Ok(())
}

/// Reads frames on their own task: `read_exact` is not cancel-safe, so it
/// must not sit in a `select!` beside other branches.
pub(super) fn spawn_reader(
    mut recv: quinn::RecvStream,
) -> mpsc::Receiver<anyhow::Result<ControllerMessage>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let result = read_frame(&mut recv).await;
            let failed = result.is_err();
            if tx.send(result).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

pub(super) async fn read_frame(recv: &mut quinn::RecvStream) -> anyhow::Result<ControllerMessage> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix)
        .await
        .context("reading frame length")?;
    let len = control::frame_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.context("reading frame")?;
    Ok(control::decode_frame(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_relay_is_pinned_to_its_own_fingerprint_when_it_has_one() {
        assert_eq!(NamedRelay::from_welcome(None, Some("ab".repeat(32))), None);
        let own = NamedRelay::from_welcome(Some("r:7444".into()), Some("AB:".repeat(32)));
        assert_eq!(
            own,
            Some(NamedRelay {
                target: "r:7444".into(),
                fingerprint: Some("ab".repeat(32)),
            })
        );
        // An older controller names none: its relay served its certificate.
        let old = NamedRelay::from_welcome(Some("r:7444".into()), None).unwrap();
        assert_eq!(old.fingerprint, None);
        // Nothing the node could pin: no relay at all, not an unpinned one.
        for bad in ["", "a", "zz"] {
            assert_eq!(
                NamedRelay::from_welcome(Some("r:7444".into()), Some(bad.repeat(32))),
                None,
                "{bad}"
            );
        }
    }
}
