//! Joining, leaving, `warren down` and `warren up`: which networks this
//! node is in, and which of them run.

use std::time::{Duration, Instant};

use warren_proto::control::normalise_fingerprint;
use warren_proto::local_api::{JoinReply, JoinRequest, NetworkState, NetworkStatus};
use warren_proto::{NetworkId, NodeId};

use super::super::control::{ControlCommand, ControlHandle};
use super::super::{refusal, Refusal};
use super::rejoin::{self, Asked, Standing};
use super::{hostname, validate, Joined, Managed};
use crate::state::JoinedNetwork;

/// How long a connection made only to say `Leave` lives.
const LEAVE_LINGER: Duration = Duration::from_secs(5);

impl Managed {
    /// Brings back every joined network: from its cached netmap at once, so
    /// that a reboot without the controller still brings the mesh up, and
    /// from its controller as soon as it answers. A network taken down
    /// stays down.
    pub async fn restore(&mut self) -> anyhow::Result<()> {
        for config in self.state.networks()? {
            if config.down {
                let id = config.network_id;
                let mut net = Joined::connecting(config);
                net.state = NetworkState::Down;
                // Shown by `warren status`: the address and name it keeps.
                net.netmap = self.state.netmap(&id);
                self.nets.insert(id, net);
                continue;
            }
            self.bring_back(config).await;
        }
        Ok(())
    }

    /// Starts a network from its cached netmap (if young enough) and asks
    /// its controller for the current one.
    async fn bring_back(&mut self, config: JoinedNetwork) {
        let id = config.network_id;
        let cached = self.state.netmap(&id);
        let mut net = Joined::connecting(config.clone());
        net.confirmed = self.state.netmap_confirmed(&id);
        self.nets.insert(id, net);
        match cached {
            Some(map) if self.too_old_to_restore(&map) => {
                tracing::warn!(network = %id, version = map.version, "cached netmap is past netmap-max-age: no peers until the controller answers");
            }
            Some(map) => {
                tracing::info!(network = %id, version = map.version, "using cached netmap until the controller answers");
                self.accept(map, true, false).await;
            }
            None => {}
        }
        self.send_join(&config);
    }

    pub async fn join(&mut self, request: JoinRequest) -> Result<JoinReply, Refusal> {
        let id = request.network_id;
        let asked = checked(&request)?;
        if self.nets.contains_key(&id) {
            return self.rejoin(id, &asked).await;
        }
        if asked.fingerprint.is_none() && !request.trust_first_use {
            return Err(no_fingerprint());
        }
        self.check_pin(id, &asked.controller, asked.fingerprint.as_deref())?;
        let (interface, listen_port) = self.free_slot();
        let config = JoinedNetwork {
            network_id: id,
            controller: asked.controller,
            controllers: asked.controllers,
            fingerprint: asked.fingerprint,
            name: asked.name.unwrap_or_else(hostname),
            preauth_key: asked.preauth_key,
            interface,
            listen_port,
            allow_zones: asked.allow_zones,
            down: false,
        };
        self.nets.insert(id, Joined::connecting(config.clone()));
        self.save();
        self.send_join(&config);
        tracing::info!(network = %id, controller = %config.controller, first_use = config.fingerprint.is_none(), "joining network");
        Ok(JoinReply {
            network: self.network_status(&id).await,
            updated: Vec::new(),
        })
    }

    /// A join of a network already joined: its settings change as asked,
    /// or the join is refused with the reason; it is asked for again.
    async fn rejoin(&mut self, id: NetworkId, asked: &Asked) -> Result<JoinReply, Refusal> {
        let node = NodeId::from_key(&self.key.public_key());
        let Some(net) = self.nets.get(&id) else {
            return Err(not_joined(id));
        };
        let standing = standing(net);
        let plan = rejoin::plan(&net.config, standing, node, asked)
            .map_err(|why| refusal(409, "settings_conflict", why))?;
        let was_down = net.config.down;
        let old_controller = net.config.controller.clone();
        self.check_pin(
            id,
            &plan.config.controller,
            plan.config.fingerprint.as_deref(),
        )?;
        let mut updated = plan.updated;
        if plan.reconnect {
            self.detach(id, &old_controller);
            // A new pin needs a new connection; a handle kept by another
            // network already holds the same pin (`check_pin`).
            if !self.controller_used(&plan.config.controller, id) {
                self.drop_controller(&plan.config.controller, None);
            }
        }
        if let Some(net) = self.nets.get_mut(&id) {
            net.config = plan.config.clone();
            net.config.down = false;
            // Asked again: until the controller answers, the join is in
            // flight, as the first was (a new sign-in page, a new key).
            if standing != Standing::Member {
                net.state = NetworkState::Connecting;
                net.message = None;
                net.sign_in_url = None;
                net.sign_in_refused = None;
            }
        }
        self.save();
        if was_down {
            updated.push("brought up: it was down".to_owned());
            let config = plan.config;
            self.nets.remove(&id);
            self.bring_back(JoinedNetwork {
                down: false,
                ..config
            })
            .await;
        } else {
            self.send_join(&plan.config);
        }
        for change in &updated {
            tracing::info!(network = %id, %change, "join changed the network's settings");
        }
        Ok(JoinReply {
            network: self.network_status(&id).await,
            updated,
        })
    }

    pub async fn leave(&mut self, id: NetworkId) -> Result<(), Refusal> {
        let Some(net) = self.nets.remove(&id) else {
            return Err(not_joined(id));
        };
        // A network taken down has no connection: one is made to say Leave.
        let controller = net.config.controller.clone();
        let made = !self.controllers.contains_key(&controller);
        let control = self.control(&net.config);
        control.send(ControlCommand::Leave(id));
        control.route_relay_in(id, None);
        if let Some(runner) = net.runner {
            runner.stop().await;
        }
        self.sync_port_maps();
        self.state.forget_netmap(&id);
        self.call_me_maybe.forget_network(id);
        self.save();
        // Not joined any more: nothing of it stays in the system.
        self.sync_effects(id).await;
        self.dns.forget_services(id);
        self.routes.forget(id);
        if !self.controller_used(&controller, id) {
            // Give the Leave a moment to go out before the connection closes.
            let linger = if made {
                LEAVE_LINGER
            } else {
                Duration::from_millis(500)
            };
            self.drop_controller(&controller, Some(linger));
        }
        tracing::info!(network = %id, "left network");
        Ok(())
    }

    /// `warren down`: the interface, peers, DNS and routes go; the
    /// membership, address and name stay, also across restarts.
    pub async fn down(&mut self, id: NetworkId) -> Result<NetworkStatus, Refusal> {
        let Some(net) = self.nets.get_mut(&id) else {
            return Err(not_joined(id));
        };
        if net.config.down {
            return Ok(self.network_status(&id).await);
        }
        net.config.down = true;
        net.state = NetworkState::Down;
        net.message = None;
        net.live = false;
        net.sign_in_url = None;
        net.login = None;
        if net.netmap.is_none() {
            net.netmap = self.state.netmap(&id);
        }
        let runner = net.runner.take();
        let controller = net.config.controller.clone();
        if let Some(runner) = runner {
            runner.stop().await;
        }
        self.sync_port_maps();
        self.sync_effects(id).await;
        self.call_me_maybe.forget_network(id);
        self.detach(id, &controller);
        self.save();
        tracing::info!(network = %id, "network down: membership, address and name kept");
        Ok(self.network_status(&id).await)
    }

    /// `warren up`: a network taken down comes back as after a restart.
    pub async fn up(&mut self, id: NetworkId) -> Result<NetworkStatus, Refusal> {
        let Some(net) = self.nets.get(&id) else {
            return Err(not_joined(id));
        };
        if !net.config.down {
            return Ok(self.network_status(&id).await);
        }
        let config = JoinedNetwork {
            down: false,
            ..net.config.clone()
        };
        self.nets.remove(&id);
        self.bring_back(config).await;
        self.save();
        tracing::info!(network = %id, "network up again");
        Ok(self.network_status(&id).await)
    }

    /// Stops speaking for network `id` on `controller`'s connection
    /// without telling it, and closes the connection if nothing else uses it.
    fn detach(&mut self, id: NetworkId, controller: &str) {
        if let Some(control) = self.controllers.get(controller) {
            control.send(ControlCommand::Forget(id));
            control.route_relay_in(id, None);
        }
        if !self.controller_used(controller, id) {
            self.drop_controller(controller, None);
        }
    }

    /// Whether a network other than `except` that runs uses `controller`.
    fn controller_used(&self, controller: &str, except: NetworkId) -> bool {
        self.nets
            .iter()
            .any(|(id, n)| *id != except && !n.config.down && n.config.controller == controller)
    }

    /// Closes the connection to `controller` (after `linger`, if given)
    /// and forgets what it said.
    fn drop_controller(&mut self, controller: &str, linger: Option<Duration>) {
        self.links.dropped(controller);
        let Some(handle) = self.controllers.remove(controller) else {
            return;
        };
        if let Some(linger) = linger {
            while self.lingering.try_join_next().is_some() {}
            self.lingering.spawn(async move {
                tokio::time::sleep(linger).await;
                drop(handle);
            });
        }
    }

    /// The connection for a network's controller, made if there is none.
    pub(super) fn control(&mut self, config: &JoinedNetwork) -> &ControlHandle {
        let controller = config.controller.clone();
        if !self.controllers.contains_key(&controller) {
            self.links.connecting(&controller, Instant::now());
        }
        self.controllers
            .entry(controller.clone())
            .or_insert_with(|| {
                ControlHandle::spawn(
                    controller,
                    config.controllers.clone(),
                    config.fingerprint.clone(),
                    self.key.clone(),
                    self.events.clone(),
                )
            })
    }

    /// One connection serves every network of a controller, with one pin:
    /// a join that would pin it differently is refused.
    fn check_pin(
        &self,
        id: NetworkId,
        controller: &str,
        fingerprint: Option<&str>,
    ) -> Result<(), Refusal> {
        let other = self.nets.iter().find(|(other, n)| {
            **other != id
                && n.config.controller == controller
                && n.config.fingerprint.is_some()
                && fingerprint.is_some_and(|fp| n.config.fingerprint.as_deref() != Some(fp))
        });
        match other {
            Some((other, n)) => Err(refusal(
                409,
                "fingerprint_conflict",
                format!(
                    "network {other} reaches the controller at {controller} with the pinned certificate {}; one controller has one certificate: check --fingerprint",
                    n.config.fingerprint.as_deref().unwrap_or("")
                ),
            )),
            None => Ok(()),
        }
    }
}

/// How far the controller has taken this node in a network.
fn standing(net: &Joined) -> Standing {
    match net.state {
        NetworkState::Pending => Standing::Pending,
        NetworkState::Authorized | NetworkState::Expired | NetworkState::Stale => Standing::Member,
        NetworkState::Down => match &net.netmap {
            Some(map) if map.self_node.authorized => Standing::Member,
            Some(_) => Standing::Pending,
            None => Standing::Unsettled,
        },
        NetworkState::Connecting | NetworkState::Refused => Standing::Unsettled,
        NetworkState::Conflict | NetworkState::Failed | NetworkState::Static => match &net.netmap {
            Some(_) => Standing::Member,
            None => Standing::Unsettled,
        },
    }
}

/// The request's fields checked and normalised.
fn checked(request: &JoinRequest) -> Result<Asked, Refusal> {
    if !request.controller.contains(':') {
        return Err(refusal(
            400,
            "bad_controller",
            "controller must be HOST:PORT",
        ));
    }
    let fingerprint = match &request.fingerprint {
        Some(fp) => Some(normalise_fingerprint(fp).ok_or_else(|| {
            refusal(
                400,
                "bad_fingerprint",
                "fingerprint must be 64 hex digits (colons allowed)",
            )
        })?),
        None => None,
    };
    if let Some(bad) = request
        .allow_zones
        .iter()
        .find(|z| !validate::zone_syntax_ok(z))
    {
        return Err(refusal(
            400,
            "bad_zone",
            format!("{bad:?} is not a DNS zone name"),
        ));
    }
    // An invite's list starts with the address used; a list that does
    // not is taken as the address given, then the others.
    let mut controllers = request.controllers.clone();
    if !controllers.is_empty() && controllers.first() != Some(&request.controller) {
        controllers.retain(|c| *c != request.controller);
        controllers.insert(0, request.controller.clone());
    }
    if controllers.iter().any(|c| !c.contains(':')) || controllers.len() > 16 {
        return Err(refusal(
            400,
            "bad_controller",
            "controllers must be at most 16 HOST:PORT addresses",
        ));
    }
    Ok(Asked {
        controller: request.controller.clone(),
        controllers,
        fingerprint,
        name: request.name.clone(),
        preauth_key: request.preauth_key.clone(),
        allow_zones: request
            .allow_zones
            .iter()
            .map(|z| validate::normalise_zone(z))
            .collect(),
    })
}

fn no_fingerprint() -> Refusal {
    refusal(
        400,
        "fingerprint_required",
        "no controller fingerprint given: pass the one `warren-controller fingerprint` prints on the controller, or say that the first certificate seen is to be trusted and pinned (--trust-first-use)",
    )
}

fn not_joined(id: NetworkId) -> Refusal {
    refusal(404, "not_joined", format!("network {id} is not joined"))
}
