//! A network's effects on the system, split DNS and routes, derived from
//! its state in one place: in force while it is authorized with a data
//! plane and a netmap, withdrawn in every other state (and once it is left).
//! Every change of a network's state ends here rather than calling DNS and
//! routes itself.

use warren_proto::local_api::NetworkState;
use warren_proto::netmap::Netmap;
use warren_proto::NetworkId;

use super::{Joined, Managed};

/// What a network's state asks of the system.
enum Wanted {
    /// The zone served and routed, the routes installed.
    Up {
        map: Box<Netmap>,
        interface: String,
        controller_ips: Vec<std::net::IpAddr>,
    },
    /// Nothing of the network's.
    Down,
}

/// Whether `net`'s state wants its effects in force.
fn in_force(net: &Joined) -> bool {
    net.state == NetworkState::Authorized && net.runner.is_some() && net.netmap.is_some()
}

impl Managed {
    fn wanted(&self, id: NetworkId) -> Wanted {
        let Some(net) = self.nets.get(&id).filter(|n| in_force(n)) else {
            return Wanted::Down;
        };
        let Some(map) = &net.netmap else {
            return Wanted::Down;
        };
        Wanted::Up {
            map: Box::new(map.clone()),
            interface: net.config.interface.clone(),
            controller_ips: crate::routes::controller_ips(
                &net.config.controller,
                self.links.ip(&net.config.controller),
            ),
        }
    }

    /// Brings network `id`'s DNS and routes in line with its state. Both
    /// do nothing when nothing changed, so calling it again is cheap.
    pub(super) async fn sync_effects(&mut self, id: NetworkId) {
        match self.wanted(id) {
            Wanted::Up {
                map,
                interface,
                controller_ips,
            } => {
                self.dns.network_up(&map, &interface).await;
                self.routes
                    .network_up(&map, &interface, controller_ips)
                    .await;
            }
            Wanted::Down => {
                self.dns.network_down(id).await;
                self.routes.network_down(id).await;
            }
        }
    }
}
