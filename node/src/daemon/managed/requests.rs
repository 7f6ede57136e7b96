//! `warren dns`, `warren service`, `warren routes` and `warren exit-node`
//! requests: the work is in `crate::dns` and `crate::routes`; this is what
//! they change in the networks and tell the controllers.

use warren_proto::local_api::NetworkState;
use warren_proto::NetworkId;

use super::super::control::ControlCommand;
use super::Managed;
use crate::routes::Advertised;

/// `warren dns` and `warren service`; the work is in `crate::dns`.
impl Managed {
    pub fn handle_dns(&mut self, request: crate::dns::DnsRequest) {
        let joined: Vec<NetworkId> = self.nets.keys().copied().collect();
        if let Some((id, services)) = self.dns.handle(request, &joined) {
            self.send_services(id, services);
        }
    }

    /// Sends the service lists of the networks of `controller` (all, if
    /// `None`) again: the controller keeps them, a resend is idempotent.
    pub(super) fn publish_services(&self, controller: Option<&str>) {
        let nets: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(_, n)| !n.config.down && controller.is_none_or(|c| n.config.controller == c))
            .map(|(id, _)| *id)
            .collect();
        for (id, services) in self.dns.services_for(&nets) {
            self.send_services(id, services);
        }
    }

    fn send_services(&self, id: NetworkId, services: Vec<warren_proto::service::ServiceSpec>) {
        let control = self
            .nets
            .get(&id)
            .and_then(|n| self.controllers.get(&n.config.controller));
        if let Some(control) = control {
            control.send(ControlCommand::Services(id, services));
        }
    }
}

/// `warren routes` and `warren exit-node`; the work is in `crate::routes`.
impl Managed {
    pub async fn handle_routes(&mut self, request: crate::routes::RoutesRequest) {
        let joined: Vec<NetworkId> = self.nets.keys().copied().collect();
        if let crate::routes::RoutesRequest::Status(reply) = request {
            let _ = reply.send(self.routes.status(&joined).await);
            return;
        }
        let Some((reply, outcome)) = self.routes.handle(request, &joined) else {
            return;
        };
        let effects = match outcome {
            Ok(effects) => effects,
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
                return;
            }
        };
        let withheld = self.routes.withheld().is_some();
        for id in effects.reapply {
            let map = self
                .nets
                .get(&id)
                .filter(|n| n.state == NetworkState::Authorized)
                .and_then(|n| n.netmap.clone());
            if let Some(map) = map {
                self.apply(map).await;
            }
        }
        // Settings that change no engine (masquerade) still change the filter.
        self.routes.tick().await;
        // Only now is it known whether the filter holds (else nothing is advertised).
        if let Some((id, advertised)) = effects.advertise {
            let advertised = match self.routes.withheld() {
                Some(_) => Advertised::default(),
                None => advertised,
            };
            self.send_routes(id, advertised);
        }
        self.republish_if_withheld_changed(withheld);
        let _ = reply.send(Ok(self.routes.status(&joined).await));
    }

    /// Periodic: puts back what someone removed, and retries a failed filter.
    pub async fn tick_routes(&mut self) {
        let withheld = self.routes.withheld().is_some();
        self.routes.tick().await;
        self.republish_if_withheld_changed(withheld);
    }

    /// The filter failed or came back since `withheld` was read: every
    /// controller hears what this node advertises now (nothing, or all).
    pub(super) fn republish_if_withheld_changed(&self, withheld: bool) {
        if self.routes.withheld().is_some() == withheld {
            return;
        }
        let controllers: std::collections::BTreeSet<&str> = self
            .nets
            .values()
            .map(|n| n.config.controller.as_str())
            .collect();
        for controller in controllers {
            self.publish_routes(controller);
        }
    }

    /// Sends what this node advertises in the networks of `controller`
    /// again: the controller keeps it, a resend is idempotent.
    pub(super) fn publish_routes(&self, controller: &str) {
        let nets: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(_, n)| n.config.controller == controller)
            .map(|(id, _)| *id)
            .collect();
        for (id, advertised) in self.routes.advertised_for(&nets) {
            self.send_routes(id, advertised);
        }
    }

    fn send_routes(&self, id: NetworkId, advertised: Advertised) {
        let control = self
            .nets
            .get(&id)
            .and_then(|n| self.controllers.get(&n.config.controller));
        if let Some(control) = control {
            control.send(ControlCommand::Routes(
                id,
                advertised.routes,
                advertised.site,
            ));
        }
    }
}
