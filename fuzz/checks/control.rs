//! Control frames, both directions, as the controller and the node read
//! them off their QUIC stream: a 4-byte length, then JSON.
//!
//! The first byte picks the reader: even, the controller reading a node
//! (frames up to its 64 KiB limit); odd, a node reading a controller.
//! Frames are read one after another until one is refused, as both
//! readers do. A message that decodes encodes to a frame that decodes to
//! the same message, within the protocol's limit; the name a node asks for
//! always becomes a valid DNS label.

use serde::de::DeserializeOwned;
use serde::Serialize;
use warren_proto::control::{self, ControllerMessage, NodeMessage, MAX_NODE_FRAME};

// The controller's name rules: its `names` module, which the fuzz target
// builds as it is and the controller's tests import.
use crate::names;
use warren_proto::NodeId;

pub fn run(data: &[u8]) {
    let Some((&mode, mut stream)) = data.split_first() else {
        return;
    };
    let from_node = mode & 1 == 0;
    while let Some((prefix, rest)) = stream.split_first_chunk::<4>() {
        let Ok(len) = control::frame_len(*prefix) else {
            return;
        };
        assert!(len <= control::MAX_FRAME);
        if from_node && len > MAX_NODE_FRAME {
            return;
        }
        let Some((body, after)) = rest.split_at_checked(len) else {
            return;
        };
        let read = if from_node {
            round_trip::<NodeMessage>(body)
                .inspect(node_message)
                .is_some()
        } else {
            round_trip::<ControllerMessage>(body).is_some()
        };
        if !read {
            return;
        }
        stream = after;
    }
}

/// The message in `body`, after checking that it survives a round trip.
fn round_trip<T>(body: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let message: T = control::decode_frame(body).ok()?;
    let frame = control::encode_frame(&message).expect("a decoded message encodes");
    let len =
        control::frame_len(frame[..4].try_into().expect("a length")).expect("within the limit");
    assert_eq!(len, frame.len() - 4);
    let again: T = control::decode_frame(&frame[4..]).expect("an encoded message decodes");
    assert_eq!(again, message);
    Some(message)
}

/// What the controller makes of the text in a node's message.
fn node_message(message: &NodeMessage) {
    if let NodeMessage::Join { name, .. } = message {
        let node: NodeId = "0123456789".parse().expect("a node ID");
        let label = names::sanitize_label(name, &node);
        assert!(names::is_label(&label), "{name:?} became {label:?}");
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("control", 64);

#[cfg(test)]
#[path = "samples.rs"]
mod samples;

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use warren_proto::control::{JoinOutcome, PeerPath, PeerPathKind};
    use warren_proto::service::{ServiceProto, ServiceSpec};
    use warren_proto::NodePrivateKey;

    let network_id = "8056c2e21c000001".parse().expect("a network ID");
    let key = NodePrivateKey::from_bytes([2; 32]).public_key();
    let endpoints = vec![
        "203.0.113.2:51820".parse().expect("addr"),
        "[2001:db8::2]:51820".parse().expect("addr"),
    ];
    let frames = |mode: u8, frames: Vec<Vec<u8>>| [vec![mode], frames.concat()].concat();
    let node = |m: NodeMessage| control::encode_frame(&m).expect("a frame");
    let raw = |body: &[u8]| [(body.len() as u32).to_be_bytes().to_vec(), body.to_vec()].concat();
    let controller = |m: ControllerMessage| control::encode_frame(&m).expect("a frame");
    let old = samples::netmap(1, &[2, 3]);
    let new = samples::netmap(2, &[3, 4]);
    vec![
        (
            "node-session",
            frames(
                0,
                vec![
                    node(NodeMessage::Hello {
                        node_key: key,
                        version: "0.9.0".into(),
                    }),
                    node(NodeMessage::Auth { proof: [7; 32] }),
                    node(NodeMessage::Join {
                        network_id,
                        name: "web-1".into(),
                        preauth_key: Some("wk_0123".into()),
                    }),
                    node(NodeMessage::Endpoints {
                        network_id,
                        endpoints: endpoints.clone(),
                    }),
                    node(NodeMessage::CallMeMaybe {
                        network_id,
                        peer: key,
                        endpoints: endpoints.clone(),
                        nat: Some(control::NatHint::Independent),
                    }),
                    node(NodeMessage::Resync { network_id }),
                    node(NodeMessage::Leave { network_id }),
                ],
            ),
        ),
        (
            "node-publish",
            frames(
                0,
                vec![
                    node(NodeMessage::Services {
                        network_id,
                        services: vec![ServiceSpec {
                            name: "http".into(),
                            proto: ServiceProto::Tcp,
                            port: 80,
                            txt: vec!["path=/".into()],
                        }],
                    }),
                    node(NodeMessage::Routes {
                        network_id,
                        routes: vec![
                            "192.168.7.0/24".parse().expect("route"),
                            "0.0.0.0/0".parse().expect("route"),
                        ],
                        site: None,
                    }),
                    node(NodeMessage::GrantUsed {
                        network_id,
                        grant: "g_01".into(),
                    }),
                    node(NodeMessage::Join {
                        network_id,
                        name: "\u{1b}[2J Évil\tname".into(),
                        preauth_key: None,
                    }),
                ],
            ),
        ),
        (
            "node-paths",
            [
                frames(
                    0,
                    vec![node(NodeMessage::Paths {
                        network_id,
                        paths: vec![
                            PeerPath {
                                peer: key,
                                kind: PeerPathKind::Direct,
                                endpoint: Some(endpoints[0]),
                                last_handshake_secs_ago: Some(12),
                            },
                            PeerPath {
                                peer: key,
                                kind: PeerPathKind::Relayed,
                                endpoint: None,
                                last_handshake_secs_ago: None,
                            },
                        ],
                    })],
                ),
                // A message type from a newer node, which decodes as `Unknown`.
                raw(br#"{"type":"from_the_future","x":[1]}"#),
            ]
            .concat(),
        ),
        (
            "controller-session",
            frames(
                1,
                vec![
                    controller(ControllerMessage::Challenge {
                        controller_key: key,
                        nonce: [9; 32],
                    }),
                    controller(ControllerMessage::Welcome {
                        relay: Some("relay.example:7444".into()),
                        relay_fingerprint: Some("ab".repeat(32)),
                        accepts_paths: true,
                        replicas: Vec::new(),
                    }),
                    controller(ControllerMessage::JoinResult {
                        network_id,
                        sign_in_url: None,
                        sign_in_refused: None,
                        result: JoinOutcome::Authorized,
                    }),
                    controller(ControllerMessage::Netmap(old.clone())),
                    controller(ControllerMessage::NetmapDelta(old.diff(&new))),
                    controller(ControllerMessage::CallMeMaybe {
                        network_id,
                        from: key,
                        nat: endpoints
                            .first()
                            .map(|e| control::NatHint::PerDestination { ip: e.ip() }),
                        endpoints,
                    }),
                ],
            ),
        ),
        (
            "controller-refusals",
            frames(
                1,
                vec![
                    controller(ControllerMessage::Welcome {
                        relay: None,
                        relay_fingerprint: None,
                        accepts_paths: false,
                        replicas: Vec::new(),
                    }),
                    controller(ControllerMessage::JoinResult {
                        network_id,
                        sign_in_url: None,
                        sign_in_refused: None,
                        result: JoinOutcome::Pending,
                    }),
                    controller(ControllerMessage::JoinResult {
                        network_id,
                        sign_in_url: None,
                        sign_in_refused: None,
                        result: JoinOutcome::Refused {
                            reason: "revoked".into(),
                        },
                    }),
                    controller(ControllerMessage::Error {
                        code: "rate_limited".into(),
                        message: "slow down".into(),
                        fatal: false,
                    }),
                ],
            ),
        ),
        (
            "too-long",
            [vec![0], u32::MAX.to_be_bytes().to_vec()].concat(),
        ),
    ]
}
