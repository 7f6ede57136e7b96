//! A network's zone from its snapshot: the hosts are its authorized
//! members, the services theirs.

use std::net::IpAddr;

use warren_proto::service::ServiceRecord;

use super::zone::{records, ZoneError, ZoneRecords};
use crate::store::{Member, MemberState, NetworkSnapshot};

/// The services of authorized members, with their names, sorted: what the
/// netmap carries and the zone serves.
pub fn service_records(snapshot: &NetworkSnapshot) -> Vec<ServiceRecord> {
    let mut records: Vec<ServiceRecord> = snapshot
        .services
        .iter()
        .filter_map(|s| {
            let member = snapshot
                .members
                .iter()
                .find(|m| m.node_id == s.node_id && m.state == MemberState::Authorized)?;
            Some(ServiceRecord {
                member: member.name.clone()?,
                node_id: member.node_id,
                service: s.spec.clone(),
            })
        })
        .collect();
    records.sort();
    records
}

/// The zone of the snapshot's network.
pub fn build(snapshot: &NetworkSnapshot) -> Result<ZoneRecords, ZoneError> {
    let network = &snapshot.network;
    // SOA serials are 32 bits; netmap versions only grow, so wrapping keeps
    // serial arithmetic (RFC 1982) moving forwards.
    let serial = network.netmap_version as u32;
    let hosts = snapshot
        .members
        .iter()
        .filter(|m| m.state == MemberState::Authorized)
        .filter_map(Member::assigned)
        .flat_map(|(name, v4, v6)| [(name, IpAddr::V4(v4)), (name, IpAddr::V6(v6))]);
    records(&network.zone, serial, hosts, &service_records(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::TTL;
    use crate::store::{Member, Network, Service};
    use hickory_server::proto::rr::rdata::{A, AAAA};
    use hickory_server::proto::rr::{RData, RecordType};
    use warren_proto::service::{ServiceProto, ServiceSpec};
    use warren_proto::{NetworkId, NodeId, NodePrivateKey};

    fn member(seed: u8, name: &str, state: MemberState) -> Member {
        let net: NetworkId = "8056c2e21c000001".parse().unwrap();
        let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
        let node_id = NodeId::from_key(&key);
        Member {
            network_id: net,
            node_id,
            name: Some(name.into()),
            requested_name: String::new(),
            public_key: key,
            ipv4: Some(std::net::Ipv4Addr::new(10, 147, 0, seed)),
            ipv6: Some(net.ula_address(&node_id)),
            authorized: state == MemberState::Authorized,
            state,
            online: false,
            last_seen: None,
            endpoints: vec![],
            agent_version: String::new(),
            created_at: String::new(),
            owner: None,
            owner_groups: Vec::new(),
            expires_at: None,
            expired: false,
        }
    }

    fn snapshot(members: Vec<Member>, services: Vec<Service>) -> NetworkSnapshot {
        let id: NetworkId = "8056c2e21c000001".parse().unwrap();
        NetworkSnapshot {
            network: Network {
                id,
                name: "prod".into(),
                pool: "10.147.0.0/16".parse().unwrap(),
                ipv6_prefix: id.ula_prefix(),
                zone: "prod.warren.internal".into(),
                mtu: 1420,
                netmap_version: 42,
                device_expiry_secs: 0,
                created_at: String::new(),
            },
            members,
            services,
            routes: Vec::new(),
            policy: Default::default(),
            sites: Default::default(),
        }
    }

    fn service(m: &Member, name: &str, port: u16, txt: &[&str]) -> Service {
        Service {
            node_id: m.node_id,
            spec: ServiceSpec {
                name: name.into(),
                proto: ServiceProto::Tcp,
                port,
                txt: txt.iter().map(|t| t.to_string()).collect(),
            },
        }
    }

    fn find<'a>(zone: &'a ZoneRecords, name: &str, rtype: RecordType) -> Vec<&'a RData> {
        zone.records
            .iter()
            .filter(|r| r.name.to_ascii() == name && r.record_type() == rtype)
            .map(|r| &r.data)
            .collect()
    }

    #[test]
    fn authorized_members_get_a_and_aaaa_and_others_nothing() {
        let web = member(1, "web", MemberState::Authorized);
        let db = member(2, "db", MemberState::Authorized);
        let pending = member(3, "new", MemberState::Pending);
        let revoked = member(4, "gone", MemberState::Revoked);
        let zone = build(&snapshot(vec![web.clone(), db, pending, revoked], vec![])).unwrap();
        assert_eq!(zone.origin.to_ascii(), "prod.warren.internal.");
        assert_eq!(zone.serial, 42);
        let a = find(&zone, "web.prod.warren.internal.", RecordType::A);
        assert_eq!(a, vec![&RData::A(A(web.ipv4.unwrap()))]);
        let aaaa = find(&zone, "web.prod.warren.internal.", RecordType::AAAA);
        assert_eq!(aaaa, vec![&RData::AAAA(AAAA(web.ipv6.unwrap()))]);
        assert_eq!(
            find(&zone, "db.prod.warren.internal.", RecordType::A).len(),
            1
        );
        assert!(find(&zone, "new.prod.warren.internal.", RecordType::A).is_empty());
        assert!(find(&zone, "gone.prod.warren.internal.", RecordType::AAAA).is_empty());
        let soa = find(&zone, "prod.warren.internal.", RecordType::SOA);
        let RData::SOA(soa) = soa[0] else {
            panic!("no SOA")
        };
        assert_eq!(soa.serial, 42);
        assert_eq!(soa.minimum, TTL);
        // SOA + 2 authorized members x (A + AAAA).
        assert_eq!(zone.records.len(), 5);
    }

    #[test]
    fn services_of_authorized_members_become_srv_and_txt() {
        let web = member(1, "web", MemberState::Authorized);
        let web2 = member(2, "web-2", MemberState::Authorized);
        let pending = member(3, "new", MemberState::Pending);
        let services = vec![
            service(&web, "http", 80, &["path=/"]),
            service(&web2, "http", 8080, &[]),
            service(&pending, "ssh", 22, &[]),
        ];
        let snap = snapshot(vec![web, web2, pending], services);
        let records = service_records(&snap);
        assert_eq!(
            records.len(),
            2,
            "the pending member's service is not served"
        );
        let zone = build(&snap).unwrap();
        let srv = find(&zone, "_http._tcp.prod.warren.internal.", RecordType::SRV);
        let mut targets: Vec<(u16, String)> = srv
            .iter()
            .map(|r| match r {
                RData::SRV(s) => (s.port, s.target.to_ascii()),
                _ => unreachable!(),
            })
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            vec![
                (80, "web.prod.warren.internal.".to_owned()),
                (8080, "web-2.prod.warren.internal.".to_owned())
            ]
        );
        let txt = find(&zone, "_http._tcp.prod.warren.internal.", RecordType::TXT);
        assert_eq!(txt.len(), 1);
        assert!(find(&zone, "_ssh._tcp.prod.warren.internal.", RecordType::SRV).is_empty());
    }
}
