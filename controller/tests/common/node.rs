//! A test node: quinn client pinned to the controller's fingerprint, with
//! the proto handshake and helpers to wait for messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use tokio::sync::mpsc;
use warren_proto::control::{self, ControllerMessage, NodeMessage};
use warren_proto::netmap::Netmap;
use warren_proto::pinning::PinnedVerifier;
use warren_proto::relay::{self, RelayFrame};
use warren_proto::{NetworkId, NodeId, NodePrivateKey};

pub struct TestNode {
    pub key: NodePrivateKey,
    pub endpoint: quinn::Endpoint,
    pub connection: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    /// The controller's `Welcome`, once the handshake passed.
    pub welcome: Option<ControllerMessage>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl TestNode {
    pub fn node_id(&self) -> NodeId {
        NodeId::from_key(&self.key.public_key())
    }

    /// Connects and opens the control stream, without authenticating.
    pub async fn connect(addr: SocketAddr, fingerprint: &str, key: NodePrivateKey) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(Some(
                fingerprint.to_string(),
            ))))
            .with_no_client_auth();
        tls.alpn_protocols = vec![control::ALPN.to_vec()];
        let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        let connection = endpoint
            .connect(addr, "warren-controller")
            .unwrap()
            .await
            .unwrap();
        let (send, recv) = connection.open_bi().await.unwrap();
        Self {
            key,
            endpoint,
            connection,
            send,
            recv,
            welcome: None,
        }
    }

    /// Connects and completes the handshake up to `Welcome`.
    pub async fn authenticated(addr: SocketAddr, fingerprint: &str) -> Self {
        Self::authenticated_as(addr, fingerprint, NodePrivateKey::generate()).await
    }

    /// Like [`TestNode::authenticated`], with a given key (a second
    /// connection of the same node).
    pub async fn authenticated_as(
        addr: SocketAddr,
        fingerprint: &str,
        key: NodePrivateKey,
    ) -> Self {
        let mut node = Self::connect(addr, fingerprint, key).await;
        node.handshake(None).await.expect("welcome");
        node
    }

    /// Sends a relay frame as one QUIC datagram.
    pub fn send_relay_datagram(&self, frame: &RelayFrame) {
        let bytes = frame.encode();
        let max = self
            .connection
            .max_datagram_size()
            .expect("datagrams enabled");
        assert!(
            bytes.len() <= max,
            "{} bytes do not fit a datagram",
            bytes.len()
        );
        self.connection.send_datagram(bytes.into()).unwrap();
    }

    /// Sends relay frames (or any bytes) as records, each behind its
    /// length, on one new unidirectional stream.
    pub async fn send_relay_records(&self, frames: &[&[u8]]) {
        let mut bytes = Vec::new();
        for frame in frames {
            bytes.extend_from_slice(&u32::try_from(frame.len()).unwrap().to_be_bytes());
            bytes.extend_from_slice(frame);
        }
        self.send_relay_raw_stream(&bytes).await;
    }

    /// Sends `bytes` as they are on one new unidirectional stream.
    pub async fn send_relay_raw_stream(&self, bytes: &[u8]) {
        let mut stream = self.connection.open_uni().await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream.finish().unwrap();
    }

    /// Everything the relay sends this connection, datagrams and streams.
    pub fn relay_inbox(&self) -> RelayInbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let streams = self.connection.clone();
        let stream_tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(mut stream) = streams.accept_uni().await {
                let tx = stream_tx.clone();
                tokio::spawn(async move {
                    let mut prefix = [0u8; relay::RECORD_PREFIX_LEN];
                    while stream.read_exact(&mut prefix).await.is_ok() {
                        let mut frame = vec![0u8; relay::record_len(prefix).unwrap()];
                        stream.read_exact(&mut frame).await.unwrap();
                        let _ = tx.send((Via::Stream, RelayFrame::decode(&frame).unwrap()));
                    }
                });
            }
        });
        let datagrams = self.connection.clone();
        tokio::spawn(async move {
            while let Ok(bytes) = datagrams.read_datagram().await {
                let _ = tx.send((Via::Datagram, RelayFrame::decode(&bytes).unwrap()));
            }
        });
        RelayInbox { rx }
    }

    /// Hello, Challenge, Auth; `bad_proof` replaces the real proof.
    pub async fn handshake(
        &mut self,
        bad_proof: Option<[u8; 32]>,
    ) -> Result<(), ControllerMessage> {
        self.write(&NodeMessage::Hello {
            node_key: self.key.public_key(),
            version: "test-1".into(),
        })
        .await;
        let ControllerMessage::Challenge {
            controller_key,
            nonce,
        } = self.next().await
        else {
            panic!("expected a challenge");
        };
        let mut exporter = [0u8; 32];
        self.connection
            .export_keying_material(&mut exporter, control::EXPORTER_LABEL, &nonce)
            .unwrap();
        let proof = match bad_proof {
            Some(p) => p,
            None => control::make_proof(&self.key, &controller_key, &exporter, &nonce).unwrap(),
        };
        self.write(&NodeMessage::Auth { proof }).await;
        match self.next().await {
            welcome @ ControllerMessage::Welcome { .. } => {
                self.welcome = Some(welcome);
                Ok(())
            }
            other => Err(other),
        }
    }

    pub async fn write(&mut self, message: &NodeMessage) {
        let frame = control::encode_frame(message).unwrap();
        self.send.write_all(&frame).await.unwrap();
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` if the stream ends or nothing comes in time.
    pub async fn try_next(&mut self, wait: Duration) -> Option<ControllerMessage> {
        let read = async {
            let mut prefix = [0u8; 4];
            self.recv.read_exact(&mut prefix).await.ok()?;
            let len = control::frame_len(prefix).ok()?;
            let mut body = vec![0u8; len];
            self.recv.read_exact(&mut body).await.ok()?;
            control::decode_frame(&body).ok()
        };
        tokio::time::timeout(wait, read).await.ok().flatten()
    }

    pub async fn next(&mut self) -> ControllerMessage {
        self.try_next(WAIT)
            .await
            .expect("a message from the controller")
    }

    /// Joins and returns the join outcome and the first full netmap.
    pub async fn join(
        &mut self,
        network: NetworkId,
        name: &str,
        key: Option<&str>,
    ) -> (control::JoinOutcome, Option<Netmap>) {
        self.write(&NodeMessage::Join {
            network_id: network,
            name: name.into(),
            preauth_key: key.map(str::to_string),
        })
        .await;
        let ControllerMessage::JoinResult { result, .. } = self.next().await else {
            panic!("expected a join result");
        };
        if let control::JoinOutcome::Refused { .. } = result {
            return (result, None);
        }
        let ControllerMessage::Netmap(map) = self.next().await else {
            panic!("expected a netmap");
        };
        (result, Some(map))
    }

    /// Applies deltas to `map` until the controller sends an error: its
    /// code, message and whether it ends the session. Panics on any other
    /// message, or when nothing comes within [`WAIT`].
    pub async fn next_error(&mut self, map: &mut Netmap) -> (String, String, bool) {
        loop {
            match self.next().await {
                ControllerMessage::Error {
                    code,
                    message,
                    fatal,
                } => return (code, message, fatal),
                ControllerMessage::NetmapDelta(delta) => map.apply(&delta).unwrap(),
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }

    /// Applies deltas to `map` until `done(map)` holds; panics after [`WAIT`].
    pub async fn wait_for(&mut self, map: &mut Netmap, done: impl Fn(&Netmap) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(map) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next(left).await {
                Some(ControllerMessage::NetmapDelta(delta)) => map.apply(&delta).unwrap(),
                Some(ControllerMessage::Netmap(full)) => *map = full,
                Some(_) => {}
                None => panic!("netmap never reached the expected state: {map:#?}"),
            }
        }
    }
}

/// How a relay frame arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Datagram,
    Stream,
}

/// Relay frames received by one test connection.
pub struct RelayInbox {
    rx: mpsc::UnboundedReceiver<(Via, RelayFrame)>,
}

impl RelayInbox {
    /// The next frame, or `None` if nothing comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(Via, RelayFrame)> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next frame; panics after [`WAIT`].
    pub async fn expect(&mut self) -> (Via, RelayFrame) {
        self.next(WAIT).await.expect("a relayed frame")
    }
}
