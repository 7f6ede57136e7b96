//! The networks joined through controllers: their state, their netmaps and
//! their data planes, kept in step with what the controllers say.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use warren_proto::control::{JoinOutcome, NatHint};
use warren_proto::local_api::NetworkState;
use warren_proto::netmap::Netmap;
use warren_proto::{NetworkId, NodePrivateKey, NodePublicKey};

use super::control::{ControlCommand, ControlEvent};
use super::network::{
    local_endpoints, DataPlanes, HostDataPlanes, NetworkEvents, NetworkHandle, NetworkSpec,
};
use super::supervisor::{Restarts, Supervisor};
use super::{ControlEvents, Controllers, NETMAP_KEEPALIVE};
use crate::state::{JoinedNetwork, StateDir};

mod controllers;
mod effects;
mod endpoints;
mod explain;
mod grants;
pub use grants::GRANT_CHECK;
mod links;
mod login;
mod paths;
mod portmaps;
use links::relay_link;
pub use paths::PATHS_CHECK;
mod freshness;
mod membership;
mod rejoin;
mod requests;
mod source;
mod status;
mod supervise;
use freshness::Freshness;
pub use freshness::DEFAULT_MAX_AGE as DEFAULT_NETMAP_MAX_AGE;
mod validate;
use source::{Source, SourceCheck};
pub use status::PingTarget;
use validate::Verdict;

struct Joined {
    config: JoinedNetwork,
    state: NetworkState,
    message: Option<String>,
    netmap: Option<Netmap>,
    runner: Option<NetworkHandle>,
    reported: Vec<SocketAddr>,
    /// STUN server -> where it saw this network's socket.
    reflexive: BTreeMap<SocketAddr, SocketAddr>,
    /// When the controller last confirmed the netmap held (`freshness`).
    confirmed: Option<std::time::SystemTime>,
    /// Whether the controller connection up now brought the netmap held:
    /// while it lasts, the map is confirmed.
    live: bool,
    /// Where the device's owner signs it in, while pending on a network
    /// where people do, or after `warren login` asked for a page.
    sign_in_url: Option<String>,
    /// `warren login` asked for a page while the sign-in ran out at this
    /// time (`None` inside: it had none); done when a netmap says otherwise.
    login: Option<Option<String>>,
    /// Why the latest sign-in on the device's page was refused, until a
    /// new page is shown.
    sign_in_refused: Option<String>,
    /// What its controller was last told of its paths (`paths`).
    paths: paths::PathReport,
    /// Its data plane's deaths and the restart due (`supervise`).
    plane: Restarts,
    /// How long the latest netmap or delta took to apply.
    applied_in: Option<std::time::Duration>,
}

impl Joined {
    /// A network just joined or restored: no netmap yet, its controller not reached.
    fn connecting(config: JoinedNetwork) -> Joined {
        Joined {
            config,
            state: NetworkState::Connecting,
            message: None,
            netmap: None,
            runner: None,
            sign_in_url: None,
            login: None,
            sign_in_refused: None,
            reported: Vec::new(),
            reflexive: BTreeMap::new(),
            confirmed: None,
            live: false,
            paths: paths::PathReport::default(),
            plane: Restarts::default(),
            applied_in: None,
        }
    }
}

pub struct Managed {
    state: StateDir,
    key: NodePrivateKey,
    base_port: u16,
    static_net: Option<NetworkHandle>,
    nets: BTreeMap<NetworkId, Joined>,
    controllers: Controllers,
    /// What each controller's connection last said (`controllers`).
    links: controllers::Links,
    /// Drops events about a network from any controller but its own.
    sources: SourceCheck,
    /// How long a netmap is trusted without its controller.
    freshness: Freshness,
    /// How often each peer may make the node probe (`endpoints`).
    call_me_maybe: endpoints::CallMeMaybeLimit,
    events: ControlEvents,
    net_events: NetworkEvents,
    /// DNS stubs, split DNS and published services (`crate::dns`).
    pub(crate) dns: crate::dns::Dns,
    /// Subnet routes, exit node, policy routing and filter (`crate::routes`).
    pub(crate) routes: crate::routes::Routes,
    /// Grants whose first use was reported (`grants`).
    grants_reported: BTreeSet<(NetworkId, String)>,
    /// Where data planes come from: the host's TUNs and sockets, or fakes.
    pub(crate) planes: Arc<dyn DataPlanes>,
    /// The static network's peers, its data plane's deaths, and its spec
    /// while it is dead (`supervise`).
    pub(crate) static_peers: Vec<warren_engine::PeerConfig>,
    /// Birthday probing in the data planes (`NetworkSpec::hard_nat_probing`).
    pub(crate) hard_nat_probing: bool,
    static_plane: Restarts,
    static_spec: Option<NetworkSpec>,
    /// The agent's own tasks: the local API and the metrics endpoint.
    pub(crate) tasks: Supervisor,
    /// Connections closed after a delay (a Leave going out first).
    lingering: tokio::task::JoinSet<()>,
    /// The gateway's mappings of the data-plane ports (`portmaps`).
    portmaps: portmaps::PortMaps,
}

impl Managed {
    pub fn new(
        state: StateDir,
        key: NodePrivateKey,
        base_port: u16,
        static_net: Option<NetworkHandle>,
        events: ControlEvents,
        net_events: NetworkEvents,
    ) -> Self {
        Self {
            state,
            key,
            base_port,
            static_net,
            nets: BTreeMap::new(),
            controllers: BTreeMap::new(),
            links: controllers::Links::default(),
            sources: SourceCheck::default(),
            freshness: Freshness::default(),
            call_me_maybe: endpoints::CallMeMaybeLimit::default(),
            events,
            net_events,
            dns: crate::dns::Dns::off(),
            routes: crate::routes::Routes::off(),
            grants_reported: BTreeSet::new(),
            planes: Arc::new(HostDataPlanes),
            static_peers: Vec::new(),
            hard_nat_probing: true,
            static_plane: Restarts::default(),
            static_spec: None,
            tasks: Supervisor::default(),
            lingering: tokio::task::JoinSet::new(),
            portmaps: portmaps::PortMaps::default(),
        }
    }

    /// The lowest `warrenN` interface and port N places above the base that are free.
    fn free_slot(&self) -> (String, u16) {
        let mut used_names: BTreeSet<String> = self
            .nets
            .values()
            .map(|n| n.config.interface.clone())
            .collect();
        let mut used_ports: BTreeSet<u16> =
            self.nets.values().map(|n| n.config.listen_port).collect();
        if let Some(s) = self
            .static_net
            .as_ref()
            .map(|s| &s.spec)
            .or(self.static_spec.as_ref())
        {
            used_names.insert(s.interface.clone());
            used_ports.insert(s.listen_port);
        }
        for n in 0u16.. {
            let name = format!("warren{n}");
            let port = self.base_port.saturating_add(n);
            if !used_names.contains(&name) && !used_ports.contains(&port) {
                return (name, port);
            }
        }
        (format!("warren{}", self.nets.len()), 0)
    }

    /// Keeps the replicas a controller named for its networks, so that a
    /// restarted agent can reach another when the one it joined through
    /// is gone.
    fn remember_replicas(&mut self, controller: &str, replicas: Vec<String>) {
        if replicas.len() < 2 {
            return;
        }
        let mut changed = false;
        for net in self.nets.values_mut() {
            if net.config.controller == controller && net.config.controllers != replicas {
                net.config.controllers = replicas.clone();
                changed = true;
            }
        }
        if changed {
            self.save();
        }
    }

    fn save(&self) {
        let list: Vec<JoinedNetwork> = self.nets.values().map(|n| n.config.clone()).collect();
        if let Err(e) = self.state.save_networks(&list) {
            tracing::error!(error = %e, "could not save joined networks");
        }
    }

    fn send_join(&mut self, config: &JoinedNetwork) {
        self.control(config).send(ControlCommand::Join {
            network_id: config.network_id,
            name: config.name.clone(),
            preauth_key: config.preauth_key.clone(),
        });
    }

    pub async fn handle_control(&mut self, event: ControlEvent) {
        if let Some((from, id)) = event.network_source() {
            let owner = self.nets.get(&id).map(|n| n.config.controller.as_str());
            match self.sources.check(id, from, owner) {
                Source::Owner => {}
                Source::Foreign | Source::NotJoined => return,
            }
            // A connection shared with other networks still brings news
            // of one taken down: it stays down until `warren up`.
            if self.nets.get(&id).is_some_and(|n| n.config.down) {
                return;
            }
        }
        match event {
            ControlEvent::Connected {
                controller,
                remote,
                transport,
                replicas,
            } => {
                self.remember_replicas(&controller, replicas);
                self.links.connected(&controller, remote.ip(), transport);
                self.set_stun(&controller).await;
                self.set_relays(&controller, true).await;
                self.report_endpoints(true);
                self.publish_services(Some(&controller));
                self.publish_routes(&controller);
                self.paths_reconnected(&controller);
            }
            ControlEvent::CallMeMaybe {
                network_id,
                from,
                endpoints,
                nat,
                ..
            } => {
                self.handle_call_me_maybe(network_id, from, &endpoints, nat)
                    .await
            }
            ControlEvent::RelayServer { controller, relay } => {
                self.links.set_relay_server(&controller, relay);
            }
            ControlEvent::Disconnected { controller, error } => {
                self.controller_lost(&controller, error).await;
            }
            ControlEvent::TaskDied {
                controller,
                error,
                deaths,
                gave_up,
            } => {
                self.control_task_died(&controller, error, deaths, gave_up)
                    .await
            }
            ControlEvent::Fingerprint {
                controller,
                fingerprint,
            } => {
                for net in self
                    .nets
                    .values_mut()
                    .filter(|n| n.config.controller == controller)
                {
                    net.config
                        .fingerprint
                        .get_or_insert_with(|| fingerprint.clone());
                }
                self.save();
            }
            ControlEvent::JoinResult {
                network_id,
                outcome,
                sign_in_url,
                sign_in_refused,
                ..
            } => {
                if let Some(reason) = sign_in_refused {
                    login::refused(self.nets.get_mut(&network_id), &reason);
                    return;
                }
                self.join_result(network_id, outcome, sign_in_url).await
            }
            ControlEvent::Netmap { map, .. } => {
                let (id, began) = (map.network_id, Instant::now());
                self.accept(map, true, true).await;
                self.applied(id, began);
            }
            ControlEvent::Delta { delta, .. } => {
                let (id, began) = (delta.network_id, Instant::now());
                let Some(mut map) = self.nets.get(&id).and_then(|n| n.netmap.clone()) else {
                    self.resync(id);
                    return;
                };
                match map.apply(&delta) {
                    Ok(()) => {
                        self.accept(map, false, true).await;
                        self.applied(id, began);
                    }
                    Err(e) => {
                        tracing::info!(network = %id, error = %e, "netmap delta did not apply; asking for a full map");
                        self.resync(id);
                    }
                }
            }
        }
    }

    /// Records how long a netmap or delta that began at `began` took to
    /// apply (`netmap_apply_us` in the status, and a metric).
    fn applied(&mut self, id: NetworkId, began: Instant) {
        let took = began.elapsed();
        if let Some(net) = self.nets.get_mut(&id) {
            net.applied_in = Some(took);
        }
        tracing::debug!(network = %id, took_us = took.as_micros(), "netmap applied");
    }

    /// A peer's call-me-maybe: its valid candidates probed at once, if the
    /// peer has not asked too often.
    async fn handle_call_me_maybe(
        &mut self,
        network: NetworkId,
        from: NodePublicKey,
        candidates: &[SocketAddr],
        nat: Option<NatHint>,
    ) {
        let Some(net) = self.nets.get(&network) else {
            return;
        };
        let (Some(runner), Some(map)) = (&net.runner, &net.netmap) else {
            return;
        };
        if !self.call_me_maybe.allow(network, from, Instant::now()) {
            tracing::debug!(%network, peer = %from.short(), "call-me-maybe ignored: peer asks too often");
            // The one that starts a birthday try still gets its spray: the
            // engine bounds those by rates of its own.
            if let Some(NatHint::PerDestination { ip }) = nat {
                runner.spray_request(from, ip).await;
            }
            return;
        }
        let valid = endpoints::keep_valid(network, &from, candidates, &endpoints::Overlay::of(map));
        runner.call_me_maybe(from, valid, nat).await;
    }

    fn resync(&self, id: NetworkId) {
        if let Some(net) = self.nets.get(&id) {
            if let Some(c) = self.controllers.get(&net.config.controller) {
                c.send(ControlCommand::Resync(id));
            }
        }
    }

    async fn join_result(
        &mut self,
        id: NetworkId,
        outcome: JoinOutcome,
        sign_in_url: Option<String>,
    ) {
        let Some(net) = self.nets.get_mut(&id) else {
            return;
        };
        // A pending join carries one, and so does the answer to `warren
        // login`; any other answer ends it.
        net.sign_in_url =
            sign_in_url.filter(|_| outcome == JoinOutcome::Pending || net.login.is_some());
        if net.sign_in_url.is_some() {
            net.sign_in_refused = None;
        }
        match outcome {
            JoinOutcome::Authorized | JoinOutcome::Pending => {
                let pending = outcome == JoinOutcome::Pending;
                if net.config.preauth_key.take().is_some() {
                    self.save();
                }
                // An authorized join waits for its netmap to say so; only a
                // pending one changes what the user sees now.
                if let Some(net) = self.nets.get_mut(&id) {
                    if pending && net.state == NetworkState::Connecting {
                        net.state = NetworkState::Pending;
                    }
                }
            }
            JoinOutcome::Refused { reason } => {
                tracing::warn!(network = %id, %reason, "controller refused the join");
                self.fail_closed(id, NetworkState::Refused, reason).await;
            }
        }
    }

    /// Takes a network's data plane down and forgets its cached netmap, so
    /// that not even a restart brings its peers back.
    async fn fail_closed(&mut self, id: NetworkId, state: NetworkState, message: String) {
        self.state.forget_netmap(&id);
        if let Some(net) = self.nets.get_mut(&id) {
            net.state = state;
            net.message = Some(message);
            net.netmap = None;
        }
        // Withdrawn before the interface goes.
        self.sync_effects(id).await;
        if let Some(runner) = self.nets.get_mut(&id).and_then(|n| n.runner.take()) {
            runner.stop().await;
        }
    }

    /// Applies a map from the network's own controller (or, with
    /// `from_controller` false, from the cache) if it passes the checks: a
    /// full map older than the one held is ignored, and one that breaks the
    /// rules of [`validate`] is refused while the old one stays. A map from
    /// the controller that is applied is confirmed (`freshness`).
    async fn accept(&mut self, map: Netmap, full: bool, from_controller: bool) {
        let id = map.network_id;
        let Some(net) = self.nets.get_mut(&id) else {
            return;
        };
        let held = net.netmap.as_ref().map(|m| m.version);
        match validate::judge(&map, full, held, &net.config.allow_zones) {
            Verdict::Apply => {}
            Verdict::IgnoreOlder { held } => {
                tracing::info!(network = %id, version = map.version, held, "ignoring a netmap older than the one held");
                return;
            }
            Verdict::Refuse(refusal) => {
                tracing::warn!(network = %id, version = map.version, %refusal, "refusing the controller's netmap");
                if held.is_none() {
                    net.state = NetworkState::Conflict;
                }
                net.message = Some(format!("netmap version {} refused: {refusal}", map.version));
                return;
            }
        }
        if from_controller {
            self.confirm(id);
        }
        self.apply(map).await;
    }

    async fn apply(&mut self, map: Netmap) {
        let id = map.network_id;
        if let Err(e) = self.state.save_netmap(&map) {
            tracing::warn!(network = %id, error = %e, "could not cache netmap");
        }
        let was_authorized = self
            .nets
            .get(&id)
            .is_some_and(|n| n.state == NetworkState::Authorized);
        login::settle(self.nets.get_mut(&id), &map.self_node);
        if !map.self_node.authorized {
            if map.self_node.expired {
                self.expired(map).await;
            } else if was_authorized {
                tracing::warn!(network = %id, "membership revoked");
                self.fail_closed(id, NetworkState::Refused, "membership revoked".into())
                    .await;
            } else if let Some(net) = self.nets.get_mut(&id) {
                net.state = NetworkState::Pending;
                net.message = Some("waiting for an admin to authorize this node".into());
                net.netmap = Some(map);
            }
            return;
        }
        if let Some(conflict) = self.overlap(id, &map.self_node.addresses) {
            tracing::error!(network = %id, %conflict, "refusing netmap");
            self.fail_closed(id, NetworkState::Conflict, conflict).await;
            return;
        }
        let Some(net) = self.nets.get_mut(&id) else {
            return;
        };
        let spec = NetworkSpec {
            label: id.to_string(),
            interface: net.config.interface.clone(),
            mtu: map.settings.mtu,
            addresses: map.self_node.addresses.clone(),
            listen_port: net.config.listen_port,
            offload: true,
            system_routes: false,
            hard_nat_probing: self.hard_nat_probing,
        };
        if net.runner.as_ref().is_some_and(|r| r.spec != spec) {
            if let Some(old) = net.runner.take() {
                old.stop().await;
            }
        }
        // A data plane that died waits for its restart (`supervise`).
        if net.runner.is_none() && (net.plane.gave_up() || net.plane.restart_at().is_some()) {
            net.netmap = Some(map);
            return;
        }
        if net.runner.is_none() {
            match self
                .planes
                .start(spec, self.key.clone(), self.net_events.clone())
            {
                Ok(runner) => net.runner = Some(runner),
                Err(e) if net.plane.deaths() > 0 => {
                    supervise::record_death(
                        net,
                        format!("restarting: {e:#}"),
                        tokio::time::Instant::now(),
                    );
                    net.netmap = Some(map);
                    return;
                }
                Err(e) => {
                    net.state = NetworkState::Conflict;
                    net.message = Some(format!("{e:#}"));
                    net.netmap = Some(map);
                    return;
                }
            }
        }
        if let (Some(runner), Some(ip)) = (&net.runner, self.links.ip(&net.config.controller)) {
            runner
                .set_stun_servers(links::stun_servers(&map, *ip))
                .await;
        }
        if let (Some(runner), true) = (&net.runner, self.links.is_connected(&net.config.controller))
        {
            let sink = self
                .controllers
                .get(&net.config.controller)
                .map(|c| relay_link(c, id, runner));
            runner.set_relay(sink).await;
        }
        // Accepted subnet routes and the exit node's default routes
        // (`crate::routes`); the system's share follows in `effects`.
        let controller_ips = crate::routes::controller_ips(
            &net.config.controller,
            self.links.ip(&net.config.controller),
        );
        let extra = self
            .routes
            .engine_routes(&map, &net.config.interface, &controller_ips);
        let overlay = endpoints::Overlay::of(&map);
        let peers = map
            .peers
            .iter()
            .map(|p| warren_engine::PeerConfig {
                public_key: p.public_key,
                endpoint: None,
                allowed_ips: p
                    .addresses
                    .iter()
                    .chain(extra.get(&p.public_key).into_iter().flatten())
                    .copied()
                    .collect(),
                persistent_keepalive: Some(NETMAP_KEEPALIVE),
                disco: true,
                candidates: endpoints::keep_valid(id, &p.public_key, &p.endpoints, &overlay),
            })
            .collect();
        if let Some(runner) = &net.runner {
            // The filter first: a peer the new policy adds meets it at once.
            runner.set_filter(map.filter.clone()).await;
            runner
                .set_site_mappings(crate::routes::own_mapped(&map))
                .await;
            runner.set_peers(peers).await;
        }
        if !was_authorized {
            tracing::info!(network = %id, name = %map.self_node.fqdn, addresses = ?map.self_node.addresses, "network up");
        }
        net.state = NetworkState::Authorized;
        net.message = None;
        // Peers may have come or gone.
        net.paths.mark();
        net.netmap = Some(map);
        let withheld = self.routes.withheld().is_some();
        self.sync_effects(id).await;
        self.report_endpoints(false);
        self.republish_if_withheld_changed(withheld);
    }

    /// Another network (or the static one) whose prefixes overlap `addresses`.
    fn overlap(&self, id: NetworkId, addresses: &[IpNet]) -> Option<String> {
        let mine: Vec<IpNet> = addresses.iter().map(IpNet::trunc).collect();
        let clash = |theirs: &[IpNet]| {
            theirs
                .iter()
                .map(IpNet::trunc)
                .find(|t| mine.iter().any(|m| m.contains(t) || t.contains(m)))
        };
        if let Some(s) = self
            .static_net
            .as_ref()
            .map(|s| &s.spec)
            .or(self.static_spec.as_ref())
        {
            if let Some(t) = clash(&s.addresses) {
                return Some(format!("its prefix overlaps {t} of the static network"));
            }
        }
        for (other, net) in &self.nets {
            if *other == id {
                continue;
            }
            if let Some(t) = net.runner.as_ref().and_then(|r| clash(&r.spec.addresses)) {
                return Some(format!("its prefix overlaps {t} of network {other}"));
            }
        }
        None
    }

    /// Reports each network's endpoint candidates to its controller, if they
    /// changed (or always, after a reconnect).
    pub fn report_endpoints(&mut self, always: bool) {
        let overlay: Vec<IpNet> = self
            .nets
            .values()
            .filter_map(|n| n.runner.as_ref())
            .chain(self.static_net.as_ref())
            .flat_map(|r| r.spec.addresses.iter().map(IpNet::trunc))
            .collect();
        self.sync_port_maps();
        for (id, net) in &mut self.nets {
            if net.runner.is_none() || !self.links.is_connected(&net.config.controller) {
                continue;
            }
            let mut endpoints = local_endpoints(net.config.listen_port, &overlay);
            endpoints.extend(net.reflexive.values().copied());
            endpoints.extend(self.portmaps.external(net.config.listen_port));
            endpoints.sort();
            endpoints.dedup();
            if let Some(runner) = &net.runner {
                runner.set_local_endpoints(endpoints.clone());
            }
            if always || endpoints != net.reported {
                if let Some(c) = self.controllers.get(&net.config.controller) {
                    c.send(ControlCommand::Endpoints(*id, endpoints.clone()));
                    net.reported = endpoints;
                }
            }
        }
    }

    /// A clean stop, in order: the networks (data planes, then control
    /// connections), then their effects on the system (DNS, routes). The
    /// local API goes last, after this ([`Managed::stop_tasks`]).
    pub async fn shutdown(&mut self) {
        for net in self.nets.values_mut() {
            if let Some(r) = net.runner.take() {
                r.stop().await;
            }
        }
        if let Some(s) = self.static_net.take() {
            s.stop().await;
        }
        self.portmaps.stop().await;
        self.controllers.clear();
        self.lingering.shutdown().await;
        self.dns.shutdown().await;
        self.routes.shutdown().await;
    }

    /// Stops the agent's own tasks (the local API, the metrics endpoint).
    pub async fn stop_tasks(&mut self) {
        self.tasks.shutdown().await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

#[cfg(test)]
mod daemon_tests;

/// The netmap fuzz target, replayed over its committed inputs.
#[cfg(test)]
#[path = "../../../../fuzz/checks/netmap.rs"]
mod fuzz_inputs;
