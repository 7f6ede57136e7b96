//! The local API's bodies: what the daemon reads from a CLI (through
//! axum's `Json` extractor, as its handlers do) and what the CLI reads back
//! from the daemon (with serde_json, as `client` does), then the checks
//! the daemon applies to services and routes it is asked to publish.
//!
//! The first byte picks the body's type; the rest is the body. A body that
//! decodes encodes to JSON that decodes to the same value; one refused by
//! the extractor has a message for the 400 answer.

use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use warren_proto::local_api::{
    ErrorBody, ExplainReply, JoinRequest, Netcheck, PingReply, PingRequest, Status,
};
use warren_proto::local_dns::{
    DnsStatus, PublishedService, ServiceList, ServiceRemove, ServiceRequest,
};
use warren_proto::routes::{
    self, AcceptRequest, AdvertiseRequest, ExitNodeRequest, MasqueradeRequest, RoutesStatus,
};

pub fn run(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 17 {
        0 => drop(request::<JoinRequest>(body)),
        1 => drop(request::<PingRequest>(body)),
        2 => {
            if let Some(add) = request::<ServiceRequest>(body) {
                let _ = add.service.validate();
            }
        }
        3 => drop(request::<ServiceRemove>(body)),
        4 => {
            if let Some(advertise) = request::<AdvertiseRequest>(body) {
                for prefix in &advertise.routes {
                    let _ = routes::check_prefix(prefix);
                }
            }
        }
        5 => drop(request::<AcceptRequest>(body)),
        6 => drop(request::<MasqueradeRequest>(body)),
        7 => {
            if let Some(exit) = request::<ExitNodeRequest>(body) {
                for prefix in &exit.exclude {
                    let _ = routes::check_prefix(prefix);
                }
            }
        }
        8 => answer::<Status>(body),
        9 => answer::<PingReply>(body),
        10 => answer::<Netcheck>(body),
        11 => answer::<ExplainReply>(body),
        12 => answer::<DnsStatus>(body),
        13 => answer::<ServiceList>(body),
        14 => answer::<PublishedService>(body),
        15 => answer::<RoutesStatus>(body),
        _ => answer::<ErrorBody>(body),
    }
}

/// A request body as the daemon's handlers take it.
fn request<T>(body: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match Json::<T>::from_bytes(body) {
        Ok(Json(value)) => {
            round_trip(&value);
            Some(value)
        }
        Err(rejection) => {
            assert!(!rejection.body_text().is_empty());
            None
        }
    }
}

/// An answer as the CLI reads it.
fn answer<T>(body: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(body) {
        round_trip(&value);
    }
}

fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_vec(value).expect("a decoded body encodes");
    let again: T = serde_json::from_slice(&json).expect("an encoded body decodes");
    assert_eq!(&again, value);
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("local_api", 64);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use warren_proto::local_api::{ErrorDetail, NetcheckNetwork, PathKind, ReflexiveAddress};
    use warren_proto::routes::AdvertiseMode;
    use warren_proto::service::{ServiceProto, ServiceSpec};

    fn body<T: Serialize>(kind: u8, value: &T) -> Vec<u8> {
        [vec![kind], serde_json::to_vec(value).expect("a body")].concat()
    }
    let network = Some("8056c2e21c000001".parse().expect("a network ID"));
    let service = ServiceSpec {
        name: "http".into(),
        proto: ServiceProto::Tcp,
        port: 8080,
        txt: vec!["path=/".into()],
    };
    vec![
        (
            "join",
            body(
                0,
                &JoinRequest {
                    network_id: "8056c2e21c000001".parse().expect("a network ID"),
                    controller: "controller.example:7443".into(),
                    controllers: vec![
                        "controller.example:7443".into(),
                        "[2001:db8::7]:7443".into(),
                    ],
                    fingerprint: Some("ab".repeat(32)),
                    preauth_key: Some("wk_0123".into()),
                    name: Some("web-1".into()),
                    allow_zones: vec!["corp.example".into()],
                    trust_first_use: false,
                },
            ),
        ),
        (
            "ping",
            body(
                1,
                &PingRequest {
                    peer: "db.prod.warren.internal".into(),
                },
            ),
        ),
        (
            "service-add",
            body(
                2,
                &ServiceRequest {
                    network,
                    service: service.clone(),
                },
            ),
        ),
        (
            "service-remove",
            body(
                3,
                &ServiceRemove {
                    network,
                    name: "http".into(),
                    proto: ServiceProto::Udp,
                },
            ),
        ),
        (
            "advertise",
            body(
                4,
                &AdvertiseRequest {
                    network,
                    mode: AdvertiseMode::Add,
                    routes: vec![
                        "192.168.7.0/24".parse().expect("route"),
                        "::/0".parse().expect("route"),
                    ],
                    site: None,
                    no_site: false,
                },
            ),
        ),
        (
            "accept",
            body(
                5,
                &AcceptRequest {
                    network: None,
                    accept: true,
                },
            ),
        ),
        (
            "masquerade",
            body(6, &MasqueradeRequest { masquerade: false }),
        ),
        (
            "exit-node",
            body(
                7,
                &ExitNodeRequest {
                    network,
                    peer: "gw".into(),
                    exclude: vec!["10.0.0.0/8".parse().expect("prefix")],
                },
            ),
        ),
        (
            "ping-reply",
            body(
                9,
                &PingReply {
                    network: "prod".into(),
                    peer: warren_proto::NodePrivateKey::from_bytes([2; 32]).public_key(),
                    name: Some("db".into()),
                    path: PathKind::Direct,
                    endpoint: Some("203.0.113.2:51820".into()),
                    rtt_ms: Some(1.25),
                },
            ),
        ),
        (
            "netcheck",
            body(
                10,
                &Netcheck {
                    networks: vec![NetcheckNetwork {
                        network: "prod".into(),
                        listen_port: Some(51820),
                        reflexive: vec![ReflexiveAddress {
                            server: "192.0.2.1:3478".into(),
                            mapped: "203.0.113.9:40000".into(),
                        }],
                        mapping_varies_by_destination: Some(false),
                        relay: true,
                        relay_server: None,
                        port_mapping: None,
                    }],
                },
            ),
        ),
        ("service-list", body(13, &ServiceList::default())),
        ("routes-status", body(15, &RoutesStatus::default())),
        (
            "error",
            body(
                16,
                &ErrorBody {
                    error: ErrorDetail {
                        code: "bad_request".into(),
                        message: "no".into(),
                    },
                },
            ),
        ),
        ("not-json", vec![0, b'{', b'"']),
    ]
}
