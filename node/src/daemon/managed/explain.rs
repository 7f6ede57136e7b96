//! `warren explain`: what this node's compiled policy does with a new flow
//! to a destination, answered by the engine that enforces it.

use std::net::IpAddr;

use warren_proto::filter::{PortRange, Protocol};
use warren_proto::local_api::ExplainReply;

use super::super::{refusal, Refusal};
use super::Managed;

impl Managed {
    /// Explains a new flow to `to` (an address, or a peer's name or FQDN)
    /// on `port` (one port, `icmp` or `*`).
    pub async fn explain(&self, to: &str, port: PortRange) -> Result<ExplainReply, Refusal> {
        if matches!(port.protocol, Protocol::Tcp | Protocol::Udp) && port.first != port.last {
            return Err(refusal(
                400,
                "bad_port",
                format!("{port}: name one port, such as tcp:6379"),
            ));
        }
        let to = to.trim().trim_end_matches('.');
        let addresses = self.addresses_of(to);
        if addresses.is_empty() {
            return Err(refusal(
                404,
                "unknown_destination",
                format!("{to:?} is neither an address nor a peer's name"),
            ));
        }
        for (id, net) in &self.nets {
            let Some(runner) = &net.runner else {
                continue;
            };
            for dst in &addresses {
                let Some(found) = runner.explain(*dst, port.protocol, port.first).await else {
                    continue;
                };
                let peer = net
                    .netmap
                    .as_ref()
                    .and_then(|m| m.peers.iter().find(|p| p.public_key == found.peer))
                    .map_or_else(|| found.peer.to_string(), |p| p.name.clone());
                return Ok(ExplainReply {
                    network: id.to_string(),
                    peer,
                    src: found.src,
                    dst: *dst,
                    port: port.to_string(),
                    verdict: found.explanation.verdict,
                    rule: found.explanation.rule,
                    policy_version: found.stats.policy_version,
                    recent_drops: found.stats.recent_drops,
                });
            }
        }
        Err(refusal(
            404,
            "no_route",
            format!("no peer of a joined network routes {to}"),
        ))
    }

    /// `to` as an address, or the addresses of the peers it names (IPv4 first).
    fn addresses_of(&self, to: &str) -> Vec<IpAddr> {
        if let Ok(ip) = to.parse() {
            return vec![ip];
        }
        let mut found: Vec<IpAddr> = self
            .nets
            .values()
            .filter_map(|n| n.netmap.as_ref())
            .flat_map(|m| {
                m.peers
                    .iter()
                    .filter(|p| p.name == to || format!("{}.{}", p.name, m.dns.zone) == to)
                    .flat_map(|p| p.addresses.iter().map(|a| a.addr()))
                    .collect::<Vec<_>>()
            })
            .collect();
        found.sort_by_key(|a| !a.is_ipv4());
        found
    }
}
