//! The authoritative handler as a client sees it: raw queries in, raw
//! answers out, through the same path the server and the fuzzer use.

use std::net::{IpAddr, SocketAddr};

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name, RData, RecordType};
use warren_proto::service::{ServiceProto, ServiceRecord, ServiceSpec};

use super::handler::{answer_bytes, AuthoritativeHandler, Zones, MAX_UDP_PAYLOAD};
use super::{load, zone};

const ZONE: &str = "prod.warren.internal";

fn client() -> SocketAddr {
    "192.0.2.50:40000".parse().unwrap()
}

pub(super) fn handler(services: &[ServiceRecord]) -> AuthoritativeHandler {
    let hosts = [
        ("web", IpAddr::from([10, 147, 0, 1])),
        ("web", "fd00::1".parse().unwrap()),
        ("db", IpAddr::from([10, 147, 0, 2])),
    ];
    let records = zone::records(ZONE, 7, hosts, services).unwrap();
    let (origin, zone_handler) = load(records);
    let mut zones = Zones::default();
    zones.insert(origin, zone_handler);
    let handler = AuthoritativeHandler::default();
    handler.replace(zones);
    handler
}

pub(super) fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m
}

async fn ask(handler: &AuthoritativeHandler, m: &Message, protocol: Protocol) -> Message {
    let bytes = m.to_vec().unwrap();
    let answer = answer_bytes(handler, &bytes, client(), protocol)
        .await
        .expect("an answer");
    if protocol == Protocol::Udp {
        assert!(
            answer.len() <= usize::from(MAX_UDP_PAYLOAD),
            "{} bytes",
            answer.len()
        );
    }
    Message::from_vec(&answer).expect("a parseable answer")
}

#[tokio::test]
async fn members_resolve_with_authority() {
    let h = handler(&[]);
    let a = ask(
        &h,
        &query("web.prod.warren.internal.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.metadata.id, 4242);
    assert!(a.metadata.authoritative);
    assert!(!a.metadata.recursion_available);
    assert_eq!(a.answers.len(), 1);
    assert_eq!(
        a.answers[0].data,
        RData::A(std::net::Ipv4Addr::new(10, 147, 0, 1).into())
    );
    // Names are case-insensitive.
    let aaaa = ask(
        &h,
        &query("WEB.Prod.warren.internal.", RecordType::AAAA),
        Protocol::Tcp,
    )
    .await;
    assert_eq!(aaaa.answers.len(), 1);
    let missing = ask(
        &h,
        &query("nope.prod.warren.internal.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA));
}

#[tokio::test]
async fn published_services_answer_srv() {
    let web = ServiceRecord {
        member: "web".into(),
        node_id: "0123456789".parse().unwrap(),
        service: ServiceSpec {
            name: "http".into(),
            proto: ServiceProto::Tcp,
            port: 8080,
            txt: vec!["path=/".into()],
        },
    };
    let h = handler(&[web]);
    let srv = ask(
        &h,
        &query("_http._tcp.prod.warren.internal.", RecordType::SRV),
        Protocol::Udp,
    )
    .await;
    assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
    let RData::SRV(s) = &srv.answers[0].data else {
        panic!("not SRV: {srv:?}")
    };
    assert_eq!(s.port, 8080);
    assert_eq!(s.target.to_ascii(), "web.prod.warren.internal.");
    let txt = ask(
        &h,
        &query("_http._tcp.prod.warren.internal.", RecordType::TXT),
        Protocol::Udp,
    )
    .await;
    assert_eq!(txt.answers.len(), 1);
}

#[tokio::test]
async fn everything_outside_the_zones_is_refused() {
    let h = handler(&[]);
    for name in ["example.com.", "warren.internal.", ".", "internal."] {
        let a = ask(&h, &query(name, RecordType::A), Protocol::Udp).await;
        assert_eq!(a.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(a.answers.is_empty());
    }
}

#[tokio::test]
async fn any_transfers_updates_and_other_classes_get_no_data() {
    let h = handler(&[]);
    let cases = [
        (RecordType::ANY, ResponseCode::NotImp),
        (RecordType::AXFR, ResponseCode::Refused),
        (RecordType::IXFR, ResponseCode::Refused),
    ];
    for (rtype, code) in cases {
        let a = ask(
            &h,
            &query("web.prod.warren.internal.", rtype),
            Protocol::Tcp,
        )
        .await;
        assert_eq!(a.metadata.response_code, code, "{rtype}");
        assert!(a.answers.is_empty());
    }
    let mut update = query("prod.warren.internal.", RecordType::SOA);
    update.metadata.op_code = OpCode::Update;
    let a = ask(&h, &update, Protocol::Udp).await;
    assert_eq!(a.metadata.response_code, ResponseCode::Refused);
    let mut chaos = query("web.prod.warren.internal.", RecordType::A);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let a = ask(&h, &chaos, Protocol::Udp).await;
    assert_eq!(a.metadata.response_code, ResponseCode::Refused);
    let mut two = query("web.prod.warren.internal.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("db.prod.warren.internal.").unwrap(),
        RecordType::A,
    ));
    let a = ask(&h, &two, Protocol::Udp).await;
    assert_eq!(a.metadata.response_code, ResponseCode::FormErr);
    let mut response = query("web.prod.warren.internal.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    let bytes = response.to_vec().unwrap();
    assert!(answer_bytes(&h, &bytes, client(), Protocol::Udp)
        .await
        .is_none());
}

#[tokio::test]
async fn large_udp_answers_are_truncated_whatever_edns_offers() {
    let services: Vec<ServiceRecord> = (0..120u16)
        .map(|i| ServiceRecord {
            member: format!("member-with-a-long-name-{i}"),
            node_id: "0123456789".parse().unwrap(),
            service: ServiceSpec {
                name: "web".into(),
                proto: ServiceProto::Tcp,
                port: 8000 + i,
                txt: vec![],
            },
        })
        .collect();
    let h = handler(&services);
    let mut q = query("_web._tcp.prod.warren.internal.", RecordType::SRV);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns);
    let udp = ask(&h, &q, Protocol::Udp).await;
    assert!(udp.metadata.truncation, "a big answer over UDP sets TC");
    let tcp = ask(&h, &q, Protocol::Tcp).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 120);
}

/// Files in `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET` (crashes
/// found by the fuzzer go there): a selector byte, then the query.
fn fuzz_inputs(target: &str) -> Vec<Vec<u8>> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                inputs.push(std::fs::read(entry.path()).unwrap());
            }
        }
    }
    inputs
}

/// What the fuzz target checks for one input: the answer stays within the
/// UDP limit and never carries data for a name outside the zone.
async fn check_fuzz_input(h: &AuthoritativeHandler, data: &[u8]) {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let protocol = if selector & 1 == 0 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let Some(answer) = answer_bytes(h, query, client(), protocol).await else {
        return;
    };
    if protocol == Protocol::Udp {
        assert!(answer.len() <= usize::from(MAX_UDP_PAYLOAD));
    }
    if let Ok(m) = Message::from_vec(&answer) {
        let zone = Name::from_ascii("prod.warren.internal.").unwrap();
        if m.queries.iter().any(|q| !zone.zone_of(q.name())) {
            assert!(m.answers.is_empty(), "data outside the zone: {m:?}");
        }
    }
}

/// Regression for the `controller_query` fuzz target: its corpus, every
/// crash kept in `fuzz/regressions/`, and a bounded run of deterministic
/// mutations of them.
#[tokio::test]
async fn fuzz_corpus_and_mutations_hold() {
    let h = handler(&[]);
    let mut seeds = fuzz_inputs("controller_query");
    assert!(!seeds.is_empty(), "the seed corpus is missing");
    for seed in &seeds {
        check_fuzz_input(&h, seed).await;
    }
    seeds.push(
        [
            &[0u8][..],
            &query("web.prod.warren.internal.", RecordType::A)
                .to_vec()
                .unwrap(),
        ]
        .concat(),
    );
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..4000 {
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
        check_fuzz_input(&h, &bytes).await;
    }
}
