//! One control connection from accept to close: the key-possession
//! handshake under a deadline, then the [`Session`] and the relay
//! [`Intake`] until the node goes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use rand_core::RngCore;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};
use warren_proto::control::{self, AuthError, ControllerMessage, NodeMessage, EXPORTER_LABEL};
use warren_proto::{NodeId, NodePublicKey};

use super::frames::{read_node_message, write_message, FrameIoError};
use super::session::Session;
use super::ControlContext;
use crate::relay::intake::Intake;

/// The whole handshake, from connection to `Welcome`, must fit in this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const VERSION_MAX: usize = 64;
/// QUIC application close codes.
const CLOSE_OK: u32 = 0;
const CLOSE_ERROR: u32 = 1;

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("{0}")]
    Frame(#[from] FrameIoError),
    #[error("expected {0} first")]
    Unexpected(&'static str),
    #[error("could not export keying material")]
    Exporter,
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
}

impl HandshakeError {
    fn code(&self) -> &'static str {
        match self {
            HandshakeError::Frame(_) => "bad_frame",
            HandshakeError::Unexpected(_) => "unexpected_message",
            HandshakeError::Exporter => "internal",
            HandshakeError::Auth(_) => "auth_failed",
        }
    }
}

/// Drives one connection to its end.
pub async fn run(connection: Connection, context: Arc<ControlContext>) {
    let remote = connection.remote_address();
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let (mut send, mut recv) = match timeout_at(deadline, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "connection closed before its control stream");
            return;
        }
        Err(_) => {
            connection.close(VarInt::from_u32(CLOSE_ERROR), b"handshake timeout");
            return;
        }
    };
    let authed = timeout_at(
        deadline,
        authenticate(&connection, &context, &mut send, &mut recv),
    )
    .await;
    let (node_key, version) = match authed {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "node refused");
            fail(&connection, send, e.code(), &e.to_string()).await;
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "node handshake timed out");
            fail(&connection, send, "timeout", "handshake took too long").await;
            return;
        }
    };
    if context
        .relay
        .replicas()
        .is_some_and(|links| links.is_replica(&node_key))
    {
        serve_replica(connection, &context, send, recv).await;
        return;
    }
    let node_id = NodeId::from_key(&node_key);
    tracing::info!(%remote, node = %node_id, key = %node_key.short(), "node authenticated");
    // Subnet routes must never capture the address nodes reach us at.
    context.hub.controller_addresses.note(connection.local_ip());
    let metrics = context.hub.metrics().clone();
    metrics.connected_nodes.fetch_add(1, Ordering::Relaxed);

    let (frames_tx, frames_rx) = mpsc::channel(16);
    // Reading a frame is not cancel-safe, so it lives in its own task and the
    // session selects over whole messages.
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_node_message(&mut recv).await;
            let stop = frame.is_err();
            if frames_tx.send(frame).await.is_err() || stop {
                break;
            }
        }
    });
    let version = version.chars().take(VERSION_MAX).collect();
    let (session_id, inbox) = context.hub.register_session(node_key);
    let link = context.relay.attach(node_key, connection.clone());
    let intake = Intake::spawn(
        connection.clone(),
        node_key,
        context.hub.clone(),
        context.relay.clone(),
    );
    // Welcome only once the node can be reached (call-me-maybe, relay
    // frames), so a node that has seen it is never missed.
    let welcome = ControllerMessage::Welcome {
        relay: context.advertise_relay.as_ref().map(|r| r.address.clone()),
        relay_fingerprint: context
            .advertise_relay
            .as_ref()
            .map(|r| r.fingerprint.clone()),
        // A relay-only instance takes no control requests.
        accepts_paths: context.role == super::Role::Controller,
        replicas: context.hub.replicas(),
    };
    let welcome = write_message(&mut send, &welcome);
    let welcomed = matches!(timeout_at(deadline, welcome).await, Ok(Ok(())));
    let mut session = Session::new(context.clone(), send, node_key, session_id, version, remote);
    let reason = if welcomed {
        session.serve(frames_rx, inbox).await
    } else {
        "connection lost"
    };
    intake.stop();
    context.relay.detach(&node_key, link);
    context.hub.unregister_session(&node_key, session_id);
    reader.abort();
    session.disconnect().await;
    metrics.connected_nodes.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(%remote, node = %node_id, reason, "node disconnected");
    match reason {
        "bad frame" => {
            let send = session.into_send();
            fail(&connection, send, "bad_frame", "malformed frame").await;
        }
        _ => connection.close(VarInt::from_u32(CLOSE_OK), b"bye"),
    }
}

/// Another replica, which proved the controller's own key: a link that
/// carries relayed frames for nodes connected here ([`crate::relay::replica_link`]).
async fn serve_replica(
    connection: Connection,
    context: &ControlContext,
    mut send: SendStream,
    _recv: RecvStream,
) {
    let remote = connection.remote_address();
    let welcome = ControllerMessage::Welcome {
        relay: None,
        relay_fingerprint: None,
        accepts_paths: false,
        replicas: Vec::new(),
    };
    if write_message(&mut send, &welcome).await.is_err() {
        return;
    }
    tracing::info!(%remote, "another replica linked to relay through us");
    crate::relay::replica_link::serve(connection.clone(), context.relay.clone()).await;
    tracing::info!(%remote, "another replica's link closed");
    connection.close(VarInt::from_u32(CLOSE_OK), b"bye");
}

async fn authenticate(
    connection: &Connection,
    context: &ControlContext,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(NodePublicKey, String), HandshakeError> {
    let NodeMessage::Hello { node_key, version } = read_node_message(recv).await? else {
        return Err(HandshakeError::Unexpected("hello"));
    };
    let mut nonce = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let challenge = ControllerMessage::Challenge {
        controller_key: context.controller_key.public_key(),
        nonce,
    };
    write_message(send, &challenge).await?;
    let NodeMessage::Auth { proof } = read_node_message(recv).await? else {
        return Err(HandshakeError::Unexpected("auth"));
    };
    let mut exporter = [0u8; 32];
    connection
        .export_keying_material(&mut exporter, EXPORTER_LABEL, &nonce)
        .map_err(|_| HandshakeError::Exporter)?;
    control::verify_proof(
        &context.controller_key,
        &node_key,
        &exporter,
        &nonce,
        &proof,
    )?;
    // `Welcome` follows in `run`, once the node is registered.
    Ok((node_key, version))
}

/// Sends a fatal error, lets it drain briefly, and closes.
async fn fail(connection: &Connection, mut send: SendStream, code: &str, message: &str) {
    let error = ControllerMessage::Error {
        code: code.to_string(),
        message: message.to_string(),
        fatal: true,
    };
    let _ = timeout(Duration::from_secs(1), write_message(&mut send, &error)).await;
    let _ = send.finish();
    let _ = timeout(Duration::from_secs(1), send.stopped()).await;
    connection.close(VarInt::from_u32(CLOSE_ERROR), code.as_bytes());
}
