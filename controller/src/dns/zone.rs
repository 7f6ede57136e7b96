//! One network's DNS zone from its hosts and services (pure, no store):
//! SOA, A/AAAA per host, SRV/TXT per service, and the in-memory handler
//! that serves it. [`super::snapshot`] picks the hosts and services from a
//! network's snapshot. The fuzz targets build this file as it is.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, ZoneHandler, ZoneType};
use warren_proto::service::ServiceRecord;

/// TTL of every record: short, so a rename or revocation reaches caches fast.
pub const TTL: u32 = 10;

/// The records of one zone, ready to load into a zone handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecords {
    pub origin: Name,
    pub serial: u32,
    pub records: Vec<Record>,
}

/// Why a network's zone could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    #[error("{0:?} is not a DNS name")]
    BadName(String),
}

/// Builds a zone from its hosts and services; shared shape with the agent's stub.
pub fn records<'a>(
    zone: &str,
    serial: u32,
    hosts: impl IntoIterator<Item = (&'a str, IpAddr)>,
    services: &[ServiceRecord],
) -> Result<ZoneRecords, ZoneError> {
    let origin = fqdn(zone)?;
    let mut out = vec![soa(&origin, serial)?];
    for (name, ip) in hosts {
        let Ok(owner) = fqdn(&format!("{name}.{zone}")) else {
            // A name the store let through that DNS cannot carry: skip it,
            // not the whole zone.
            continue;
        };
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        out.push(Record::from_rdata(owner, TTL, data));
    }
    for s in services {
        let (Ok(owner), Ok(target)) = (
            fqdn(&format!("{}.{zone}", s.service.label())),
            fqdn(&format!("{}.{zone}", s.member)),
        ) else {
            continue;
        };
        let srv = SRV::new(0, 0, s.service.port, target);
        out.push(Record::from_rdata(owner.clone(), TTL, RData::SRV(srv)));
        if !s.service.txt.is_empty() {
            let txt = TXT::new(s.service.txt.clone());
            out.push(Record::from_rdata(owner, TTL, RData::TXT(txt)));
        }
    }
    Ok(ZoneRecords {
        origin,
        serial,
        records: out,
    })
}

fn fqdn(text: &str) -> Result<Name, ZoneError> {
    let mut name = Name::from_ascii(text).map_err(|_| ZoneError::BadName(text.to_owned()))?;
    name.set_fqdn(true);
    Ok(name)
}

fn soa(origin: &Name, serial: u32) -> Result<Record, ZoneError> {
    let at = |label: &str| {
        Name::from_ascii(label)
            .and_then(|l| l.append_domain(origin))
            .map_err(|_| ZoneError::BadName(format!("{label}.{origin}")))
    };
    let soa = SOA::new(at("ns")?, at("hostmaster")?, serial, 3600, 600, 86400, TTL);
    Ok(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)))
}

/// An in-memory primary zone serving `zone`'s records, refusing
/// transfers, and its origin.
pub fn load(zone: ZoneRecords) -> (LowerName, Arc<dyn ZoneHandler>) {
    let origin = LowerName::new(&zone.origin);
    let mut handler =
        InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::empty(
            zone.origin,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
    for record in zone.records {
        handler.upsert_mut(record, zone.serial);
    }
    (origin, Arc::new(handler))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_zone_name_is_an_error_and_a_bad_host_is_skipped() {
        let hosts = [
            ("ok", IpAddr::from([10, 0, 0, 1])),
            ("x..y", IpAddr::from([10, 0, 0, 2])),
        ];
        let zone = records("lab.internal", 1, hosts, &[]).unwrap();
        assert_eq!(zone.records.len(), 2);
        assert!(records("bad..zone", 1, [], &[]).is_err());
    }
}
