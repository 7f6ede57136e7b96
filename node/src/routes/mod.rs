//! Subnet routes and exit nodes on the agent: what this node advertises,
//! the peers' routes it accepts (into the engines and into Warren's own
//! routing table, with policy rules as wg-quick has them), the exit node it
//! uses, and the stateful filter that keeps a subnet router from becoming
//! a way from its LAN into the overlay.
//!
//! - [`settings`]: the user's choices, in `STATE_DIR/routes.json`.
//! - [`plan`]: what the system should hold, from choices and netmaps (pure).
//! - [`system`]: Warren's routing table and rules, through `ip`.
//! - [`nft`]: the filter, table `inet warren`, through `nft -f -`.
//! - [`os`]: the seam to both ([`os::RouteOs`]), with a fake for tests.
//! - [`requests`], [`local_api`]: `warren routes` and `warren exit-node`.
//!
//! Before it changes anything the agent writes `STATE_DIR/routes-installed.json`;
//! a clean stop removes what it installed and the file. Finding the file at
//! start means a crash: everything Warren's table, rules and filter hold is
//! removed before cached netmaps bring the networks back.
//!
//! The daemon calls [`Routes::network_up`] after applying a netmap,
//! [`Routes::network_down`] when a network goes, [`Routes::shutdown`] on a
//! clean stop, and [`Routes::engine_routes`] for the routes each engine
//! sends to each peer.

pub mod local_api;
pub mod nft;
pub mod os;
pub mod plan;
pub mod requests;
pub mod settings;
pub mod system;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use warren_proto::netmap::Netmap;
use warren_proto::routes::{
    AdvertisedRoute, AdvertisedState, FilterStatus, NetworkRoutes, RoutesStatus,
};
use warren_proto::site::{MappedPrefix, SiteSpec};
use warren_proto::{NetworkId, NodePublicKey};

use os::{HostRoutes, RouteOs};
pub use plan::FWMARK;
use plan::{NetInput, Plan};
pub use requests::RoutesRequest;
use settings::{Settings, SettingsFile};

/// What this node advertises in one network, for its controller: the
/// routes and the site they are for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertised {
    pub routes: Vec<IpNet>,
    pub site: Option<SiteSpec>,
}

/// One network that is up, as the routes see it.
struct View {
    interface: String,
    map: Netmap,
    controller_ips: Vec<IpAddr>,
}

/// What a crash may have left behind, for the next start to remove.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Installed {
    table: Vec<(IpNet, String)>,
    rules: Vec<String>,
    firewall: bool,
}

pub struct Routes {
    /// `None`: inert (before the daemon starts the real one).
    files: Option<(SettingsFile, PathBuf)>,
    settings: Settings,
    views: BTreeMap<NetworkId, View>,
    /// The plan in force, and the filter script applied with it.
    applied: Option<(Plan, Option<String>)>,
    error: Option<String>,
    /// Why the filter could not be installed: until it can, no route is
    /// installed or advertised (fail closed).
    filter_failed: Option<String>,
    /// Where routes, rules and the filter are installed.
    os: Arc<dyn RouteOs>,
}

/// The addresses a controller (`HOST:PORT`) is reached at: the literal, or
/// where the connection went.
pub fn controller_ips(controller: &str, connected: Option<&IpAddr>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = controller
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .into_iter()
        .chain(connected.copied())
        .map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Marks a socket of the agent's with [`FWMARK`], so policy routing sends
/// its packets by the main table, never into a tunnel. Without
/// CAP_NET_ADMIN it stays unmarked (then no route is installed either).
pub fn mark_socket(socket: &impl std::os::fd::AsRawFd) {
    if let Err(e) = crate::platform::sockopt::set_mark(socket, FWMARK) {
        tracing::debug!(error = %e, "could not mark socket");
    }
}

/// Ports above the base port that joined networks may listen on.
pub const LISTEN_SLOTS: u16 = 16;

static LISTEN_BASE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

/// Tells [`marked_udp_socket`] which ports the networks listen on. The
/// kernel's ephemeral range (32768-60999) includes the default 51820, so a
/// control connection's socket could take a port that a network joined
/// later then cannot bind.
pub fn reserve_listen_ports(base: u16) {
    let _ = LISTEN_BASE.set(base);
}

fn in_listen_slots(base: u16, port: u16) -> bool {
    port >= base && u32::from(port) < u32::from(base) + u32::from(LISTEN_SLOTS)
}

/// A UDP socket bound to `bind` and marked (for the QUIC control
/// connections). Bound to port 0, it never gets a reserved listen port.
pub fn marked_udp_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    // Sockets that drew a reserved port stay open until one does not, so
    // the kernel cannot hand the same port out again.
    let mut held = Vec::new();
    for _ in 0..8 {
        let socket = std::net::UdpSocket::bind(bind)?;
        let port = socket.local_addr()?.port();
        let reserved = bind.port() == 0
            && LISTEN_BASE
                .get()
                .is_some_and(|&base| in_listen_slots(base, port));
        if !reserved {
            mark_socket(&socket);
            return Ok(socket);
        }
        held.push(socket);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "every ephemeral port drawn was a network's listen port",
    ))
}

impl Routes {
    /// Nothing at all: before the daemon sets the real one.
    pub fn off() -> Routes {
        Routes {
            files: None,
            settings: Settings::default(),
            views: BTreeMap::new(),
            applied: None,
            error: None,
            filter_failed: None,
            os: Arc::new(HostRoutes),
        }
    }

    /// Why routes are withheld, if they are: the filter failed.
    pub fn withheld(&self) -> Option<String> {
        self.filter_failed
            .as_ref()
            .map(|e| format!("no route installed or advertised: the nftables filter failed ({e})"))
    }

    /// Whether the routes network `id` should have are in force: its
    /// accepted peer routes and exit node, and the routes it advertises.
    /// Nothing to say for a network that is not up or needs none.
    pub fn effect(&self, id: NetworkId) -> warren_proto::local_api::Effect {
        use warren_proto::local_api::Effect;
        let Some(view) = self.views.get(&id) else {
            return Effect::default();
        };
        let plan = plan::plan(&self.inputs(None), &self.settings);
        let needs = plan.table.values().any(|dev| *dev == view.interface)
            || !self.settings.advertised(&id).is_empty();
        match (needs, self.withheld(), &self.error) {
            (false, _, _) => Effect::default(),
            (true, Some(withheld), _) => Effect::failed(withheld),
            (true, None, Some(e)) => Effect::failed(format!("routes not fully applied: {e}")),
            (true, None, None) => Effect::applied(),
        }
    }

    /// Loads the settings and removes what a crashed run left installed.
    pub async fn start(state_dir: &Path) -> Routes {
        Routes::start_on(state_dir, Arc::new(HostRoutes)).await
    }

    /// [`Routes::start`] on another system (a fake, in tests).
    pub async fn start_on(state_dir: &Path, os: Arc<dyn RouteOs>) -> Routes {
        let file = SettingsFile::new(state_dir);
        let settings = match file.load() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "route settings unreadable; accepting and advertising nothing until they are set again");
                Settings::default()
            }
        };
        let marker = state_dir.join("routes-installed.json");
        let mut routes = Routes {
            files: Some((file, marker.clone())),
            settings,
            os,
            ..Routes::off()
        };
        if marker.exists() {
            tracing::info!(path = %marker.display(), "removing routes, rules and filter left by a previous run");
            routes.clear().await;
        }
        routes
    }

    fn inputs<'a>(
        &'a self,
        replace: Option<(&'a Netmap, &'a str, &'a [IpAddr])>,
    ) -> Vec<NetInput<'a>> {
        let mut inputs: Vec<NetInput<'a>> = self
            .views
            .iter()
            .filter(|(id, _)| replace.is_none_or(|(m, _, _)| m.network_id != **id))
            .map(|(id, v)| NetInput {
                id: *id,
                interface: &v.interface,
                map: &v.map,
                controller_ips: &v.controller_ips,
            })
            .collect();
        if let Some((map, interface, controller_ips)) = replace {
            inputs.push(NetInput {
                id: map.network_id,
                interface,
                map,
                controller_ips,
            });
        }
        inputs
    }

    /// The prefixes beyond its addresses that the engine of `map`'s network
    /// routes to each peer, as they will be once `map` is applied.
    pub fn engine_routes(
        &self,
        map: &Netmap,
        interface: &str,
        controller_ips: &[IpAddr],
    ) -> BTreeMap<NodePublicKey, Vec<IpNet>> {
        if self.filter_failed.is_some() {
            return BTreeMap::new();
        }
        let inputs = self.inputs(Some((map, interface, controller_ips)));
        plan::plan(&inputs, &self.settings)
            .allowed
            .remove(&map.network_id)
            .unwrap_or_default()
    }

    /// A netmap was applied and the network's interface is up.
    pub async fn network_up(&mut self, map: &Netmap, interface: &str, controller_ips: Vec<IpAddr>) {
        self.views.insert(
            map.network_id,
            View {
                interface: interface.to_owned(),
                map: map.clone(),
                controller_ips,
            },
        );
        self.apply(false).await;
    }

    /// A network went down (left, revoked, refused).
    pub async fn network_down(&mut self, id: NetworkId) {
        if self.views.remove(&id).is_some() {
            self.apply(false).await;
        }
    }

    /// A left network's choices are forgotten.
    pub fn forget(&mut self, id: NetworkId) {
        if self.settings.forget(&id) {
            self.save();
        }
    }

    /// What this node advertises in each of `nets`, to send (again) to
    /// their controllers.
    /// Nothing while the filter is down: a subnet router or exit node
    /// without it would forward for anyone.
    pub fn advertised_for(&self, nets: &[NetworkId]) -> Vec<(NetworkId, Advertised)> {
        nets.iter()
            .filter(|id| self.settings.networks.contains_key(id))
            .map(|id| match self.filter_failed {
                Some(_) => (*id, Advertised::default()),
                None => (*id, self.settings.advertised_with_site(id)),
            })
            .collect()
    }

    /// Periodic: puts back whatever someone else removed.
    pub async fn tick(&mut self) {
        self.apply(true).await;
    }

    /// A clean stop: nothing of Warren's stays in the system.
    pub async fn shutdown(&mut self) {
        self.views.clear();
        self.clear().await;
    }

    fn save(&self) {
        if let Some((file, _)) = &self.files {
            if let Err(e) = file.save(&self.settings) {
                tracing::error!(error = %format!("{e:#}"), "could not save route settings");
            }
        }
    }

    /// Removes everything of Warren's from the system, and the marker.
    async fn clear(&mut self) {
        let Some((_, marker)) = &self.files else {
            return;
        };
        let marker = marker.clone();
        let mut errors = Vec::new();
        if let Err(e) = self.os.sync_table(&BTreeMap::new()).await {
            errors.push(format!("{e:#}"));
        }
        if let Err(e) = self.os.sync_rules(&Default::default()).await {
            errors.push(format!("{e:#}"));
        }
        if let Err(e) = self.os.delete_filter().await {
            errors.push(format!("{e:#}"));
        }
        self.applied = None;
        if errors.is_empty() {
            let _ = std::fs::remove_file(&marker);
            self.error = None;
        } else {
            let error = errors.join("; ");
            tracing::warn!(%error, "could not remove all routes, rules and filters");
            self.error = Some(error);
        }
    }

    /// Brings the system in line with the plan for the networks up now.
    /// Unless `force`, nothing runs when the plan did not change.
    async fn apply(&mut self, force: bool) {
        let Some((_, marker)) = &self.files else {
            return;
        };
        let marker = marker.clone();
        let plan = plan::plan(&self.inputs(None), &self.settings);
        let script = plan.firewall.as_ref().map(nft::script);
        if !force && self.applied.as_ref().is_some_and(|(p, _)| *p == plan) {
            return;
        }
        let empty = plan.table.is_empty() && plan.rules.is_empty() && plan.firewall.is_none();
        if empty && self.applied.is_none() {
            // Nothing installed since the last clear, and nothing to install.
            return;
        }
        let installed = Installed {
            table: plan.table.iter().map(|(p, d)| (*p, d.clone())).collect(),
            rules: plan.rules.iter().map(|r| r.args().join(" ")).collect(),
            firewall: script.is_some(),
        };
        if !empty {
            // Written first: a crash in the middle still leaves the marker.
            if let Err(e) = serde_json::to_vec_pretty(&installed)
                .map_err(anyhow::Error::from)
                .and_then(|text| crate::state::write_atomic(&marker, &text, 0o600))
            {
                tracing::warn!(error = %format!("{e:#}"), "could not record installed routes");
            }
        }
        let mut errors = Vec::new();
        // The filter first, and routes only once it holds: without it a
        // subnet router or exit node forwards for anyone (fail closed).
        let last_script = self.applied.as_ref().and_then(|(_, s)| s.clone());
        let filter = match &script {
            Some(text) if force || last_script.as_ref() != Some(text) => {
                self.os.apply_filter(text).await
            }
            Some(_) => Ok(()),
            None => {
                if let Err(e) = self.os.delete_filter().await {
                    errors.push(format!("{e:#}"));
                }
                Ok(())
            }
        };
        let (table, rules) = match filter {
            Ok(()) => {
                if self.filter_failed.take().is_some() {
                    tracing::info!(
                        "nftables filter installed: routes are installed and advertised again"
                    );
                }
                (plan.table.clone(), plan.rules.clone())
            }
            Err(e) => {
                let e = format!("{e:#}");
                if self.filter_failed.is_none() {
                    tracing::error!(error = %e, "nftables filter failed: installing and advertising no route until it works");
                }
                self.filter_failed = Some(e.clone());
                errors.push(e);
                Default::default()
            }
        };
        if let Err(e) = self.os.sync_table(&table).await {
            errors.push(format!("{e:#}"));
        }
        if let Err(e) = self.os.sync_rules(&rules).await {
            errors.push(format!("{e:#}"));
        }
        if plan.firewall.as_ref().is_some_and(|f| f.exit_client) {
            self.os.use_marks_for_reverse_path();
        }
        if errors.is_empty() {
            self.error = None;
        } else {
            let error = errors.join("; ");
            tracing::warn!(%error, "routes not fully applied");
            self.error = Some(error);
        }
        if empty && self.error.is_none() {
            let _ = std::fs::remove_file(&marker);
            self.applied = None;
        } else if self.filter_failed.is_some() {
            // Not in force: the next change or tick tries the filter again.
            self.applied = None;
        } else {
            self.applied = Some((plan, script));
        }
    }

    /// `warren routes list`.
    pub async fn status(&self, joined: &[NetworkId]) -> RoutesStatus {
        let plan = plan::plan(&self.inputs(None), &self.settings);
        let mut networks = Vec::new();
        for id in joined {
            let map = self.views.get(id).map(|v| &v.map);
            let advertised = self
                .settings
                .advertised(id)
                .into_iter()
                .map(|prefix| {
                    let known =
                        map.and_then(|m| m.self_node.routes.iter().find(|r| r.prefix == prefix));
                    let state = match (map, known) {
                        (None, _) => AdvertisedState::Unknown,
                        (Some(_), None) => AdvertisedState::Pending,
                        (Some(_), Some(r)) if r.primary => AdvertisedState::Primary,
                        (Some(_), Some(r)) if r.approved => AdvertisedState::Approved,
                        (Some(_), Some(_)) => AdvertisedState::Pending,
                    };
                    AdvertisedRoute { prefix, state }
                })
                .collect();
            let site = self.settings.site(id);
            networks.push(NetworkRoutes {
                network: *id,
                accept: self.settings.accepts(id),
                advertised,
                mapped: map.map(own_mapped).unwrap_or_default(),
                site,
                peer_routes: plan.peer_routes.get(id).cloned().unwrap_or_default(),
                exit_nodes: plan.exit_offers.get(id).cloned().unwrap_or_default(),
            });
        }
        RoutesStatus {
            networks,
            exit_node: plan.exit.clone(),
            filter: self.filter_status().await,
            forwarding: self.os.forwarding(),
            error: self.withheld().or_else(|| self.error.clone()),
        }
    }

    /// The stateful filter: whether it is installed, and its drop counters.
    async fn filter_status(&self) -> FilterStatus {
        let active = self
            .applied
            .as_ref()
            .is_some_and(|(_, script)| script.is_some());
        let (into_packets, into_bytes) = if active {
            self.os
                .filter_counter(nft::INTO_OVERLAY)
                .await
                .unwrap_or_default()
        } else {
            (0, 0)
        };
        let (from_packets, from_bytes) = if active {
            self.os
                .filter_counter(nft::FROM_OVERLAY)
                .await
                .unwrap_or_default()
        } else {
            (0, 0)
        };
        FilterStatus {
            active,
            masquerade: self.settings.masquerade,
            dropped_into_overlay_packets: into_packets,
            dropped_into_overlay_bytes: into_bytes,
            dropped_from_overlay_packets: from_packets,
            dropped_from_overlay_bytes: from_bytes,
        }
    }

    /// What `/metrics` says of routes: what is in force, not what is wanted.
    pub async fn metrics(&self) -> RoutesMetrics {
        let (table, rules) = match &self.applied {
            Some((plan, _)) => {
                let table = self
                    .views
                    .iter()
                    .map(|(id, view)| {
                        let n = plan.table.values().filter(|dev| **dev == view.interface);
                        (*id, n.count())
                    })
                    .collect();
                (table, plan.rules.len())
            }
            None => (BTreeMap::new(), 0),
        };
        RoutesMetrics {
            table,
            rules,
            filter: self.filter_status().await,
        }
    }
}

/// The mapped pairs of the site `map`'s node routes for, which its engine
/// translates: none unless the controller lists it among a site's routers.
pub fn own_mapped(map: &Netmap) -> Vec<MappedPrefix> {
    map.settings
        .sites
        .iter()
        .find(|s| s.routers.contains(&map.self_node.node_id))
        .map(|s| s.mapped.clone())
        .unwrap_or_default()
}

/// The routes in force, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct RoutesMetrics {
    /// Per network that is up: the routes of Warren's table through its interface.
    pub table: BTreeMap<NetworkId, usize>,
    /// Warren's policy-routing rules (IPv4 and IPv6).
    pub rules: usize,
    /// The stateful filter of a subnet router or exit node.
    pub filter: FilterStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_slots_start_at_the_base_port() {
        assert!(in_listen_slots(51820, 51820));
        assert!(in_listen_slots(51820, 51820 + LISTEN_SLOTS - 1));
        assert!(!in_listen_slots(51820, 51820 + LISTEN_SLOTS));
        assert!(!in_listen_slots(51820, 51819));
        // No overflow at the top of the port range.
        assert!(in_listen_slots(65530, 65535));
    }
}

#[cfg(test)]
mod lifecycle_tests;
