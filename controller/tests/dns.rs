//! Private DNS on a real controller on loopback: nodes join over QUIC and
//! publish services, the authoritative server answers over real UDP and
//! TCP sockets, and renames, revocations and service changes reach the
//! zone and the netmaps within seconds.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::node::TestNode;
use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_controller::api::{self, ApiState};
use warren_controller::dns;
use warren_controller::server::{self, ServerOptions};
use warren_proto::control::{ControllerMessage, JoinOutcome, NodeMessage};
use warren_proto::service::{ServiceProto, ServiceSpec};

/// The bound for a rename or revocation to reach the zone.
const WITHIN: Duration = Duration::from_secs(10);

async fn udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut q = Message::query();
    q.metadata.id = 99;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("an answer within 2 s")
        .unwrap();
    assert!(n <= 1232);
    Message::from_vec(&buf[..n]).unwrap()
}

async fn tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut q = Message::query();
    q.metadata.id = 100;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let bytes = q.to_vec().unwrap();
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await.unwrap();
    Message::from_vec(&answer).unwrap()
}

/// Polls until `name` has `count` records of `rtype`.
async fn until_answers(server: SocketAddr, name: &str, rtype: RecordType, count: usize) -> Message {
    let start = Instant::now();
    loop {
        let m = udp(server, name, rtype).await;
        if m.answers.len() == count {
            return m;
        }
        assert!(start.elapsed() < WITHIN, "{name} {rtype}: still {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_follow_members_services_renames_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let running = server::start(ServerOptions::loopback(dir.path().join("data")))
        .await
        .unwrap();
    let store = running.hub.store().clone();
    let net = common::prod_network(&store).await;
    let dns = dns::spawn("127.0.0.1:0".parse().unwrap(), running.hub.clone())
        .await
        .unwrap();
    let api = common::ApiHandle::new(
        api::router(ApiState::new(running.hub.clone(), vec![])),
        store,
    )
    .await;
    let (status, made) = api
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/keys"),
            Some(json!({ "reusable": true })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key = made["key"].as_str().unwrap().to_owned();

    let mut a = TestNode::authenticated(running.quic_addr, &running.fingerprint).await;
    let (outcome, _) = a.join(net, "web", Some(&key)).await;
    assert_eq!(outcome, JoinOutcome::Authorized);
    let mut b = TestNode::authenticated(running.quic_addr, &running.fingerprint).await;
    let (_, map_b) = b.join(net, "db", Some(&key)).await;
    let mut map_b = map_b.unwrap();

    // Both members answer A and AAAA, over UDP and TCP.
    let web = until_answers(dns.addr, "web.prod.warren.internal.", RecordType::A, 1).await;
    assert_eq!(
        web.answers[0].data,
        RData::A(std::net::Ipv4Addr::new(10, 147, 0, 1).into())
    );
    let db = tcp(dns.addr, "db.prod.warren.internal.", RecordType::AAAA).await;
    assert_eq!(db.answers.len(), 1);
    assert!(db.metadata.authoritative);
    let out = udp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(out.metadata.response_code, ResponseCode::Refused);

    // A publishes a service: the zone answers SRV, B's netmap carries it.
    let http = ServiceSpec {
        name: "http".into(),
        proto: ServiceProto::Tcp,
        port: 8080,
        txt: vec![],
    };
    a.write(&NodeMessage::Services {
        network_id: net,
        services: vec![http.clone()],
    })
    .await;
    let srv = until_answers(
        dns.addr,
        "_http._tcp.prod.warren.internal.",
        RecordType::SRV,
        1,
    )
    .await;
    let RData::SRV(s) = &srv.answers[0].data else {
        panic!("{srv:?}")
    };
    assert_eq!(
        (s.port, s.target.to_ascii().as_str()),
        (8080, "web.prod.warren.internal.")
    );
    b.wait_for(&mut map_b, |m| {
        m.dns
            .services
            .iter()
            .any(|s| s.member == "web" && s.service == http)
    })
    .await;

    // Invalid lists and networks the node is not in are refused.
    let bad = ServiceSpec {
        name: "Bad Name".into(),
        ..http.clone()
    };
    a.write(&NodeMessage::Services {
        network_id: net,
        services: vec![bad],
    })
    .await;
    let other = "8056c2e21c00ffff".parse().unwrap();
    a.write(&NodeMessage::Services {
        network_id: other,
        services: vec![http.clone()],
    })
    .await;
    let mut codes = Vec::new();
    while codes.len() < 2 {
        match a.next().await {
            ControllerMessage::Error { code, .. } => codes.push(code),
            _ => continue,
        }
    }
    assert_eq!(codes, ["bad_request", "not_a_member"]);

    // A rename shows within 10 s; the old name goes, the SRV target follows.
    let path = format!("/api/v1/networks/{net}/members/{}", a.node_id());
    let (status, _) = api
        .admin(Method::PATCH, &path, Some(json!({ "name": "www" })))
        .await;
    assert_eq!(status, StatusCode::OK, "rename");
    until_answers(dns.addr, "www.prod.warren.internal.", RecordType::A, 1).await;
    until_answers(dns.addr, "web.prod.warren.internal.", RecordType::A, 0).await;
    let srv = udp(
        dns.addr,
        "_http._tcp.prod.warren.internal.",
        RecordType::SRV,
    )
    .await;
    let RData::SRV(s) = &srv.answers[0].data else {
        panic!("{srv:?}")
    };
    assert_eq!(s.target.to_ascii(), "www.prod.warren.internal.");

    // Revoking A takes its name and its service out of the zone.
    let path = format!("/api/v1/networks/{net}/members/{}/revoke", a.node_id());
    let (status, _) = api.admin(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    until_answers(dns.addr, "www.prod.warren.internal.", RecordType::A, 0).await;
    until_answers(
        dns.addr,
        "_http._tcp.prod.warren.internal.",
        RecordType::SRV,
        0,
    )
    .await;
    until_answers(dns.addr, "db.prod.warren.internal.", RecordType::A, 1).await;
    dns.shutdown().await;
    running.shutdown().await;
}
