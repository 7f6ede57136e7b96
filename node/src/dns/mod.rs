//! Private DNS on the agent: a stub per joined network on its first
//! overlay IPv4 address (port 53), answering every joined network's zone
//! from the netmaps and forwarding other names (for local clients only)
//! to the resolvers the system had; split DNS so only the zones go to the
//! stubs; and the services this node publishes.
//!
//! - [`zone`]: a network's zone from its netmap (pure).
//! - [`handler`]: the stubs' request screen and answers.
//! - [`stub`]: the UDP and TCP listeners of one stub.
//! - [`sites`]: a site's own names, asked of its DNS server through the mesh.
//! - [`system`], [`resolv_conf`], [`resolved`]: split DNS, with backup and crash repair.
//! - [`os`]: the seam to resolved and resolv.conf ([`os::ResolverOs`]), with a fake for tests.
//! - [`services`]: published services, kept in the state directory.
//! - [`settings`]: the `[dns]` section of the config file.
//! - [`requests`], [`local_api`]: `warren dns` and `warren service` on the local API.
//!
//! The daemon calls [`Dns::network_up`] when a netmap is applied,
//! [`Dns::network_down`] when a network is left or fails closed, and
//! [`Dns::shutdown`] on a clean stop.

pub mod handler;
pub mod local_api;
pub mod os;
pub mod requests;
pub mod resolv_conf;
pub mod resolved;
pub mod services;
pub mod settings;
pub mod sites;
pub mod stub;
pub mod system;
pub mod zone;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::resolver::config::{NameServerConfig, ResolverOpts};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::ZoneHandler;
use warren_proto::local_dns::{DnsStatus, StubStatus};
use warren_proto::netmap::Netmap;
use warren_proto::NetworkId;

use handler::{SharedState, StubState};
pub use requests::DnsRequest;
use services::ServiceBook;
pub use settings::{DnsSettings, Manage};
use stub::StubServer;
use system::{Route, SplitDns};
use zone::{LoadedZone, ZoneView};

/// One joined network's DNS.
struct NetDns {
    interface: String,
    view: ZoneView,
    serial: u32,
    zone: Option<LoadedZone>,
    listen: Option<SocketAddr>,
    overlay: Vec<IpAddr>,
    stub: Option<StubServer>,
    error: Option<String>,
    /// Queries its stub answered, by result.
    queries: Arc<handler::QueryCounts>,
    /// The network's sites with DNS, and their forwarders.
    sites: Vec<(sites::SiteView, Arc<sites::SiteForwarder>)>,
    /// The network's prefix and every prefix its peers route: where
    /// peers' queries come from.
    mesh: Vec<ipnet::IpNet>,
}

pub struct Dns {
    settings: DnsSettings,
    split: Option<SplitDns>,
    shared: SharedState,
    nets: BTreeMap<NetworkId, NetDns>,
    /// Upstreams as configured or found, before leaving out our own addresses.
    upstreams: Vec<SocketAddr>,
    /// The forwarder and the upstreams it was built for.
    forwarder: Option<(Vec<SocketAddr>, Arc<dyn ZoneHandler>)>,
    services: ServiceBook,
}

impl Dns {
    /// Nothing at all: before the daemon sets the real one.
    pub fn off() -> Dns {
        Dns {
            settings: DnsSettings {
                stub: false,
                manage: Manage::Off,
                ..DnsSettings::default()
            },
            split: None,
            shared: SharedState::default(),
            nets: BTreeMap::new(),
            upstreams: Vec::new(),
            forwarder: None,
            services: ServiceBook::default(),
        }
    }

    /// Repairs a resolv.conf a crashed agent left edited, and reads the
    /// upstreams. Call before any netmap is applied.
    pub fn start(settings: DnsSettings, state_dir: &Path) -> Dns {
        let os = os::HostResolver::new(settings.resolv_conf.clone(), state_dir);
        Dns::start_on(settings, state_dir, Arc::new(os))
    }

    /// [`Dns::start`] on another system (a fake, in tests).
    pub fn start_on(settings: DnsSettings, state_dir: &Path, os: Arc<dyn os::ResolverOs>) -> Dns {
        let manage = if settings.stub {
            settings.manage
        } else {
            Manage::Off
        };
        let split = SplitDns::start(manage, os);
        let upstreams = if settings.upstream.is_empty() {
            resolv_conf::nameservers(&split.original_text())
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 53))
                .collect()
        } else {
            settings.upstream.clone()
        };
        tracing::info!(
            manage = manage.as_str(),
            stub = settings.stub,
            ?upstreams,
            "DNS"
        );
        Dns {
            settings,
            split: Some(split),
            shared: SharedState::default(),
            nets: BTreeMap::new(),
            upstreams,
            forwarder: None,
            services: ServiceBook::open(state_dir),
        }
    }

    /// A netmap was applied to an authorized network on `interface`.
    pub async fn network_up(&mut self, map: &Netmap, interface: &str) {
        if !self.settings.stub {
            return;
        }
        let view = ZoneView::of(map);
        let listen = map
            .self_node
            .addresses
            .iter()
            .find(|a| a.addr().is_ipv4())
            .map(|a| SocketAddr::new(a.addr(), self.settings.stub_port));
        let net = self.nets.entry(map.network_id).or_insert_with(|| NetDns {
            interface: interface.to_owned(),
            view: view.clone(),
            serial: 0,
            zone: None,
            listen: None,
            overlay: Vec::new(),
            stub: None,
            error: None,
            queries: Arc::default(),
            sites: Vec::new(),
            mesh: Vec::new(),
        });
        let mut changed = net.interface != interface || net.listen != listen;
        net.interface = interface.to_owned();
        net.overlay = map.self_node.addresses.iter().map(|a| a.addr()).collect();
        if net.zone.is_none() || net.view != view {
            net.serial = map.version as u32;
            match zone::load(&view, net.serial) {
                Ok(zone) => {
                    tracing::info!(network = %map.network_id, zone = %view.zone, records = zone.records, "DNS zone loaded");
                    net.zone = Some(zone);
                    net.error = None;
                }
                Err(e) => {
                    net.zone = None;
                    net.error = Some(e.to_string());
                }
            }
            net.view = view;
            changed = true;
        }
        let mesh = sites::mesh_prefixes(map);
        if net.mesh != mesh {
            net.mesh = mesh;
            changed = true;
        }
        let site_views = sites::SiteView::of(map);
        if net.sites.iter().map(|(v, _)| v).ne(site_views.iter()) {
            tracing::info!(network = %map.network_id, sites = site_views.len(), "site DNS forwarding changed");
            net.sites = site_views
                .into_iter()
                .map(|v| (v.clone(), Arc::new(sites::SiteForwarder::new(v))))
                .collect();
            changed = true;
        }
        if net.listen != listen {
            if let Some(old) = net.stub.take() {
                old.stop().await;
            }
            net.listen = listen;
        }
        changed |= self.bind_missing().await;
        if changed {
            self.publish().await;
        }
    }

    /// A network was left, revoked or refused: its stub and zone go.
    pub async fn network_down(&mut self, id: NetworkId) {
        if let Some(net) = self.nets.remove(&id) {
            if let Some(stub) = net.stub {
                stub.stop().await;
            }
            tracing::info!(network = %id, "DNS stub stopped");
            self.publish().await;
        }
    }

    /// Retries stubs that could not bind (every endpoint refresh).
    pub async fn retry(&mut self) {
        if self.bind_missing().await {
            self.publish().await;
        }
    }

    /// A clean stop: the system's resolver configuration as it was.
    pub async fn shutdown(&mut self) {
        if let Some(split) = self.split.as_mut() {
            split.restore().await;
        }
        for (_, net) in std::mem::take(&mut self.nets) {
            if let Some(stub) = net.stub {
                stub.stop().await;
            }
        }
    }

    /// Binds every stub that has an address and no sockets; true if any did.
    async fn bind_missing(&mut self) -> bool {
        let mut bound = false;
        for (id, net) in &mut self.nets {
            let (Some(listen), None, Some(_)) = (net.listen, &net.stub, &net.zone) else {
                continue;
            };
            let handler = self.shared.handler(listen).counting(net.queries.clone());
            match StubServer::bind(listen, handler).await {
                Ok(stub) => {
                    net.stub = Some(stub);
                    net.error = None;
                    bound = true;
                }
                Err(e) => {
                    tracing::warn!(network = %id, error = %format!("{e:#}"), "DNS stub not serving; retrying later");
                    net.error = Some(format!("{e:#}"));
                }
            }
        }
        bound
    }

    /// Hands the stubs the current zones and points the system at them.
    async fn publish(&mut self) {
        let locals: Vec<IpAddr> = self.nets.values().flat_map(|n| n.overlay.clone()).collect();
        let upstreams: Vec<SocketAddr> = self
            .upstreams
            .iter()
            .filter(|u| !locals.contains(&u.ip()))
            .copied()
            .collect();
        if self.forwarder.as_ref().map(|(u, _)| u) != Some(&upstreams) {
            self.forwarder = forwarder(&upstreams).map(|f| (upstreams, f));
        }
        let mut state = StubState::default();
        locals.iter().for_each(|ip| state.add_local(*ip));
        if let Some((_, f)) = &self.forwarder {
            state.set_forwarder(f.clone());
        }
        let mut routes = Vec::new();
        // Lowest network ID first: it keeps a zone name two networks share.
        for (id, net) in &self.nets {
            let (Some(zone), Some(stub)) = (&net.zone, &net.stub) else {
                continue;
            };
            if state.has_origin(&zone.origin) {
                tracing::warn!(network = %id, zone = %net.view.zone, "zone already served for another network");
                continue;
            }
            state.insert_zone(stub.listen, zone.origin.clone(), zone.handler.clone());
            for (view, forwarder) in &net.sites {
                state.insert_site(view.lower_origin(), forwarder.clone());
            }
            net.mesh.iter().for_each(|p| state.add_mesh(*p));
            routes.push(Route {
                network: *id,
                interface: net.interface.clone(),
                stub: stub.listen,
                zone: net.view.zone.clone(),
            });
        }
        self.shared.replace(state);
        if let Some(split) = self.split.as_mut() {
            split.apply(&routes).await;
        }
    }

    /// Whether network `id`'s zone is served and the system pointed at
    /// it; nothing to say while the stub is off or the network not up.
    pub fn effect(&self, id: NetworkId) -> warren_proto::local_api::Effect {
        use warren_proto::local_api::Effect;
        let Some(net) = self.nets.get(&id).filter(|_| self.settings.stub) else {
            return Effect::default();
        };
        let split_error = self.split.as_ref().and_then(|s| s.error.clone());
        match (&net.error, &net.stub, split_error) {
            (Some(e), _, _) => Effect::failed(format!("the DNS stub does not serve: {e}")),
            (None, None, _) => Effect::failed("the DNS stub does not serve yet"),
            (None, Some(_), Some(e)) => {
                Effect::failed(format!("the system is not pointed at the stub: {e}"))
            }
            (None, Some(_), None) => Effect::applied(),
        }
    }

    pub fn status(&self) -> DnsStatus {
        let split = self.split.as_ref();
        DnsStatus {
            manage: split.map_or("off", |s| s.manage().as_str()).to_owned(),
            mode: split.map_or(warren_proto::local_dns::SplitDnsMode::Off, SplitDns::mode),
            resolv_conf: self.settings.resolv_conf.display().to_string(),
            backup: split.is_some_and(SplitDns::has_backup),
            upstreams: self
                .forwarder
                .as_ref()
                .map_or(&self.upstreams, |(u, _)| u)
                .iter()
                .map(ToString::to_string)
                .collect(),
            stubs: self
                .nets
                .iter()
                .map(|(id, n)| StubStatus {
                    network: *id,
                    zone: n.view.zone.clone(),
                    listen: n.listen.map(|l| l.to_string()).unwrap_or_default(),
                    serving: n.stub.is_some(),
                    records: n.zone.as_ref().map_or(0, |z| z.records),
                    error: n.error.clone(),
                })
                .collect(),
            error: split.and_then(|s| s.error.clone()),
        }
    }

    /// Queries each network's stub answered, by result (`/metrics`).
    pub fn query_counts(&self) -> Vec<(NetworkId, Vec<(&'static str, u64)>)> {
        self.nets
            .iter()
            .map(|(id, n)| (*id, n.queries.snapshot()))
            .collect()
    }

    /// The zone of a network with a stub, for service FQDNs.
    fn zone_of(&self, id: NetworkId) -> Option<&str> {
        self.nets.get(&id).map(|n| n.view.zone.as_str())
    }
}

/// A root-zone forwarder to `upstreams`; none without upstreams.
fn forwarder(upstreams: &[SocketAddr]) -> Option<Arc<dyn ZoneHandler>> {
    if upstreams.is_empty() {
        return None;
    }
    let name_servers = upstreams
        .iter()
        .map(|u| {
            let mut ns = NameServerConfig::udp_and_tcp(u.ip());
            ns.connections.iter_mut().for_each(|c| c.port = u.port());
            ns
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    options.cache_size = 256;
    let config = ForwardConfig {
        name_servers,
        options: Some(options),
    };
    match ForwardZoneHandler::builder_tokio(config).build() {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::warn!(error = %e, "DNS forwarder unavailable; names outside the zones get REFUSED");
            None
        }
    }
}

#[cfg(test)]
mod tests;
