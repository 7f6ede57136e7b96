//! The stub as clients see it (raw queries through the same handler the
//! server and the fuzzer drive), and the whole DNS lifecycle against a
//! resolv.conf in a temporary directory.

use std::net::{IpAddr, SocketAddr};

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use super::handler::{answer_bytes, SharedState, StubState, MAX_UDP_PAYLOAD};
use super::zone::tests::netmap;
use super::zone::{load, ZoneView};
use super::*;
use warren_proto::local_api::EffectState;

fn stub_a() -> SocketAddr {
    "10.147.0.1:53".parse().unwrap()
}

fn stub_b() -> SocketAddr {
    "10.200.0.1:53".parse().unwrap()
}

/// Two networks' zones, this machine at 10.147.0.1 and 10.200.0.1.
fn state(forward_to: Option<SocketAddr>) -> SharedState {
    let mut state = StubState::default();
    let a = load(
        &ZoneView::of(&netmap("prod.warren.internal", ("web", 1), &[("db", 2)])),
        1,
    )
    .unwrap();
    let b = load(
        &ZoneView::of(&netmap("lab.warren.internal", ("box", 1), &[])),
        1,
    )
    .unwrap();
    state.insert_zone(stub_a(), a.origin, a.handler);
    state.insert_zone(stub_b(), b.origin, b.handler);
    state.add_local(stub_a().ip());
    state.add_local(stub_b().ip());
    if let Some(upstream) = forward_to {
        if let Some(f) = forwarder(&[upstream]) {
            state.set_forwarder(f);
        }
    }
    let shared = SharedState::default();
    shared.replace(state);
    shared
}

fn query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 7;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

async fn ask(
    shared: &SharedState,
    stub: SocketAddr,
    from: &str,
    name: &str,
    rtype: RecordType,
) -> Message {
    let src = SocketAddr::new(from.parse().unwrap(), 40000);
    let answer = answer_bytes(
        &shared.handler(stub),
        &query(name, rtype),
        src,
        Protocol::Udp,
    )
    .await
    .expect("an answer");
    assert!(answer.len() <= usize::from(MAX_UDP_PAYLOAD));
    Message::from_vec(&answer).unwrap()
}

#[tokio::test]
async fn local_clients_get_every_zone() {
    let s = state(None);
    let a = ask(
        &s,
        stub_a(),
        "10.147.0.1",
        "db.prod.warren.internal.",
        RecordType::A,
    )
    .await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert_eq!(
        a.answers[0].data,
        RData::A(std::net::Ipv4Addr::new(10, 147, 0, 2).into())
    );
    let aaaa = ask(
        &s,
        stub_a(),
        "127.0.0.1",
        "web.prod.warren.internal.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(aaaa.answers.len(), 1);
    // The other network's zone, through the first network's stub.
    let other = ask(
        &s,
        stub_a(),
        "10.147.0.1",
        "box.lab.warren.internal.",
        RecordType::A,
    )
    .await;
    assert_eq!(other.answers.len(), 1);
    let srv = ask(
        &s,
        stub_a(),
        "10.147.0.1",
        "_postgres._tcp.prod.warren.internal.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(srv.answers.len(), 1);
    // No upstream: nothing is forwarded.
    let out = ask(&s, stub_a(), "10.147.0.1", "example.com.", RecordType::A).await;
    assert_eq!(out.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn peers_get_only_the_zone_of_the_stub_they_ask() {
    let upstream = fake_upstream().await;
    let s = state(Some(upstream));
    let peer = "10.147.0.2";
    let a = ask(
        &s,
        stub_a(),
        peer,
        "web.prod.warren.internal.",
        RecordType::A,
    )
    .await;
    assert_eq!(a.answers.len(), 1);
    for name in [
        "box.lab.warren.internal.",
        "example.com.",
        "warren.internal.",
    ] {
        let refused = ask(&s, stub_a(), peer, name, RecordType::A).await;
        assert_eq!(
            refused.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(refused.answers.is_empty());
    }
}

#[tokio::test]
async fn local_clients_are_forwarded_upstream_and_any_is_never_answered() {
    let upstream = fake_upstream().await;
    let s = state(Some(upstream));
    let fwd = ask(&s, stub_a(), "10.147.0.1", "upstream.test.", RecordType::A).await;
    assert_eq!(fwd.metadata.response_code, ResponseCode::NoError, "{fwd:?}");
    assert_eq!(
        fwd.answers[0].data,
        RData::A(std::net::Ipv4Addr::new(192, 0, 2, 99).into())
    );
    for (name, code) in [
        ("web.prod.warren.internal.", ResponseCode::NotImp),
        ("upstream.test.", ResponseCode::NotImp),
    ] {
        let any = ask(&s, stub_a(), "10.147.0.1", name, RecordType::ANY).await;
        assert_eq!(any.metadata.response_code, code, "{name}");
        assert!(any.answers.is_empty());
    }
    let axfr = ask(
        &s,
        stub_a(),
        "10.147.0.1",
        "prod.warren.internal.",
        RecordType::AXFR,
    )
    .await;
    assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
}

/// A resolver on loopback that answers every A question with 192.0.2.99.
#[tokio::test]
async fn answers_are_counted_by_result() {
    let s = state(None);
    let queries = std::sync::Arc::new(handler::QueryCounts::default());
    let handler = s.handler(stub_a()).counting(queries.clone());
    let src: SocketAddr = "10.147.0.1:40000".parse().unwrap();
    for name in [
        "db.prod.warren.internal.",
        "nope.prod.warren.internal.",
        "example.org.",
    ] {
        answer_bytes(&handler, &query(name, RecordType::A), src, Protocol::Udp)
            .await
            .expect("an answer");
    }
    let counts: std::collections::BTreeMap<_, _> = queries.snapshot().into_iter().collect();
    assert_eq!(counts["noerror"], 1, "{counts:?}");
    assert_eq!(counts["nxdomain"], 1, "{counts:?}");
    // No forwarder: names outside the zones are refused.
    assert_eq!(counts["refused"], 1, "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 3);
}

async fn fake_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(q.metadata.id, q.metadata.op_code);
            answer.metadata.recursion_desired = q.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            for query in &q.queries {
                answer.add_query(query.clone());
                if query.query_type() == RecordType::A {
                    answer.add_answer(hickory_server::proto::rr::Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::A(std::net::Ipv4Addr::new(192, 0, 2, 99).into()),
                    ));
                }
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

/// Files in `fuzz/corpus/stub_query` and `fuzz/regressions/stub_query`
/// (crashes the fuzzer found): a selector byte, then the query.
fn fuzz_inputs() -> Vec<Vec<u8>> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("stub_query")) {
            inputs.extend(
                entries
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .filter_map(|e| std::fs::read(e.path()).ok()),
            );
        }
    }
    inputs
}

/// What the `stub_query` fuzz target checks: selector bit 0 picks TCP,
/// bit 1 a local client; a peer never gets data outside its zone.
async fn check_fuzz_input(s: &SharedState, data: &[u8]) {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let protocol = if selector & 1 == 0 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let peer = selector & 2 == 0;
    let from: IpAddr = if peer {
        "10.147.0.9".parse().unwrap()
    } else {
        stub_a().ip()
    };
    let src = SocketAddr::new(from, 5353);
    let Some(answer) = answer_bytes(&s.handler(stub_a()), query, src, protocol).await else {
        return;
    };
    if protocol == Protocol::Udp {
        assert!(answer.len() <= usize::from(MAX_UDP_PAYLOAD));
    }
    if let (true, Ok(m)) = (peer, Message::from_vec(&answer)) {
        let prod = Name::from_ascii("prod.warren.internal.").unwrap();
        if m.queries.iter().any(|q| !prod.zone_of(q.name())) {
            assert!(
                m.answers.is_empty(),
                "a peer got data outside its zone: {m:?}"
            );
        }
    }
}

/// Regression for the `stub_query` fuzz target: its corpus, every crash in
/// `fuzz/regressions/`, and a bounded run of deterministic mutations.
#[tokio::test]
async fn fuzz_corpus_and_mutations_hold() {
    let s = state(None);
    let mut seeds = fuzz_inputs();
    assert!(!seeds.is_empty(), "the seed corpus is missing");
    for seed in &seeds {
        check_fuzz_input(&s, seed).await;
    }
    seeds.push(
        [
            &[2u8][..],
            &query("box.lab.warren.internal.", RecordType::AAAA),
        ]
        .concat(),
    );
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..4000usize {
        let mut bytes = seeds[round % seeds.len()].clone();
        for _ in 0..(next() % 4 + 1) {
            let r = next();
            match r % 3 {
                0 if !bytes.is_empty() => {
                    let i = (r >> 8) as usize % bytes.len();
                    bytes[i] = (r >> 32) as u8;
                }
                1 => bytes.truncate((r >> 8) as usize % (bytes.len() + 1)),
                _ => bytes.push((r >> 8) as u8),
            }
        }
        check_fuzz_input(&s, &bytes).await;
    }
}

/// The lifecycle on a resolv.conf of our own: the stub goes first after a
/// netmap, leave restores the bytes, and a crash is repaired at the next
/// start. Binds port 53 on a loopback address, so it needs root.
#[tokio::test]
async fn resolv_conf_is_edited_restored_and_repaired() {
    if crate::platform::sockopt::effective_uid() != 0 {
        eprintln!("skipped: binding port 53 needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    let original = "# test\nnameserver 192.0.2.53\nsearch example\n";
    std::fs::write(&resolv, original).unwrap();
    let settings = DnsSettings {
        manage: Manage::ResolvConf,
        resolv_conf: resolv.clone(),
        ..DnsSettings::default()
    };
    let mut map = netmap("prod.warren.internal", ("web", 1), &[("db", 2)]);
    // A loopback address stands in for the overlay one: every 127/8 address is local.
    map.self_node.addresses = vec!["127.71.0.1/16".parse().unwrap()];
    let mut dns = Dns::start(settings.clone(), dir.path());
    assert_eq!(dns.upstreams, vec!["192.0.2.53:53".parse().unwrap()]);
    dns.network_up(&map, "warren0").await;
    let status = dns.status();
    let in_use = |e: &Option<String>| e.as_deref().is_some_and(|e| e.contains("in use"));
    if in_use(&status.stubs[0].error) {
        // A resolver of the host's own holds port 53 on every address.
        eprintln!("skipped: port 53 is taken on this host: {status:?}");
        return;
    }
    assert!(status.stubs[0].serving, "{status:?}");
    assert_eq!(
        status.mode,
        warren_proto::local_dns::SplitDnsMode::ResolvConf
    );
    assert!(status.backup);
    let edited = std::fs::read_to_string(&resolv).unwrap();
    assert_eq!(
        resolv_conf::nameservers(&edited)[0],
        "127.71.0.1".parse::<IpAddr>().unwrap()
    );
    assert!(
        edited.contains("search prod.warren.internal example"),
        "{edited}"
    );
    dns.network_down(map.network_id).await;
    assert_eq!(std::fs::read_to_string(&resolv).unwrap(), original);
    assert!(!dns.status().backup);

    // A crash: the agent goes away with the file edited.
    dns.network_up(&map, "warren0").await;
    drop(dns);
    // Let the runtime drop the old stub's sockets.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_ne!(std::fs::read_to_string(&resolv).unwrap(), original);
    let mut next = Dns::start(settings, dir.path());
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        original,
        "repaired at start"
    );
    assert_eq!(next.upstreams, vec!["192.0.2.53:53".parse().unwrap()]);
    next.network_up(&map, "warren0").await;
    next.shutdown().await;
    assert_eq!(std::fs::read_to_string(&resolv).unwrap(), original);
}

/// A free port on a loopback address that stands in for an overlay one.
fn free_port(ip: &str) -> u16 {
    let socket = std::net::UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
    socket.local_addr().unwrap().port()
}

/// Split DNS through a fake systemd-resolved: the network's interface gets
/// its stub and the zone, a second network gets its own, and going down,
/// shutting down and a fresh start leave nothing configured. No root: the
/// stub listens on a loopback address above port 1024.
#[tokio::test]
async fn resolved_links_follow_the_networks_on_a_fake_system() {
    let dir = tempfile::tempdir().unwrap();
    let fake = os::fake::FakeResolver::new("nameserver 127.0.0.53\n", true);
    let settings = DnsSettings {
        stub_port: free_port("127.72.0.1"),
        ..DnsSettings::default()
    };
    let mut dns = Dns::start_on(settings, dir.path(), Arc::new(fake.clone()));
    let mut prod = netmap("prod.warren.internal", ("web", 1), &[("db", 2)]);
    prod.self_node.addresses = vec!["127.72.0.1/16".parse().unwrap()];
    dns.network_up(&prod, "warren0").await;
    let stub: SocketAddr = format!("127.72.0.1:{}", dns.settings.stub_port)
        .parse()
        .unwrap();
    assert_eq!(
        dns.status().mode,
        warren_proto::local_dns::SplitDnsMode::Resolved
    );
    assert_eq!(
        fake.state().links.get("warren0"),
        Some(&(stub, "prod.warren.internal".to_owned()))
    );
    assert_eq!(dns.effect(prod.network_id).state, EffectState::Applied);
    // The same map again changes nothing in the system.
    let calls = fake.state().calls.len();
    dns.network_up(&prod, "warren0").await;
    assert_eq!(fake.state().calls.len(), calls);

    let mut lab = netmap("lab.warren.internal", ("web", 1), &[]);
    lab.network_id = "8056c2e21c000002".parse().unwrap();
    lab.self_node.addresses = vec!["127.72.1.1/16".parse().unwrap()];
    dns.network_up(&lab, "warren1").await;
    assert_eq!(fake.state().links.len(), 2);

    dns.network_down(prod.network_id).await;
    assert_eq!(
        fake.state().links.keys().collect::<Vec<_>>(),
        vec!["warren1"]
    );
    assert_eq!(dns.effect(prod.network_id).state, EffectState::None);
    dns.shutdown().await;
    assert!(fake.state().links.is_empty(), "{:?}", fake.state().calls);
    assert_eq!(fake.state().resolv_conf, "nameserver 127.0.0.53\n");
}

/// Split DNS through resolv.conf on a fake system: written with a backup,
/// restored byte for byte when the last network goes, and repaired at the
/// next start after a crash.
#[tokio::test]
async fn resolv_conf_is_edited_and_repaired_on_a_fake_system() {
    let dir = tempfile::tempdir().unwrap();
    let original = "nameserver 192.0.2.53\nsearch example\n";
    let fake = os::fake::FakeResolver::new(original, false);
    // resolv.conf names no port: the stub must be on 53, which needs root;
    // the system is pointed at it once it serves, so check the error first.
    let settings = DnsSettings {
        manage: Manage::ResolvConf,
        ..DnsSettings::default()
    };
    let mut dns = Dns::start_on(settings.clone(), dir.path(), Arc::new(fake.clone()));
    assert_eq!(dns.upstreams, vec!["192.0.2.53:53".parse().unwrap()]);
    let mut map = netmap("prod.warren.internal", ("web", 1), &[("db", 2)]);
    map.self_node.addresses = vec!["127.73.0.1/16".parse().unwrap()];
    dns.network_up(&map, "warren0").await;
    if !dns.status().stubs[0].serving {
        eprintln!(
            "skipped: the stub cannot bind port 53 here: {:?}",
            dns.status()
        );
        return;
    }
    let edited = fake.state().resolv_conf.clone();
    assert_eq!(
        resolv_conf::nameservers(&edited)[0],
        "127.73.0.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(fake.state().backup.as_deref(), Some(original));
    dns.network_down(map.network_id).await;
    assert_eq!(fake.state().resolv_conf, original);
    assert!(fake.state().backup.is_none());

    // A crash with the file edited: the next start puts it back.
    dns.network_up(&map, "warren0").await;
    drop(dns);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_ne!(fake.state().resolv_conf, original);
    let _next = Dns::start_on(settings, dir.path(), Arc::new(fake.clone()));
    assert_eq!(fake.state().resolv_conf, original, "repaired at start");
}
