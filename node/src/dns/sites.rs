//! A site's own names through the mesh: `<name>.<site>.<zone>` is asked of
//! the site's DNS server (for example a cluster's at 10.96.0.10) as
//! `<name>.<domain>`, over UDP through the overlay (the OS routes the
//! server's address, or its mapped one, to the site's router). The answer
//! comes back renamed under `<site>.<zone>`: owner names, and CNAME and SRV
//! targets under `<domain>`; A records inside a mapped prefix of the site
//! become the mapped address. A truncated answer is asked again over TCP.
//! No answer within [`TIMEOUT`], or a bad one, is SERVFAIL.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_server::proto::rr::rdata::{A, CNAME, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use rand_core::RngCore;
use tokio::net::UdpSocket;
use warren_proto::netmap::Netmap;
use warren_proto::site::{MappedPrefix, Site};

use super::handler::{SiteAnswer, SiteResolver};

/// How long the site's server has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The port site DNS servers answer on.
const DNS_PORT: u16 = 53;
/// The EDNS buffer offered upstream (the stub answers within it).
const UPSTREAM_PAYLOAD: u16 = 1232;

/// What a network's netmap says of one site's DNS, as the stub uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteView {
    /// `<site>.<zone>.`
    pub origin: Name,
    /// `<domain>.`
    pub domain: Name,
    /// Where to ask: the server's mapped address if it has one and this
    /// node is not the site's router, else its own.
    pub server: SocketAddr,
    pub mapped: Vec<MappedPrefix>,
}

impl SiteView {
    /// The sites of `map` that declared DNS; a site whose names do not
    /// parse is left out (logged).
    pub fn of(map: &Netmap) -> Vec<SiteView> {
        map.settings
            .sites
            .iter()
            .filter_map(|site| {
                let view = SiteView::of_site(site, &map.dns.zone, map.self_node.node_id);
                if view.is_none() && site.dns.is_some() {
                    tracing::debug!(site = %site.name, "site DNS names do not parse; not forwarded");
                }
                view
            })
            .collect()
    }

    fn of_site(site: &Site, zone: &str, me: warren_proto::NodeId) -> Option<SiteView> {
        let dns = site.dns.as_ref()?;
        let origin = fqdn(&format!("{}.{}", site.name, zone))?;
        let domain = fqdn(&dns.domain)?;
        let server = if site.routers.contains(&me) {
            dns.server
        } else {
            mapped_server(dns.server, &site.mapped)
        };
        Some(SiteView {
            origin,
            domain,
            server: SocketAddr::new(server, DNS_PORT),
            mapped: site.mapped.clone(),
        })
    }

    pub fn lower_origin(&self) -> LowerName {
        LowerName::from(&self.origin)
    }
}

fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text.trim_end_matches('.')).ok()?;
    name.set_fqdn(true);
    (!name.is_root()).then_some(name)
}

/// The address the server is reached at from outside its site: mapped
/// if it falls in one of the site's mapped real prefixes.
pub fn mapped_server(server: IpAddr, mapped: &[MappedPrefix]) -> IpAddr {
    match server {
        IpAddr::V4(v4) => mapped
            .iter()
            .find_map(|m| m.to_mapped(v4))
            .map_or(server, IpAddr::V4),
        IpAddr::V6(_) => server,
    }
}

/// `name` (under `from`) moved under `to`: its labels below `from`, then `to`.
fn rename(name: &Name, from: &Name, to: &Name) -> Option<Name> {
    if !from.zone_of(name) {
        return None;
    }
    let keep = usize::from(name.num_labels().checked_sub(from.num_labels())?);
    let head = Name::from_labels(name.iter().take(keep)).ok()?;
    head.append_domain(to).ok()
}

/// Forwards one site's names to its server.
pub struct SiteForwarder {
    view: SiteView,
    timeout: Duration,
}

impl SiteForwarder {
    pub fn new(view: SiteView) -> SiteForwarder {
        SiteForwarder {
            view,
            timeout: TIMEOUT,
        }
    }

    /// The question for the site's server; `None` for a name that is not
    /// under the site.
    fn outgoing(&self, name: &Name) -> Option<Name> {
        rename(name, &self.view.origin, &self.view.domain)
    }

    async fn exchange(&self, query: &Message) -> std::io::Result<Message> {
        let server = self.view.server;
        let bind: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        // Unmarked: the OS routes it into the overlay, to the site's router.
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(server).await?;
        let bytes = query
            .to_vec()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        socket.send(&bytes).await?;
        let mut buf = vec![0u8; usize::from(UPSTREAM_PAYLOAD).max(4096)];
        loop {
            // A connected socket only hears from the server; a datagram that
            // is not the answer (wrong ID, garbage) is skipped, not trusted.
            let n = socket.recv(&mut buf).await?;
            let Ok(answer) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if answer.metadata.id == query.metadata.id && answer.queries == query.queries {
                if answer.metadata.truncation {
                    return self.exchange_tcp(&bytes).await;
                }
                return Ok(answer);
            }
        }
    }

    /// The same question over TCP, for an answer too large for UDP.
    async fn exchange_tcp(&self, query: &[u8]) -> std::io::Result<Message> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.view.server).await?;
        let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await?;
        let answer = Message::from_vec(&buf).map_err(|e| std::io::Error::other(e.to_string()))?;
        let asked = Message::from_vec(query).map_err(|e| std::io::Error::other(e.to_string()))?;
        if answer.metadata.id != asked.metadata.id || answer.queries != asked.queries {
            return Err(std::io::Error::other("a TCP answer to another question"));
        }
        Ok(answer)
    }

    /// The server's answer, renamed and mapped back.
    fn rewrite(&self, answer: Message) -> SiteAnswer {
        let code = match answer.metadata.response_code {
            ResponseCode::NoError => ResponseCode::NoError,
            ResponseCode::NXDomain => ResponseCode::NXDomain,
            _ => ResponseCode::ServFail,
        };
        let fix = |records: Vec<Record>| -> Vec<Record> {
            records
                .into_iter()
                .filter_map(|r| self.rewrite_record(r))
                .collect()
        };
        SiteAnswer {
            code,
            answers: fix(answer.answers),
            additionals: fix(answer.additionals),
        }
    }

    fn rewrite_record(&self, mut record: Record) -> Option<Record> {
        let (from, to) = (&self.view.domain, &self.view.origin);
        if record.record_type() == RecordType::OPT {
            return None;
        }
        if let Some(name) = rename(&record.name, from, to) {
            record.name = name;
        }
        record.data = match record.data {
            RData::A(A(ip)) => RData::A(A(self
                .view
                .mapped
                .iter()
                .find_map(|m| m.to_mapped(ip))
                .unwrap_or(ip))),
            RData::CNAME(CNAME(target)) => {
                RData::CNAME(CNAME(rename(&target, from, to).unwrap_or(target)))
            }
            RData::SRV(srv) => {
                let target = rename(&srv.target, from, to).unwrap_or(srv.target.clone());
                RData::SRV(SRV::new(srv.priority, srv.weight, srv.port, target))
            }
            other => other,
        };
        Some(record)
    }
}

#[async_trait::async_trait]
impl SiteResolver for SiteForwarder {
    async fn resolve(&self, name: &Name, rtype: RecordType) -> Option<SiteAnswer> {
        let outgoing = self.outgoing(name)?;
        let mut query = Message::query();
        // Random: an off-path spoofer has to guess it (and the port).
        query.metadata.id = (rand_core::OsRng.next_u32() & 0xffff) as u16;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(outgoing, rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        query.set_edns(edns);
        match tokio::time::timeout(self.timeout, self.exchange(&query)).await {
            Ok(Ok(answer)) => Some(self.rewrite(answer)),
            Ok(Err(e)) => {
                tracing::debug!(server = %self.view.server, error = %e, "site DNS server unreachable");
                None
            }
            Err(_) => {
                tracing::debug!(server = %self.view.server, "site DNS server did not answer in time");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
