//! A network's zone as the stub serves it, built from the netmap alone
//! (pure), so it answers with the controller down. It holds the same
//! records as the controller's zone: SOA, A/AAAA for this node and every
//! peer, SRV/TXT for published services.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, ZoneHandler, ZoneType};
use warren_proto::netmap::Netmap;
use warren_proto::service::ServiceRecord;

/// TTL of every record, as on the controller.
pub const TTL: u32 = 10;

/// The DNS-relevant part of a netmap: a new netmap that leaves it equal
/// (a peer going online, new endpoints) does not rebuild the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneView {
    pub zone: String,
    /// (name, address), this node first, then peers in netmap order.
    pub hosts: Vec<(String, IpAddr)>,
    pub services: Vec<ServiceRecord>,
}

impl ZoneView {
    pub fn of(map: &Netmap) -> ZoneView {
        let me = &map.self_node;
        let mut hosts: Vec<(String, IpAddr)> = me
            .addresses
            .iter()
            .map(|a| (me.name.clone(), a.addr()))
            .collect();
        for peer in &map.peers {
            // Peers' addresses are host prefixes; anything wider is a route.
            hosts.extend(
                peer.addresses
                    .iter()
                    .filter(|a| a.prefix_len() == a.max_prefix_len())
                    .map(|a| (peer.name.clone(), a.addr())),
            );
        }
        ZoneView {
            zone: map.dns.zone.clone(),
            hosts,
            services: map.dns.services.clone(),
        }
    }
}

/// A zone loaded for serving.
pub struct LoadedZone {
    pub origin: LowerName,
    pub handler: Arc<dyn ZoneHandler>,
    pub records: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a DNS name")]
pub struct BadName(pub String);

/// The records of `view`'s zone with SOA serial `serial`.
pub fn records(view: &ZoneView, serial: u32) -> Result<(Name, Vec<Record>), BadName> {
    let zone = &view.zone;
    let origin = fqdn(zone)?;
    let at = |label: &str| fqdn(&format!("{label}.{zone}"));
    let soa = SOA::new(at("ns")?, at("hostmaster")?, serial, 3600, 600, 86400, TTL);
    let mut out = vec![Record::from_rdata(origin.clone(), TTL, RData::SOA(soa))];
    for (name, ip) in &view.hosts {
        let Ok(owner) = at(name) else { continue };
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        out.push(Record::from_rdata(owner, TTL, data));
    }
    for s in &view.services {
        let (Ok(owner), Ok(target)) = (at(&s.service.label()), at(&s.member)) else {
            continue;
        };
        let srv = SRV::new(0, 0, s.service.port, target);
        out.push(Record::from_rdata(owner.clone(), TTL, RData::SRV(srv)));
        if !s.service.txt.is_empty() {
            let txt = TXT::new(s.service.txt.clone());
            out.push(Record::from_rdata(owner, TTL, RData::TXT(txt)));
        }
    }
    Ok((origin, out))
}

/// Loads `view` into an in-memory primary zone that refuses transfers.
pub fn load(view: &ZoneView, serial: u32) -> Result<LoadedZone, BadName> {
    let (origin, records) = records(view, serial)?;
    let count = records.len();
    let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    for record in records {
        handler.upsert_mut(record, serial);
    }
    Ok(LoadedZone {
        origin: LowerName::new(&origin),
        handler: Arc::new(handler),
        records: count,
    })
}

fn fqdn(text: &str) -> Result<Name, BadName> {
    let mut name = Name::from_ascii(text).map_err(|_| BadName(text.to_owned()))?;
    name.set_fqdn(true);
    Ok(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_server::proto::rr::RecordType;
    use warren_proto::netmap::{DnsConfig, NetmapPeer, NetworkSettings, SelfNode};
    use warren_proto::service::{ServiceProto, ServiceSpec};
    use warren_proto::{NodeId, NodePrivateKey};

    pub(crate) fn netmap(zone: &str, me: (&str, u8), peers: &[(&str, u8)]) -> Netmap {
        let key = |seed: u8| NodePrivateKey::from_bytes([seed; 32]).public_key();
        Netmap {
            network_id: "8056c2e21c000001".parse().unwrap(),
            network_name: "prod".into(),
            version: 9,
            self_node: SelfNode {
                node_id: NodeId::from_key(&key(me.1)),
                name: me.0.into(),
                fqdn: format!("{}.{zone}", me.0),
                addresses: vec![
                    format!("10.147.0.{}/16", me.1).parse().unwrap(),
                    format!("fd00::{}/64", me.1).parse().unwrap(),
                ],
                authorized: true,
                owner: None,
                expires_at: None,
                expired: false,
                routes: vec![],
            },
            peers: peers
                .iter()
                .map(|(name, seed)| NetmapPeer {
                    node_id: NodeId::from_key(&key(*seed)),
                    name: (*name).into(),
                    public_key: key(*seed),
                    addresses: vec![
                        format!("10.147.0.{seed}/32").parse().unwrap(),
                        format!("fd00::{seed}/128").parse().unwrap(),
                    ],
                    routes: vec!["192.168.7.0/24".parse().unwrap()],
                    endpoints: vec![],
                    online: true,
                })
                .collect(),
            dns: DnsConfig {
                zone: zone.into(),
                services: vec![ServiceRecord {
                    member: "db".into(),
                    node_id: NodeId::from_key(&key(2)),
                    service: ServiceSpec {
                        name: "postgres".into(),
                        proto: ServiceProto::Tcp,
                        port: 5432,
                        txt: vec!["v=16".into()],
                    },
                }],
            },
            settings: NetworkSettings {
                mtu: 1420,
                stun_ports: vec![],
                sites: Vec::new(),
            },
            filter: None,
        }
    }

    #[test]
    fn the_zone_holds_self_peers_and_services() {
        let map = netmap("prod.warren.internal", ("web", 1), &[("db", 2)]);
        let view = ZoneView::of(&map);
        assert_eq!(
            view.hosts.len(),
            4,
            "routes are not hosts: {:?}",
            view.hosts
        );
        let (origin, records) = records(&view, 9).unwrap();
        assert_eq!(origin.to_ascii(), "prod.warren.internal.");
        let has = |name: &str, rtype: RecordType| {
            records
                .iter()
                .any(|r| r.name.to_ascii() == name && r.record_type() == rtype)
        };
        assert!(has("prod.warren.internal.", RecordType::SOA));
        assert!(has("web.prod.warren.internal.", RecordType::A));
        assert!(has("web.prod.warren.internal.", RecordType::AAAA));
        assert!(has("db.prod.warren.internal.", RecordType::A));
        assert!(has("db.prod.warren.internal.", RecordType::AAAA));
        assert!(has("_postgres._tcp.prod.warren.internal.", RecordType::SRV));
        assert!(has("_postgres._tcp.prod.warren.internal.", RecordType::TXT));
        assert_eq!(records.len(), 7);
        assert_eq!(load(&view, 9).unwrap().records, 7);
    }

    #[test]
    fn only_dns_relevant_changes_change_the_view() {
        let map = netmap("prod.warren.internal", ("web", 1), &[("db", 2)]);
        let mut next = map.clone();
        next.version += 1;
        next.peers[0].online = false;
        next.peers[0].endpoints = vec!["192.0.2.1:51820".parse().unwrap()];
        assert_eq!(ZoneView::of(&map), ZoneView::of(&next));
        next.peers[0].name = "db-renamed".into();
        assert_ne!(ZoneView::of(&map), ZoneView::of(&next));
        let mut bad = ZoneView::of(&map);
        bad.zone = "bad..zone".into();
        assert!(records(&bad, 1).is_err());
    }
}
