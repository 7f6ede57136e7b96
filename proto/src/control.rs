//! The control protocol between a node and a controller, carried on one QUIC
//! bidirectional stream as length-prefixed JSON frames.
//!
//! ```text
//! node                                   controller
//!  |-- Hello { node_key, version } -------->|
//!  |<------- Challenge { controller_key, nonce }
//!  |-- Auth { proof } --------------------->|   proof = HMAC-SHA256(X25519(node, controller),
//!  |<---- Welcome { relay?, relay_fp? } ----|           exporter || node_key || controller_key || nonce)
//!  |-- Join / Leave / Endpoints ----------->|
//!  |<--- JoinResult / Netmap / NetmapDelta -|
//!  |-- Paths (if Welcome accepts them) ---->|
//! ```
//!
//! The exporter is 32 bytes of TLS keying material exported from the QUIC
//! connection with [`EXPORTER_LABEL`] and the nonce as context, so a proof
//! cannot be replayed on another connection. No bearer secret crosses the wire.

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::netmap::{Netmap, NetmapDelta, NetmapPeer};
use crate::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

/// ALPN of the control protocol.
pub const ALPN: &[u8] = b"warren-control/1";

/// ALPN of the TLS connection QUIC runs over where UDP is blocked (QUIC
/// over TCP, `warren_udp::stream`): QUIC inside says [`ALPN`].
pub const TCP_ALPN: &[u8] = b"warren-tcp/1";
/// TLS exporter label for the authentication proof.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-warren-control-auth";
/// Largest frame either side accepts; a netmap of 10,000 peers fits.
pub const MAX_FRAME: usize = 16 << 20;
/// Largest frame a controller accepts from a node. Far below
/// [`MAX_FRAME`] (which is sized for netmaps going the other way), so an
/// unauthenticated peer cannot make the controller buffer much.
pub const MAX_NODE_FRAME: usize = 64 * 1024;
/// Most entries one [`NodeMessage::Paths`] carries. Sized so that a full
/// report of the longest entries still fits [`MAX_NODE_FRAME`] (a larger
/// frame would end the node's session); a node with more live paths sends
/// those with the latest handshakes, and a controller keeps no more.
pub const MAX_PEER_PATHS: usize = 256;

/// A certificate fingerprint (SHA-256) as people paste it: hex in any
/// case, colons allowed, surrounding space ignored. The lowercase hex of
/// 64 digits, or `None`.
pub fn normalise_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Messages from a node to the controller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMessage {
    Hello {
        node_key: NodePublicKey,
        /// The agent's version, shown in `member list`.
        version: String,
    },
    Auth {
        #[serde(with = "hex_bytes")]
        proof: [u8; 32],
    },
    /// Join (or re-join after a reconnect) a network. The controller answers
    /// with `JoinResult` and, if the member exists, a full `Netmap`.
    Join {
        network_id: NetworkId,
        /// The name the node asks for; the controller sanitises it.
        name: String,
        /// A pre-auth key; without one a new member waits for approval.
        preauth_key: Option<String>,
    },
    Leave {
        network_id: NetworkId,
    },
    /// Ask for a page where the device's owner signs it in again (`warren
    /// login`): before its sign-in runs out, or after. The controller
    /// answers with `JoinResult` carrying the page, or `Error`.
    SignIn {
        network_id: NetworkId,
    },
    /// The node's endpoint candidates (local and reflexive addresses) for
    /// one network: each network has its own UDP port on the node.
    Endpoints {
        network_id: NetworkId,
        endpoints: Vec<SocketAddr>,
    },
    /// Ask for a full map again, after a delta that did not apply.
    Resync {
        network_id: NetworkId,
    },
    /// Ask `peer` to probe `endpoints` now, so that both sides open their
    /// NATs at the same moment. Forwarded only between members of the network.
    CallMeMaybe {
        network_id: NetworkId,
        peer: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        /// What the sender's NAT does (hard-NAT traversal); absent from
        /// nodes that do not say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nat: Option<NatHint>,
    },
    /// The whole list of services the node publishes in one network's DNS
    /// zone (replacing what it published before). Acts on the
    /// authenticated node only.
    Services {
        network_id: NetworkId,
        services: Vec<crate::service::ServiceSpec>,
    },
    /// The whole set of subnet routes (and exit routes, `0.0.0.0/0` and
    /// `::/0`) the node offers in one network, replacing what it offered
    /// before. Acts on the authenticated node only; an admin approves.
    Routes {
        network_id: NetworkId,
        routes: Vec<ipnet::IpNet>,
        /// The site these routes are for (a cluster); none for plain
        /// subnet routes. Left out when none, for controllers that
        /// predate sites.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<crate::site::SiteSpec>,
    },
    /// A grant (temporary access, rule `grant:<id>` of the node's filter)
    /// admitted a flow at this node for the first time, for the audit log.
    /// Acts on the authenticated node only.
    GrantUsed {
        network_id: NetworkId,
        grant: String,
    },
    /// The node's current paths to its peers in one network (each peer it
    /// reaches, direct or relayed), replacing what it reported before; a
    /// peer it does not list has no working path. At most
    /// [`MAX_PEER_PATHS`] entries. Acts on the authenticated node only.
    ///
    /// Sent only to controllers whose `Welcome` says `accepts_paths`:
    /// controllers older than this message read an unknown `type` as a
    /// malformed frame and close the connection, so a node never sends it
    /// to them.
    Paths {
        network_id: NetworkId,
        paths: Vec<PeerPath>,
    },
    /// Any message type this build does not know (one from a newer node).
    /// A controller answers it with a non-fatal `Error` instead of closing
    /// the connection, so later messages need no gate like `accepts_paths`.
    /// Never sent.
    #[serde(other)]
    Unknown,
}

/// How a node reaches one peer, as its `warren status` shows it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PeerPathKind {
    /// Straight to one of the peer's addresses, confirmed by a probe or
    /// its packets.
    Direct,
    /// Through the controller's relay (or the relay-only instance it names).
    Relayed,
}

/// One entry of [`NodeMessage::Paths`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerPath {
    pub peer: NodePublicKey,
    pub kind: PeerPathKind,
    /// The peer's address in use, for a direct path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    /// Whole seconds since the latest WireGuard handshake with the peer,
    /// as the node counted when it sent the report; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake_secs_ago: Option<u64>,
}

/// Messages from the controller to a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControllerMessage {
    Challenge {
        controller_key: NodePublicKey,
        #[serde(with = "hex_bytes")]
        nonce: [u8; 32],
    },
    /// Authentication passed.
    Welcome {
        /// A relay-only instance (`HOST:PORT`) that the node should relay
        /// through instead of this connection. Absent from controllers that
        /// relay themselves, and from relay instances.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relay: Option<String>,
        /// The SHA-256 fingerprint of that instance's own certificate
        /// (lowercase hex), which the node pins when it dials it. Absent
        /// from controllers older than relays with credentials of their
        /// own, whose relay served the controller's certificate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relay_fingerprint: Option<String>,
        /// The controller takes [`NodeMessage::Paths`]. Absent (false) from
        /// older controllers, which would close the connection on it, and
        /// from relay-only instances, which take no control requests.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        accepts_paths: bool,
        /// Every running replica of this controller (`HOST:PORT`, this one
        /// among them), when several share one database: a node whose
        /// replica goes away moves to another. Absent from a single
        /// controller and from older ones.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<String>,
    },
    JoinResult {
        network_id: NetworkId,
        result: JoinOutcome,
        /// For a pending join to a network where people sign devices in:
        /// the page where the device's owner signs in and confirms it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sign_in_url: Option<String>,
        /// A sign-in for this device was refused on its page (the person
        /// may not sign in, or it is someone else's device): why, so that
        /// `warren join` and `warren login` stop waiting and say so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sign_in_refused: Option<String>,
    },
    Netmap(Netmap),
    NetmapDelta(NetmapDelta),
    /// A peer asks to be probed at `endpoints` now.
    CallMeMaybe {
        network_id: NetworkId,
        from: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nat: Option<NatHint>,
    },
    /// A request was refused; the connection stays up unless `fatal`.
    Error {
        code: String,
        message: String,
        fatal: bool,
    },
}

/// What a node's NAT does with its outgoing UDP, as its STUN answers show,
/// told to a peer in a call-me-maybe. Two nodes of which one maps per
/// destination and the other filters on address and port find no direct
/// path by plain probing; with these hints they try birthday-paradox
/// probing (the agent engine's `birthday` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mapping")]
pub enum NatHint {
    /// One public port whatever the destination.
    Independent,
    /// A new public port for each destination, on the public address `ip`.
    /// The sender has just opened many of them towards the peer: a peer
    /// whose mapping is `Independent` should send to many ports of `ip` now.
    PerDestination { ip: IpAddr },
}

/// What became of a join.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JoinOutcome {
    /// A member; the netmap follows.
    Authorized,
    /// Waiting for an admin's approval; a netmap with no peers follows.
    Pending,
    /// The network does not exist, the key was wrong, used or expired, or the member was revoked.
    Refused { reason: String },
}

/// The reasons a controller gives in [`JoinOutcome::Refused`] that a node
/// tells apart (the wire carries text, so older controllers still speak
/// it); [`RefusalKind::of`] reads them back.
pub mod refusal {
    pub const UNKNOWN_NETWORK: &str = "unknown network";
    pub const KEY: &str = "pre-auth key is invalid, used up or expired";
    pub const REVOKED: &str = "revoked";
}

/// What kind of refusal a [`JoinOutcome::Refused`] reason is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// No network with that ID on this controller.
    UnknownNetwork,
    /// The pre-auth key is wrong, used up or expired.
    Key,
    /// An admin revoked this node.
    Revoked,
    /// Anything else (too many pending members, a node ID collision, ...).
    Other,
}

impl RefusalKind {
    pub fn of(reason: &str) -> RefusalKind {
        match reason {
            refusal::UNKNOWN_NETWORK => RefusalKind::UnknownNetwork,
            refusal::KEY => RefusalKind::Key,
            refusal::REVOKED | "membership revoked" => RefusalKind::Revoked,
            _ => RefusalKind::Other,
        }
    }
}

/// Why an authentication proof could not be made or was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the key exchange gave an all-zero secret (low-order key)")]
    LowOrder,
    #[error("the proof does not match")]
    Mismatch,
}

fn proof(
    shared: &[u8; 32],
    exporter: &[u8; 32],
    node_key: &NodePublicKey,
    controller_key: &NodePublicKey,
    nonce: &[u8; 32],
) -> [u8; 32] {
    // new_from_slice accepts any key length for HMAC, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(shared).unwrap_or_else(|_| unreachable!());
    mac.update(exporter);
    mac.update(node_key.as_bytes());
    mac.update(controller_key.as_bytes());
    mac.update(nonce);
    mac.finalize().into_bytes().into()
}

fn shared_secret(own: &StaticSecret, other: &NodePublicKey) -> Result<[u8; 32], AuthError> {
    let shared = own.diffie_hellman(&PublicKey::from(*other.as_bytes()));
    if !shared.was_contributory() {
        return Err(AuthError::LowOrder);
    }
    Ok(shared.to_bytes())
}

/// The node's side: prove it holds the private key of `node_key`.
pub fn make_proof(
    node: &NodePrivateKey,
    controller_key: &NodePublicKey,
    exporter: &[u8; 32],
    nonce: &[u8; 32],
) -> Result<[u8; 32], AuthError> {
    let shared = shared_secret(node.as_secret(), controller_key)?;
    Ok(proof(
        &shared,
        exporter,
        &node.public_key(),
        controller_key,
        nonce,
    ))
}

/// The controller's side: check a node's proof in constant time.
pub fn verify_proof(
    controller: &NodePrivateKey,
    node_key: &NodePublicKey,
    exporter: &[u8; 32],
    nonce: &[u8; 32],
    claimed: &[u8; 32],
) -> Result<(), AuthError> {
    use subtle::ConstantTimeEq;
    let shared = shared_secret(controller.as_secret(), node_key)?;
    let expected = proof(&shared, exporter, node_key, &controller.public_key(), nonce);
    if bool::from(expected.ct_eq(claimed)) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("frame is not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    /// A delta header for [`encode_delta_frame`] that did not encode with
    /// empty peers last (it carried peers of its own).
    #[error("a netmap delta header must carry no peers")]
    DeltaHeader,
}

/// Encodes a message as a frame: a 4-byte big-endian length, then JSON.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Reads the length prefix of a frame, refusing lengths over [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

pub fn decode_frame<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// How the JSON of a [`ControllerMessage::NetmapDelta`] ends when it has no
/// peers: its last two fields, then the object's end.
const NO_PEERS_TAIL: &[u8] = br#""upsert_peers":[],"remove_peers":[]}"#;

/// The peers part of a [`NetmapDelta`] that is the same for every member it
/// goes to (a network where everyone sees everyone, and the change is not
/// about the member itself), encoded once and shared: each member's frame
/// is its own header ([`encode_delta_frame`]) and these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPeers {
    /// The upserted peers' IDs and digests, for the sender's own record.
    pub upserted: Vec<(NodeId, u64)>,
    pub removed: Vec<NodeId>,
    /// `"upsert_peers":[…],"remove_peers":[…]}`: the end of the message's
    /// JSON, as serde_json writes it for the whole delta.
    tail: Vec<u8>,
}

impl SharedPeers {
    /// `upserted` (each with its digest) and `removed`, in the order a
    /// per-member delta lists them.
    pub fn new<'a>(
        upserted: impl Iterator<Item = &'a (NetmapPeer, u64)>,
        removed: Vec<NodeId>,
    ) -> Result<SharedPeers, FrameError> {
        #[derive(Serialize)]
        struct Part<'a> {
            upsert_peers: &'a [&'a NetmapPeer],
            remove_peers: &'a [NodeId],
        }
        let (peers, digests): (Vec<&NetmapPeer>, Vec<(NodeId, u64)>) =
            upserted.map(|(p, d)| (p, (p.node_id, *d))).unzip();
        let json = serde_json::to_vec(&Part {
            upsert_peers: &peers,
            remove_peers: &removed,
        })?;
        Ok(SharedPeers {
            upserted: digests,
            removed,
            // Without the opening brace: the fields go on a header's.
            tail: json.get(1..).unwrap_or_default().to_vec(),
        })
    }

    /// True if it adds and removes no peer.
    pub fn is_empty(&self) -> bool {
        self.upserted.is_empty() && self.removed.is_empty()
    }
}

/// The frame of [`ControllerMessage::NetmapDelta`] made of `header` (a
/// delta without peers) and `peers`: byte for byte the frame
/// [`encode_frame`] writes for the same delta with those peers, at the cost
/// of encoding the header only.
pub fn encode_delta_frame(
    header: &NetmapDelta,
    peers: &SharedPeers,
) -> Result<Vec<u8>, FrameError> {
    /// [`ControllerMessage::NetmapDelta`] by reference: the same JSON.
    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Message<'a> {
        NetmapDelta(&'a NetmapDelta),
    }
    let mut body = serde_json::to_vec(&Message::NetmapDelta(header))?;
    if !body.ends_with(NO_PEERS_TAIL) {
        return Err(FrameError::DeltaHeader);
    }
    body.truncate(body.len() - NO_PEERS_TAIL.len());
    let len = body.len() + peers.tail.len();
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&peers.tail);
    Ok(frame)
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised() {
        let hex = "AB".repeat(32);
        assert_eq!(normalise_fingerprint(&hex), Some("ab".repeat(32)));
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(normalise_fingerprint(&colons), Some("ab".repeat(32)));
        assert_eq!(
            normalise_fingerprint(&format!(" {hex}\n")),
            Some("ab".repeat(32))
        );
        assert_eq!(normalise_fingerprint("abc"), None);
        assert_eq!(normalise_fingerprint(&"zz".repeat(32)), None);
        assert_eq!(normalise_fingerprint(&"ab".repeat(33)), None);
    }

    #[test]
    fn proof_verifies_only_for_the_same_keys_exporter_and_nonce() {
        let node = NodePrivateKey::generate();
        let controller = NodePrivateKey::generate();
        let exporter = [9u8; 32];
        let nonce = [3u8; 32];
        let p = make_proof(&node, &controller.public_key(), &exporter, &nonce).unwrap();
        verify_proof(&controller, &node.public_key(), &exporter, &nonce, &p).unwrap();
        let other_conn = [8u8; 32];
        assert_eq!(
            verify_proof(&controller, &node.public_key(), &other_conn, &nonce, &p),
            Err(AuthError::Mismatch)
        );
        let impostor = NodePrivateKey::generate().public_key();
        assert_eq!(
            verify_proof(&controller, &impostor, &exporter, &nonce, &p),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn frames_round_trip_and_refuse_huge_lengths() {
        let msg = NodeMessage::Leave {
            network_id: "8056c2e21c000001".parse().unwrap(),
        };
        let frame = encode_frame(&msg).unwrap();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        let back: NodeMessage = decode_frame(&frame[4..4 + len]).unwrap();
        assert_eq!(back, msg);
        assert!(frame_len(u32::MAX.to_be_bytes()).is_err());
        assert!(decode_frame::<NodeMessage>(b"{\"type\":7}").is_err());
        // A known type with the wrong shape is still malformed.
        assert!(decode_frame::<NodeMessage>(b"{\"type\":\"leave\"}").is_err());
    }

    #[test]
    fn unknown_node_messages_decode_as_unknown_whatever_they_carry() {
        for body in [
            &b"{\"type\":\"nope\"}"[..],
            b"{\"type\":\"from_the_future\",\"network_id\":\"8056c2e21c000001\",\"x\":[1,{}]}",
            b"{\"x\":null,\"type\":\"later\"}",
        ] {
            let message: NodeMessage = decode_frame(body).unwrap();
            assert_eq!(
                message,
                NodeMessage::Unknown,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn paths_sample() -> NodeMessage {
        NodeMessage::Paths {
            network_id: "8056c2e21c000001".parse().unwrap(),
            paths: vec![
                PeerPath {
                    peer: NodePrivateKey::from_bytes([2; 32]).public_key(),
                    kind: PeerPathKind::Direct,
                    endpoint: Some("203.0.113.7:41641".parse().unwrap()),
                    last_handshake_secs_ago: Some(12),
                },
                PeerPath {
                    peer: NodePrivateKey::from_bytes([3; 32]).public_key(),
                    kind: PeerPathKind::Relayed,
                    endpoint: None,
                    last_handshake_secs_ago: None,
                },
            ],
        }
    }

    #[test]
    fn paths_round_trip_with_optional_fields_left_out() {
        let message = paths_sample();
        let frame = encode_frame(&message).unwrap();
        let text = std::str::from_utf8(&frame[4..]).unwrap();
        assert!(text.starts_with("{\"type\":\"paths\""), "{text}");
        assert!(text.contains("\"kind\":\"direct\""), "{text}");
        assert!(text.contains("\"kind\":\"relayed\""), "{text}");
        // The relayed entry carries neither an endpoint nor a handshake age.
        assert_eq!(text.matches("endpoint").count(), 1, "{text}");
        assert_eq!(text.matches("last_handshake_secs_ago").count(), 1, "{text}");
        assert_eq!(decode_frame::<NodeMessage>(&frame[4..]).unwrap(), message);
    }

    /// What a controller that predates `Paths` does with one: its enum has
    /// no such variant (nor `Unknown`), so the frame does not decode and
    /// it would close the connection as a bad frame. Hence the gate.
    #[test]
    fn an_older_controller_cannot_read_paths_so_only_welcomes_that_accept_them_get_them() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        #[allow(dead_code)]
        enum OldNodeMessage {
            Leave { network_id: NetworkId },
        }
        let frame = encode_frame(&paths_sample()).unwrap();
        assert!(decode_frame::<OldNodeMessage>(&frame[4..]).is_err());

        // An older controller's Welcome says nothing: no paths.
        let old: ControllerMessage = decode_frame(b"{\"type\":\"welcome\"}").unwrap();
        assert!(matches!(
            old,
            ControllerMessage::Welcome {
                accepts_paths: false,
                ..
            }
        ));
        // And an older node ignores the new field (serde ignores unknown
        // fields of a variant; this enum sets no `deny_unknown_fields`).
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum OldControllerMessage {
            Welcome { relay: Option<String> },
        }
        let new = ControllerMessage::Welcome {
            relay: None,
            relay_fingerprint: None,
            accepts_paths: true,
            replicas: Vec::new(),
        };
        let frame = encode_frame(&new).unwrap();
        assert_eq!(
            &frame[4..],
            b"{\"type\":\"welcome\",\"accepts_paths\":true}"
        );
        assert_eq!(
            decode_frame::<OldControllerMessage>(&frame[4..]).unwrap(),
            OldControllerMessage::Welcome { relay: None }
        );
    }

    #[test]
    fn a_full_report_of_the_longest_entries_fits_a_node_frame() {
        let endpoint: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
            .parse()
            .unwrap();
        let entry = PeerPath {
            peer: NodePrivateKey::from_bytes([0xff; 32]).public_key(),
            kind: PeerPathKind::Relayed,
            endpoint: Some(endpoint),
            last_handshake_secs_ago: Some(u64::MAX),
        };
        let message = NodeMessage::Paths {
            network_id: "ffffffffffffffff".parse().unwrap(),
            paths: vec![entry; MAX_PEER_PATHS],
        };
        let frame = encode_frame(&message).unwrap();
        assert!(
            frame.len() - 4 <= MAX_NODE_FRAME,
            "{} bytes",
            frame.len() - 4
        );
    }

    #[test]
    fn welcome_names_a_relay_only_when_there_is_one() {
        let none = ControllerMessage::Welcome {
            relay: None,
            relay_fingerprint: None,
            accepts_paths: false,
            replicas: Vec::new(),
        };
        let bare: ControllerMessage = decode_frame(b"{\"type\":\"welcome\"}").unwrap();
        assert_eq!(bare, none);
        let frame = encode_frame(&none).unwrap();
        assert_eq!(&frame[4..], b"{\"type\":\"welcome\"}");
        let with = ControllerMessage::Welcome {
            relay: Some("relay.example:7444".into()),
            relay_fingerprint: Some("ab".repeat(32)),
            accepts_paths: true,
            replicas: vec!["c1.example:7443".into(), "[2001:db8::2]:7443".into()],
        };
        let frame = encode_frame(&with).unwrap();
        assert_eq!(
            decode_frame::<ControllerMessage>(&frame[4..]).unwrap(),
            with
        );
    }

    /// A delta whose peers part is shared is the same frame, byte for byte,
    /// as the delta encoded whole: what any node decodes today.
    #[test]
    fn a_shared_peers_part_makes_the_same_frame_as_the_whole_delta() {
        let peer = |seed: u8, online: bool| {
            let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
            let peer = NetmapPeer {
                node_id: NodeId::from_key(&key),
                name: format!("n{seed}"),
                public_key: key,
                addresses: vec![format!("10.147.0.{seed}/32").parse().unwrap()],
                routes: vec!["192.168.7.0/24".parse().unwrap()],
                endpoints: vec!["192.0.2.1:51820".parse().unwrap()],
                online,
            };
            let digest = crate::netmap::peer_digest(&peer);
            (peer, digest)
        };
        let upserted = [peer(2, true), peer(3, false)];
        let removed = vec![peer(4, true).0.node_id];
        let header = NetmapDelta {
            network_id: "8056c2e21c000001".parse().unwrap(),
            base_version: 7,
            version: 9,
            self_node: None,
            network_name: Some("prod".into()),
            dns: None,
            settings: None,
            filter: Some(crate::filter::PacketFilter::default()),
            filter_removed: false,
            upsert_peers: Vec::new(),
            remove_peers: Vec::new(),
        };
        let mut whole = header.clone();
        whole.upsert_peers = upserted.iter().map(|(p, _)| p.clone()).collect();
        whole.remove_peers = removed.clone();
        let whole = ControllerMessage::NetmapDelta(whole);
        for (up, gone) in [(&upserted[..], removed.clone()), (&[][..], Vec::new())] {
            let shared = SharedPeers::new(up.iter(), gone.clone()).unwrap();
            assert_eq!(shared.is_empty(), up.is_empty() && gone.is_empty());
            let mut expected = header.clone();
            expected.upsert_peers = up.iter().map(|(p, _)| p.clone()).collect();
            expected.remove_peers = gone;
            let frame = encode_delta_frame(&header, &shared).unwrap();
            let message = ControllerMessage::NetmapDelta(expected);
            assert_eq!(frame, encode_frame(&message).unwrap());
            assert_eq!(
                decode_frame::<ControllerMessage>(&frame[4..]).unwrap(),
                message
            );
        }
        let shared = SharedPeers::new(upserted.iter(), removed).unwrap();
        assert_eq!(shared.upserted[1], (upserted[1].0.node_id, upserted[1].1));
        let ControllerMessage::NetmapDelta(with_peers) = whole else {
            unreachable!()
        };
        assert!(matches!(
            encode_delta_frame(&with_peers, &shared),
            Err(FrameError::DeltaHeader)
        ));
    }
}
