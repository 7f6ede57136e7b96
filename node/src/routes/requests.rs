//! Local-API requests for routes and exit nodes, answered by the event loop
//! (which owns [`Routes`]). A change returns [`Effects`] for the daemon to
//! carry out (re-apply netmaps so the engines route anew, tell the
//! controller what is advertised) before it answers with the new status.

use std::collections::BTreeSet;

use ipnet::IpNet;
use tokio::sync::oneshot;
use warren_proto::routes::{
    check_prefix, is_exit, overlaps, AcceptRequest, AdvertiseMode, AdvertiseRequest,
    ExitNodeRequest, MasqueradeRequest, RoutesStatus, MAX_ADVERTISED,
};
use warren_proto::site::{check_site_name, SiteDns, SiteSpec};
use warren_proto::NetworkId;

use super::settings::ExitChoice;
use super::{Advertised, Routes};
use crate::daemon::{refusal, Refusal};

pub type Reply = oneshot::Sender<Result<RoutesStatus, Refusal>>;

pub enum RoutesRequest {
    Status(oneshot::Sender<RoutesStatus>),
    Advertise(AdvertiseRequest, Reply),
    Accept(AcceptRequest, Reply),
    Masquerade(MasqueradeRequest, Reply),
    /// `None`: stop using an exit node.
    ExitNode(Option<ExitNodeRequest>, Reply),
}

/// What the daemon must do after a change.
#[derive(Debug, Default)]
pub struct Effects {
    /// Networks whose netmaps to apply again: their engines' routes changed.
    pub reapply: BTreeSet<NetworkId>,
    /// A network's whole advertised list and its site, for its controller.
    pub advertise: Option<(NetworkId, Advertised)>,
}

impl Routes {
    /// Carries out a change; the caller applies `Effects` and then answers
    /// `reply` with [`Routes::status`] (or the refusal).
    pub fn handle(
        &mut self,
        request: RoutesRequest,
        joined: &[NetworkId],
    ) -> Option<(Reply, Result<Effects, Refusal>)> {
        match request {
            RoutesRequest::Status(_) => None,
            RoutesRequest::Advertise(req, reply) => Some((reply, self.advertise(req, joined))),
            RoutesRequest::Accept(req, reply) => Some((reply, self.accept(req, joined))),
            RoutesRequest::Masquerade(req, reply) => {
                self.settings.masquerade = req.masquerade;
                self.save();
                Some((reply, Ok(Effects::default())))
            }
            RoutesRequest::ExitNode(req, reply) => Some((reply, self.exit_node(req, joined))),
        }
    }

    fn advertise(
        &mut self,
        req: AdvertiseRequest,
        joined: &[NetworkId],
    ) -> Result<Effects, Refusal> {
        let id = pick_network(req.network, joined)?;
        for prefix in &req.routes {
            check_prefix(prefix).map_err(|e| refusal(400, "bad_route", e.to_string()))?;
            if let Some(view) = self.views.get(&id) {
                let own = view.map.self_node.addresses.iter().map(IpNet::trunc);
                if let Some(o) = own
                    .into_iter()
                    .find(|o| !is_exit(prefix) && overlaps(prefix, o))
                {
                    return Err(refusal(
                        400,
                        "bad_route",
                        format!("{prefix} overlaps the network's overlay prefix {o}"),
                    ));
                }
            }
        }
        let site = match &req.site {
            Some(spec) => Some(check_site(spec)?),
            None => None,
        };
        if site.is_some() && req.no_site {
            return Err(refusal(
                400,
                "bad_site",
                "a request may set a site or clear it, not both",
            ));
        }
        let choice = self.settings.network(&id);
        let mut wanted = choice.advertise;
        match req.mode {
            AdvertiseMode::Add => wanted.extend(req.routes.iter().copied()),
            AdvertiseMode::Remove => {
                for prefix in &req.routes {
                    wanted.remove(prefix);
                }
            }
            AdvertiseMode::Replace => wanted = req.routes.iter().copied().collect(),
        }
        if wanted.len() > MAX_ADVERTISED {
            return Err(refusal(
                400,
                "bad_route",
                format!("at most {MAX_ADVERTISED} routes per network"),
            ));
        }
        // A site is a property of what is advertised: nothing, no site.
        let site = match (site, req.no_site) {
            _ if wanted.is_empty() => None,
            (Some(site), _) => Some(site),
            (None, true) => None,
            (None, false) => choice.site,
        };
        let entry = self.settings.networks.entry(id).or_default();
        entry.advertise = wanted;
        entry.site = site;
        let advertised = self.settings.advertised_with_site(&id);
        self.save();
        tracing::info!(network = %id, routes = ?advertised.routes, site = ?advertised.site.as_ref().map(|s| &s.name), "advertising routes");
        Ok(Effects {
            reapply: [id].into(),
            advertise: Some((id, advertised)),
        })
    }

    fn accept(&mut self, req: AcceptRequest, joined: &[NetworkId]) -> Result<Effects, Refusal> {
        let nets: Vec<NetworkId> = match req.network {
            Some(id) if joined.contains(&id) => vec![id],
            Some(id) => return Err(not_joined(id)),
            None if joined.is_empty() => {
                return Err(refusal(404, "not_joined", "no network is joined"))
            }
            None => joined.to_vec(),
        };
        for id in &nets {
            self.settings.networks.entry(*id).or_default().accept = req.accept;
        }
        self.save();
        tracing::info!(networks = ?nets, accept = req.accept, "accepting subnet routes");
        Ok(Effects {
            reapply: nets.into_iter().collect(),
            advertise: None,
        })
    }

    fn exit_node(
        &mut self,
        req: Option<ExitNodeRequest>,
        joined: &[NetworkId],
    ) -> Result<Effects, Refusal> {
        let mut reapply: BTreeSet<NetworkId> =
            self.settings.exit_node.iter().map(|e| e.network).collect();
        let Some(req) = req else {
            self.settings.exit_node = None;
            self.save();
            tracing::info!("exit node off");
            return Ok(Effects {
                reapply,
                advertise: None,
            });
        };
        for prefix in &req.exclude {
            check_prefix(prefix).map_err(|e| refusal(400, "bad_route", e.to_string()))?;
        }
        let query = req.peer.trim().trim_end_matches('.');
        let ip: Option<std::net::IpAddr> = query.parse().ok();
        let mut found = None;
        for (id, view) in &self.views {
            if req.network.is_some_and(|n| n != *id) || !joined.contains(id) {
                continue;
            }
            let map = &view.map;
            if let Some(p) = map.peers.iter().find(|p| {
                p.name == query
                    || format!("{}.{}", p.name, map.dns.zone) == query
                    || p.node_id.to_string() == query
                    || ip.is_some_and(|ip| p.addresses.iter().any(|a| a.addr() == ip))
            }) {
                found = Some((*id, p.clone()));
                break;
            }
        }
        let Some((network, peer)) = found else {
            return Err(refusal(
                404,
                "unknown_peer",
                format!("no peer matches {query:?} in a network that is up"),
            ));
        };
        if !peer.routes.iter().any(is_exit) {
            return Err(refusal(
                409,
                "not_an_exit_node",
                format!(
                    "{} offers no approved exit route: it must advertise 0.0.0.0/0 (and ::/0), and an admin approve it",
                    peer.name
                ),
            ));
        }
        self.settings.exit_node = Some(ExitChoice {
            network,
            node_id: peer.node_id,
            exclude: req.exclude.iter().copied().collect(),
        });
        self.save();
        reapply.insert(network);
        tracing::info!(network = %network, peer = %peer.name, exclude = ?req.exclude, "using exit node");
        Ok(Effects {
            reapply,
            advertise: None,
        })
    }
}

/// A site as the user gave it, checked: a DNS label for a name, and for
/// its DNS a domain (lowercased, without the final dot) and a server that
/// can be asked.
fn check_site(spec: &SiteSpec) -> Result<SiteSpec, Refusal> {
    check_site_name(&spec.name).map_err(|e| refusal(400, "bad_site", e.to_string()))?;
    let dns = match &spec.dns {
        None => None,
        Some(dns) => {
            let domain = dns.domain.trim_end_matches('.').to_ascii_lowercase();
            let valid = hickory_server::proto::rr::Name::from_ascii(&domain)
                .is_ok_and(|n| !n.is_root() && n.num_labels() >= 1)
                && !domain.is_empty()
                && domain.len() <= 253;
            if !valid {
                return Err(refusal(
                    400,
                    "bad_site",
                    format!(
                        "DNS domain {:?} is not a domain name",
                        warren_proto::text::printable(&dns.domain)
                    ),
                ));
            }
            let server = dns.server;
            if server.is_unspecified() || server.is_multicast() || server.is_loopback() {
                return Err(refusal(
                    400,
                    "bad_site",
                    format!("DNS server {server} cannot be asked through the mesh"),
                ));
            }
            Some(SiteDns { domain, server })
        }
    };
    Ok(SiteSpec {
        name: spec.name.clone(),
        dns,
    })
}

fn not_joined(id: NetworkId) -> Refusal {
    refusal(404, "not_joined", format!("network {id} is not joined"))
}

/// The network a request means: the one named, or the only one joined.
fn pick_network(asked: Option<NetworkId>, joined: &[NetworkId]) -> Result<NetworkId, Refusal> {
    match (asked, joined) {
        (Some(id), _) if joined.contains(&id) => Ok(id),
        (Some(id), _) => Err(not_joined(id)),
        (None, [only]) => Ok(*only),
        (None, []) => Err(refusal(404, "not_joined", "no network is joined")),
        (None, _) => Err(refusal(
            400,
            "network_required",
            "several networks are joined: say which with --network",
        )),
    }
}
