//! Raw bytes as a DNS query to the agent's stub handler, from a peer or
//! from the machine itself (first byte), over UDP or TCP. The stub's own
//! source files are built as they are. A peer must never get data outside
//! its network's zone, and UDP answers stay small.
#![no_main]

#[allow(dead_code)]
#[path = "../../node/src/dns/handler.rs"]
mod handler;
#[allow(dead_code)]
#[path = "../../node/src/dns/zone.rs"]
mod zone;

use std::net::SocketAddr;
use std::sync::LazyLock;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::Name;
use libfuzzer_sys::fuzz_target;
use warren_proto::service::{ServiceProto, ServiceRecord, ServiceSpec};

use handler::{answer_bytes, SharedState, StubState, MAX_UDP_PAYLOAD};
use zone::{load, ZoneView};

const STUB: &str = "10.147.0.1:53";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

static STATE: LazyLock<SharedState> = LazyLock::new(|| {
    let prod = ZoneView {
        zone: "prod.warren.internal".into(),
        hosts: vec![
            ("web".into(), "10.147.0.1".parse().expect("v4")),
            ("web".into(), "fd00::1".parse().expect("v6")),
            ("db".into(), "10.147.0.2".parse().expect("v4")),
        ],
        services: vec![ServiceRecord {
            member: "db".into(),
            node_id: "0123456789".parse().expect("node id"),
            service: ServiceSpec {
                name: "postgres".into(),
                proto: ServiceProto::Tcp,
                port: 5432,
                txt: vec!["v=16".into()],
            },
        }],
    };
    let lab = ZoneView {
        zone: "lab.warren.internal".into(),
        hosts: vec![("box".into(), "10.200.0.1".parse().expect("v4"))],
        services: vec![],
    };
    let mut state = StubState::default();
    for (view, stub) in [(prod, STUB), (lab, "10.200.0.1:53")] {
        let z = load(&view, 1).expect("zone");
        state.insert_zone(stub.parse().expect("addr"), z.origin, z.handler);
    }
    state.add_local("10.147.0.1".parse().expect("v4"));
    // No forwarder: the fuzzer sends nothing over the network.
    let shared = SharedState::default();
    shared.replace(state);
    shared
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let protocol = if selector & 1 == 0 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let peer = selector & 2 == 0;
    let src: SocketAddr = if peer {
        "10.147.0.9:5353"
    } else {
        "10.147.0.1:5353"
    }
    .parse()
    .expect("addr");
    let handler = STATE.handler(STUB.parse().expect("addr"));
    let Some(answer) = RUNTIME.block_on(answer_bytes(&handler, query, src, protocol)) else {
        return;
    };
    if protocol == Protocol::Udp {
        assert!(answer.len() <= usize::from(MAX_UDP_PAYLOAD));
    }
    if let (true, Ok(m)) = (peer, Message::from_vec(&answer)) {
        let zone = Name::from_ascii("prod.warren.internal.").expect("zone");
        if m.queries.iter().any(|q| !zone.zone_of(q.name())) {
            assert!(m.answers.is_empty(), "a peer got data outside its zone");
        }
    }
});
