//! Site forwarding against a real UDP DNS server on loopback, alone and
//! through the stub's handler.

use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Query;
use warren_proto::site::SiteDns;
use warren_proto::NodeId;

use super::*;
use crate::dns::handler::{answer_bytes, SharedState, StubState};
use crate::dns::zone::tests::netmap;
use crate::dns::zone::{load, ZoneView};

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn pair() -> MappedPrefix {
    MappedPrefix {
        real: "10.96.0.0/12".parse().unwrap(),
        mapped: "100.64.0.0/12".parse().unwrap(),
    }
}

fn view(server: SocketAddr) -> SiteView {
    SiteView {
        origin: name("m.prod.warren.internal."),
        domain: name("cluster.local."),
        server,
        mapped: vec![pair()],
    }
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), 30, RData::A(A(Ipv4Addr::from(ip))))
}

/// A cluster's DNS server on loopback: `members` (A, SRV for `_http._tcp`),
/// `alias` (CNAME to members), `outside` (an A outside the site's
/// prefixes); anything else NXDOMAIN; `slow` never answered. Before each
/// answer it sends a datagram with the wrong ID, which must be ignored.
async fn cluster_dns() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = q.queries.first().cloned() else {
                continue;
            };
            let asked = query.name().to_ascii().to_ascii_lowercase();
            if asked.starts_with("slow.") {
                continue;
            }
            let mut answer = Message::response(q.metadata.id, q.metadata.op_code);
            answer.metadata.recursion_available = true;
            answer.add_query(query.clone());
            let members = "members.default.svc.cluster.local.";
            match (asked.as_str(), query.query_type()) {
                ("members.default.svc.cluster.local.", RecordType::A) => {
                    answer.add_answer(a(members, [10, 96, 5, 5]));
                }
                ("_http._tcp.members.default.svc.cluster.local.", RecordType::SRV) => {
                    answer.add_answer(Record::from_rdata(
                        query.name().clone(),
                        30,
                        RData::SRV(SRV::new(0, 100, 8080, name(members))),
                    ));
                    answer.add_additional(a(members, [10, 96, 5, 5]));
                }
                ("alias.default.svc.cluster.local.", RecordType::A) => {
                    answer.add_answer(Record::from_rdata(
                        query.name().clone(),
                        30,
                        RData::CNAME(CNAME(name(members))),
                    ));
                    answer.add_answer(a(members, [10, 96, 5, 5]));
                }
                ("outside.cluster.local.", RecordType::A) => {
                    answer.add_answer(a("outside.cluster.local.", [192, 0, 2, 7]));
                }
                _ => answer.metadata.response_code = ResponseCode::NXDomain,
            }
            let mut spoof = answer.clone();
            spoof.metadata.id = q.metadata.id.wrapping_add(1);
            spoof.answers = vec![a(members, [6, 6, 6, 6])];
            let _ = socket.send_to(&spoof.to_vec().unwrap(), from).await;
            let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
        }
    });
    addr
}

fn forwarder(server: SocketAddr) -> SiteForwarder {
    SiteForwarder {
        view: view(server),
        timeout: Duration::from_millis(300),
    }
}

#[test]
fn names_move_between_the_mesh_and_the_site() {
    let f = forwarder("127.0.0.1:53".parse().unwrap());
    assert_eq!(
        f.outgoing(&name("members.default.svc.m.prod.warren.internal.")),
        Some(name("members.default.svc.cluster.local."))
    );
    assert_eq!(f.outgoing(&name("db.prod.warren.internal.")), None);
    assert_eq!(
        rename(
            &name("_http._tcp.members.cluster.local."),
            &name("cluster.local."),
            &name("m.prod.warren.internal.")
        ),
        Some(name("_http._tcp.members.m.prod.warren.internal."))
    );
}

#[test]
fn members_ask_the_mapped_server_and_the_router_its_own() {
    let mut map = netmap("prod.warren.internal", ("laptop", 1), &[]);
    let router: NodeId = "0123456789".parse().unwrap();
    map.settings.sites = vec![
        Site {
            name: "m".into(),
            routers: vec![router],
            dns: Some(SiteDns {
                domain: "cluster.local".into(),
                server: "10.96.0.10".parse().unwrap(),
            }),
            mapped: vec![pair()],
        },
        Site {
            name: "w".into(),
            routers: vec![],
            dns: None,
            mapped: vec![],
        },
    ];
    let views = SiteView::of(&map);
    assert_eq!(views.len(), 1, "only sites with DNS");
    assert_eq!(views[0].origin, name("m.prod.warren.internal."));
    assert_eq!(views[0].server, "100.64.0.10:53".parse().unwrap());
    map.self_node.node_id = router;
    assert_eq!(
        SiteView::of(&map)[0].server,
        "10.96.0.10:53".parse().unwrap()
    );
    assert_eq!(
        mapped_server("10.200.0.1".parse().unwrap(), &[pair()]),
        "10.200.0.1".parse::<IpAddr>().unwrap()
    );
}

#[tokio::test]
async fn answers_come_back_renamed_and_mapped() {
    let f = forwarder(cluster_dns().await);
    let ask = |n: &str, t| {
        let n = name(n);
        let f = &f;
        async move { f.resolve(&n, t).await }
    };

    let got = ask("members.default.svc.m.prod.warren.internal.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(got.code, ResponseCode::NoError);
    assert_eq!(
        got.answers,
        vec![a(
            "members.default.svc.m.prod.warren.internal.",
            [100, 64, 5, 5]
        )],
        "renamed, mapped, and not the spoofed answer"
    );

    let got = ask(
        "_http._tcp.members.default.svc.m.prod.warren.internal.",
        RecordType::SRV,
    )
    .await
    .unwrap();
    let RData::SRV(srv) = &got.answers[0].data else {
        panic!("an SRV answer: {got:?}");
    };
    assert_eq!(srv.port, 8080);
    assert_eq!(
        srv.target,
        name("members.default.svc.m.prod.warren.internal.")
    );
    assert_eq!(
        got.answers[0].name,
        name("_http._tcp.members.default.svc.m.prod.warren.internal.")
    );
    assert_eq!(
        got.additionals,
        vec![a(
            "members.default.svc.m.prod.warren.internal.",
            [100, 64, 5, 5]
        )]
    );

    let got = ask("alias.default.svc.m.prod.warren.internal.", RecordType::A)
        .await
        .unwrap();
    let RData::CNAME(CNAME(target)) = &got.answers[0].data else {
        panic!("a CNAME: {got:?}");
    };
    assert_eq!(*target, name("members.default.svc.m.prod.warren.internal."));

    let got = ask("outside.m.prod.warren.internal.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        got.answers,
        vec![a("outside.m.prod.warren.internal.", [192, 0, 2, 7])],
        "an address outside the mapped prefixes stays"
    );

    let got = ask("nothing.m.prod.warren.internal.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(got.code, ResponseCode::NXDomain);

    let started = std::time::Instant::now();
    assert_eq!(
        ask("slow.m.prod.warren.internal.", RecordType::A).await,
        None
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
}

fn query(n: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 9;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(n), rtype));
    m.to_vec().unwrap()
}

#[tokio::test]
async fn the_stub_forwards_site_names_for_this_host_and_hosts_behind_it_not_peers() {
    let stub: SocketAddr = "10.147.0.1:53".parse().unwrap();
    let zone = load(
        &ZoneView::of(&netmap("prod.warren.internal", ("web", 1), &[("m", 2)])),
        1,
    )
    .unwrap();
    let mut state = StubState::default();
    state.insert_zone(stub, zone.origin, zone.handler);
    state.add_local(stub.ip());
    let site = view(cluster_dns().await);
    state.insert_site(site.lower_origin(), Arc::new(forwarder(site.server)));
    state.set_lan(stub, vec!["172.16.1.0/24".parse().unwrap()]);
    let shared = SharedState::default();
    shared.replace(state);

    let ask = |from: &str, n: &str| {
        let src = SocketAddr::new(from.parse().unwrap(), 40000);
        let bytes = query(n, RecordType::A);
        let handler = shared.handler(stub);
        async move {
            let answer = answer_bytes(&handler, &bytes, src, Protocol::Udp)
                .await
                .unwrap();
            Message::from_vec(&answer).unwrap()
        }
    };
    let local = ask("127.0.0.1", "members.default.svc.m.prod.warren.internal.").await;
    assert_eq!(local.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        local.answers,
        vec![a(
            "members.default.svc.m.prod.warren.internal.",
            [100, 64, 5, 5]
        )]
    );
    // A peer asking over the overlay does not get into the site through us.
    let peer = ask("10.147.0.2", "members.default.svc.m.prod.warren.internal.").await;
    assert_eq!(peer.metadata.response_code, ResponseCode::Refused);
    // A host of a subnet this node serves (a pod, the cluster's DNS) does.
    let pod = ask("172.16.1.2", "members.default.svc.m.prod.warren.internal.").await;
    assert_eq!(pod.metadata.response_code, ResponseCode::NoError);
    assert_eq!(pod.answers.len(), 1);
    let stranger = ask("172.16.9.2", "members.default.svc.m.prod.warren.internal.").await;
    assert_eq!(stranger.metadata.response_code, ResponseCode::Refused);
    // The site's own name stays the zone's: here a member is called m.
    let member = ask("10.147.0.2", "m.prod.warren.internal.").await;
    assert_eq!(member.metadata.response_code, ResponseCode::NoError);
    assert_eq!(member.answers.len(), 1);
    // No answer from the site: SERVFAIL.
    let slow = ask("127.0.0.1", "slow.m.prod.warren.internal.").await;
    assert_eq!(slow.metadata.response_code, ResponseCode::ServFail);
}

/// A server that answers over UDP only with TC set, and in full over TCP.
async fn truncating_dns() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = UdpSocket::bind(addr).await.unwrap();
    let answer_to = |q: &Message, full: bool| {
        let mut answer = Message::response(q.metadata.id, q.metadata.op_code);
        answer.add_query(q.queries[0].clone());
        answer.metadata.truncation = !full;
        if full {
            for i in 1..=3 {
                answer.add_answer(a("big.cluster.local.", [10, 96, 0, i]));
            }
        }
        answer.to_vec().unwrap()
    };
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let _ = udp.send_to(&answer_to(&q, false), from).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf).unwrap();
            let bytes = answer_to(&q, true);
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            stream.write_all(&framed).await.unwrap();
        }
    });
    addr
}

#[tokio::test]
async fn a_truncated_answer_is_asked_again_over_tcp() {
    let f = forwarder(truncating_dns().await);
    let got = f
        .resolve(&name("big.m.prod.warren.internal."), RecordType::A)
        .await
        .unwrap();
    assert_eq!(got.answers.len(), 3, "{got:?}");
    assert_eq!(
        got.answers[2],
        a("big.m.prod.warren.internal.", [100, 64, 0, 3])
    );
}
