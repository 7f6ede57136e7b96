//! The data planes under supervision: a death is recorded and shown in
//! `status`, the network's effects on the system (DNS, routes) are undone
//! with it, and the data plane is restarted with backoff from the netmap
//! held, until restarts run out and the network is `failed`.

use tokio::time::Instant;
use warren_proto::local_api::NetworkState;
use warren_proto::NetworkId;

use super::{Joined, Managed};

/// Records a death of `net`'s data plane: a restart is due, or the network failed.
pub(super) fn record_death(net: &mut Joined, error: String, now: Instant) {
    let id = net.config.network_id;
    match net.plane.died(error.clone(), now) {
        Some(at) => {
            let wait = at.saturating_duration_since(now);
            // Said by `data_plane` in status; the state stays what it is.
            tracing::warn!(network = %id, %error, restart_in = ?wait, "restarting the data plane");
        }
        None => {
            tracing::error!(network = %id, %error, deaths = net.plane.deaths(), "the data plane keeps dying: network failed");
            net.state = NetworkState::Failed;
            net.message = Some(format!(
                "the data plane died {} times; not restarted: {error} (`warren down` and `warren up` try again)",
                net.plane.deaths()
            ));
        }
    }
}

impl Managed {
    /// Data plane `instance` of network `id` died (a late report of one
    /// replaced already is ignored).
    pub(super) async fn plane_died(&mut self, id: NetworkId, instance: u64, error: String) {
        let Some(net) = self.nets.get_mut(&id) else {
            return;
        };
        if net.runner.as_ref().map(|r| r.instance) != Some(instance) {
            tracing::debug!(network = %id, instance, "death of a data plane replaced already");
            return;
        }
        if let Some(runner) = net.runner.take() {
            // Ended already: this only waits for its watcher.
            runner.stop().await;
        }
        record_death(net, error, Instant::now());
        if let Some(control) = self.controllers.get(&net.config.controller) {
            control.route_relay_in(id, None);
        }
        // Its interface is gone, and what pointed at it with it: both are
        // made again when the data plane is (`effects`).
        self.sync_effects(id).await;
    }

    /// The static network's data plane `instance` died.
    pub(super) async fn static_died(&mut self, instance: u64, error: String) {
        if self.static_net.as_ref().map(|s| s.instance) != Some(instance) {
            return;
        }
        if let Some(handle) = self.static_net.take() {
            self.static_spec = Some(handle.spec.clone());
            handle.stop().await;
        }
        match self.static_plane.died(error.clone(), Instant::now()) {
            Some(_) => tracing::warn!(%error, "restarting the static network's data plane"),
            None => {
                tracing::error!(%error, "the static network's data plane keeps dying: not restarted")
            }
        }
    }

    /// When the next data plane restart is due, if one is.
    pub fn next_restart(&self) -> Option<Instant> {
        self.nets
            .values()
            .map(|n| &n.plane)
            .chain([&self.static_plane])
            .filter_map(super::super::supervisor::Restarts::restart_at)
            .min()
    }

    /// Restarts every data plane whose restart is due at `now`.
    pub async fn restart_due(&mut self, now: Instant) {
        let due: Vec<NetworkId> = self
            .nets
            .iter_mut()
            .filter_map(|(id, n)| n.plane.take_due(now).then_some(*id))
            .collect();
        for id in due {
            let Some(net) = self.nets.get(&id) else {
                continue;
            };
            // Something else took it down meanwhile (down, stale, revoked).
            if net.config.down || net.state != NetworkState::Authorized || net.runner.is_some() {
                continue;
            }
            let Some(map) = net.netmap.clone() else {
                continue;
            };
            tracing::info!(network = %id, "restarting the data plane");
            self.apply(map).await;
        }
        if self.static_plane.take_due(now) {
            self.restart_static().await;
        }
    }

    async fn restart_static(&mut self) {
        let Some(spec) = self.static_spec.clone() else {
            return;
        };
        match self
            .planes
            .start(spec, self.key.clone(), self.net_events.clone())
        {
            Ok(handle) => {
                handle.set_peers(self.static_peers.clone()).await;
                self.static_net = Some(handle);
                self.static_spec = None;
                tracing::info!("static network's data plane restarted");
            }
            Err(e) => {
                let now = Instant::now();
                self.static_plane.died(format!("restarting: {e:#}"), now);
            }
        }
    }

    /// What `status` says of the static network's data plane.
    pub(super) fn static_health(&self) -> Option<warren_proto::local_api::DataPlaneHealth> {
        self.static_plane.health(Instant::now())
    }
}
