//! What ties a network's data plane to the rest of the daemon: its
//! events (reflexive addresses, call-me-maybe), its controller's relay and
//! its controller's STUN ports.

use std::net::SocketAddr;

use warren_proto::NetworkId;

use super::super::control::{ControlCommand, ControlHandle};
use super::super::network::NetworkHandle;
use super::Managed;

impl Managed {
    /// Acts on what a data plane asks for.
    pub async fn handle_network_event(
        &mut self,
        network: &str,
        event: super::super::network::NetworkEvent,
    ) {
        if let super::super::network::NetworkEvent::Died { instance, error } = event {
            match network.parse::<NetworkId>() {
                Ok(id) => self.plane_died(id, instance, error).await,
                Err(_) => self.static_died(instance, error).await,
            }
            return;
        }
        let Ok(id) = network.parse::<NetworkId>() else {
            return;
        };
        let Some(net) = self.nets.get(&id) else {
            return;
        };
        match event {
            super::super::network::NetworkEvent::Reflexive { server, mapped } => {
                if let Some(net) = self.nets.get_mut(&id) {
                    net.reflexive.insert(server, mapped);
                }
                self.report_endpoints(false);
            }
            super::super::network::NetworkEvent::PathChanged => {
                if let Some(net) = self.nets.get_mut(&id) {
                    net.paths.mark();
                }
            }
            super::super::network::NetworkEvent::CallMeMaybe {
                peer,
                endpoints,
                nat,
            } => {
                if let Some(c) = self.controllers.get(&net.config.controller) {
                    c.send(ControlCommand::CallMeMaybe {
                        network_id: id,
                        peer,
                        endpoints,
                        nat,
                    });
                }
            }
            super::super::network::NetworkEvent::Died { .. } => {}
        }
    }
}

/// Connects a network's data plane to its controller's relay both ways:
/// relayed packets for it go straight into its queue, and it gets the way out.
pub(super) fn relay_link(
    control: &ControlHandle,
    id: NetworkId,
    runner: &NetworkHandle,
) -> super::super::datapath::RelayTx {
    control.route_relay_in(id, Some(runner.relay_in()));
    control.relay_tx(id)
}

impl Managed {
    /// Gives (or takes away) the relay to every network of a controller.
    pub(super) async fn set_relays(&self, controller: &str, up: bool) {
        for (id, net) in &self.nets {
            if net.config.controller != controller {
                continue;
            }
            let Some(runner) = &net.runner else {
                continue;
            };
            let sink = if up {
                self.controllers
                    .get(controller)
                    .map(|c| relay_link(c, *id, runner))
            } else {
                None
            };
            runner.set_relay(sink).await;
        }
    }
}

/// The controller's STUN servers for a network: its address at the ports
/// the network's map names.
pub(super) fn stun_servers(
    map: &warren_proto::netmap::Netmap,
    ip: std::net::IpAddr,
) -> Vec<SocketAddr> {
    map.settings
        .stun_ports
        .iter()
        .map(|p| SocketAddr::new(ip, *p))
        .collect()
}

impl Managed {
    /// Points each network of a controller at its STUN ports.
    pub(super) async fn set_stun(&self, controller: &str) {
        let Some(ip) = self.links.ip(controller) else {
            return;
        };
        for net in self
            .nets
            .values()
            .filter(|n| n.config.controller == controller)
        {
            if let (Some(runner), Some(map)) = (&net.runner, &net.netmap) {
                runner.set_stun_servers(stun_servers(map, *ip)).await;
            }
        }
    }
}
