//! Raw bytes as a DNS query to the controller's authoritative handler, the
//! way the server hands it one (UDP or TCP, by the first byte). An answer
//! must stay within the UDP limit and never carry data outside the zone.
//! The handler and the zone come from controller/src/dns/{handler,zone}.rs.
#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::Name;
use libfuzzer_sys::fuzz_target;
use warren_proto::service::{ServiceProto, ServiceRecord, ServiceSpec};

// The controller's handler and zone builder, built as they are (they need
// hickory and warren-dns, not the rest of the controller).
#[allow(dead_code)]
#[path = "../../controller/src/dns/handler.rs"]
mod handler;
#[allow(dead_code)]
#[path = "../../controller/src/dns/zone.rs"]
mod zone;

use handler::{answer_bytes, AuthoritativeHandler, Zones, MAX_UDP_PAYLOAD};
use zone::load;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

static HANDLER: LazyLock<AuthoritativeHandler> = LazyLock::new(|| {
    let hosts = [
        ("web", IpAddr::from([10, 147, 0, 1])),
        ("web", "fd00::1".parse().expect("v6")),
        ("db", IpAddr::from([10, 147, 0, 2])),
    ];
    let services = [ServiceRecord {
        member: "db".into(),
        node_id: "0123456789".parse().expect("node id"),
        service: ServiceSpec {
            name: "postgres".into(),
            proto: ServiceProto::Tcp,
            port: 5432,
            txt: vec!["v=16".into()],
        },
    }];
    let records = zone::records("prod.warren.internal", 1, hosts, &services).expect("zone");
    let (origin, handler) = load(records);
    let mut zones = Zones::default();
    zones.insert(origin, handler);
    let h = AuthoritativeHandler::default();
    h.replace(zones);
    h
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
    let src = "192.0.2.50:40000".parse().expect("addr");
    let Some(answer) = RUNTIME.block_on(answer_bytes(&*HANDLER, query, src, protocol)) else {
        return;
    };
    if protocol == Protocol::Udp {
        assert!(answer.len() <= usize::from(MAX_UDP_PAYLOAD));
    }
    if let Ok(m) = Message::from_vec(&answer) {
        let zone = Name::from_ascii("prod.warren.internal.").expect("zone");
        if m.queries.iter().any(|q| !zone.zone_of(q.name())) {
            assert!(m.answers.is_empty(), "data outside the zone");
        }
    }
});
