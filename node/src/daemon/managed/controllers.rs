//! What the daemon knows of each controller it talks to, in one record per
//! controller (`HOST:PORT`) rather than a map per fact. The connections
//! themselves (`ControlHandle`s) are kept beside it, in `Managed::controllers`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use warren_proto::local_api::{
    ControlTransport, ControllerError, ControllerErrorKind, NetworkState,
};

use super::Managed;

/// One controller's connection as last reported.
#[derive(Debug, Default, Clone)]
struct Link {
    /// What the connection runs over, while one is up.
    transport: Option<ControlTransport>,
    /// Where it was reached: its STUN ports are on that address. Kept when
    /// the connection goes, for the routes' exclusions.
    ip: Option<IpAddr>,
    /// The relay-only instance its relay frames go through.
    relay_server: Option<String>,
    /// Why its latest connection failed, until one is up.
    error: Option<ControllerError>,
    /// Since when it has had no connection up.
    down_since: Option<Instant>,
}

/// Every controller's [`Link`].
#[derive(Debug, Default)]
pub(super) struct Links(BTreeMap<String, Link>);

impl Links {
    fn get(&self, controller: &str) -> Option<&Link> {
        self.0.get(controller)
    }

    fn entry(&mut self, controller: &str) -> &mut Link {
        self.0.entry(controller.to_owned()).or_default()
    }

    pub fn is_connected(&self, controller: &str) -> bool {
        self.transport(controller).is_some()
    }

    pub fn transport(&self, controller: &str) -> Option<ControlTransport> {
        self.get(controller).and_then(|l| l.transport)
    }

    pub fn ip(&self, controller: &str) -> Option<&IpAddr> {
        self.get(controller).and_then(|l| l.ip.as_ref())
    }

    pub fn relay_server(&self, controller: &str) -> Option<&String> {
        self.get(controller).and_then(|l| l.relay_server.as_ref())
    }

    pub fn error(&self, controller: &str) -> Option<&ControllerError> {
        self.get(controller).and_then(|l| l.error.as_ref())
    }

    pub fn down_since(&self, controller: &str) -> Option<Instant> {
        self.get(controller).and_then(|l| l.down_since)
    }

    /// A connection is being made: down from now until it is up.
    pub fn connecting(&mut self, controller: &str, now: Instant) {
        self.entry(controller).down_since = Some(now);
    }

    /// A connection came up, reached at `ip`.
    pub fn connected(&mut self, controller: &str, ip: IpAddr, transport: ControlTransport) {
        let link = self.entry(controller);
        link.transport = Some(transport);
        link.ip = Some(ip);
        link.error = None;
        link.down_since = None;
    }

    /// The connection went (or never came) with `error`.
    pub fn disconnected(&mut self, controller: &str, error: ControllerError, now: Instant) {
        let link = self.entry(controller);
        link.transport = None;
        link.relay_server = None;
        link.error = Some(error);
        link.down_since.get_or_insert(now);
    }

    pub fn set_relay_server(&mut self, controller: &str, relay: Option<String>) {
        self.entry(controller).relay_server = relay;
    }

    /// The connection was closed on purpose: all it said is forgotten but
    /// the address it was reached at.
    pub fn dropped(&mut self, controller: &str) {
        if let Some(link) = self.0.get_mut(controller) {
            *link = Link {
                ip: link.ip,
                ..Link::default()
            };
        }
    }
}

impl Managed {
    /// `controller`'s connection went (or never came) with `error`.
    pub(super) async fn controller_lost(&mut self, controller: &str, error: ControllerError) {
        self.links
            .disconnected(controller, error.clone(), Instant::now());
        self.set_relays(controller, false).await;
        for net in self
            .nets
            .values_mut()
            .filter(|n| n.config.controller == controller)
        {
            // The map held ages from now on (`freshness`).
            net.live = false;
            if net.state == NetworkState::Connecting {
                net.message = Some(match error.kind {
                    ControllerErrorKind::TaskFailed => error.message.clone(),
                    _ => format!("controller unreachable: {}", error.message),
                });
            }
        }
    }

    /// `controller`'s connection task died: shown among the agent's task
    /// failures, and as the controller's error until a new run connects.
    pub(super) async fn control_task_died(
        &mut self,
        controller: &str,
        error: String,
        deaths: u32,
        gave_up: bool,
    ) {
        let message = match gave_up {
            false => format!("the agent's connection task {error}; it is started again"),
            true => format!(
                "the agent's connection task {error}, {deaths} times: not started again (`warren down` and `warren up` on its networks try again)"
            ),
        };
        self.tasks
            .report(format!("control {controller}"), error, deaths, gave_up);
        let error = ControllerError {
            kind: ControllerErrorKind::TaskFailed,
            message,
        };
        self.controller_lost(controller, error).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::local_api::ControllerErrorKind;

    fn unreachable() -> ControllerError {
        ControllerError {
            kind: ControllerErrorKind::Unreachable,
            message: "timed out".into(),
        }
    }

    #[test]
    fn a_link_goes_down_up_and_is_dropped_keeping_its_address() {
        let mut links = Links::default();
        let c = "192.0.2.10:7443";
        let start = Instant::now();
        links.connecting(c, start);
        assert!(!links.is_connected(c));
        assert_eq!(links.down_since(c), Some(start));
        links.disconnected(c, unreachable(), Instant::now());
        assert_eq!(links.down_since(c), Some(start), "down since the first try");
        assert!(links.error(c).is_some());

        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        links.connected(c, ip, ControlTransport::Tcp);
        links.set_relay_server(c, Some("relay:7443".into()));
        assert!(links.is_connected(c));
        assert_eq!(links.transport(c), Some(ControlTransport::Tcp));
        assert!(links.error(c).is_none() && links.down_since(c).is_none());
        assert_eq!(
            links.relay_server(c).map(String::as_str),
            Some("relay:7443")
        );

        links.disconnected(c, unreachable(), Instant::now());
        assert!(!links.is_connected(c) && links.relay_server(c).is_none());
        assert_eq!(links.transport(c), None, "no transport while down");
        links.dropped(c);
        assert!(links.error(c).is_none() && links.down_since(c).is_none());
        assert_eq!(links.ip(c), Some(&ip));
        assert!(!links.is_connected("198.51.100.1:7443"));
    }
}
