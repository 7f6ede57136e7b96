//! How old a joined network's netmap may get without its controller
//! confirming it (`netmap-max-age`): past that, the agent stops trusting
//! the peers it lists.
//!
//! A map is confirmed when its controller sends it (whole or as a delta)
//! and, after that, for as long as the connection that brought it stays
//! up. The time of the last confirmation is kept in the state directory,
//! so a reboot without the controller does not make an old map young.

use std::time::{Duration, SystemTime};

use warren_proto::local_api::NetworkState;
use warren_proto::netmap::Netmap;
use warren_proto::NetworkId;

/// The default `netmap-max-age`: a week.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The bounds of how often ages are looked at: a tenth of the maximum age,
/// but no more often than every second and no less often than every minute.
const CHECK_MIN: Duration = Duration::from_secs(1);
const CHECK_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    max_age: Duration,
}

impl Freshness {
    pub fn new(max_age: Duration) -> Self {
        Self { max_age }
    }

    /// How often the daemon should look at the ages.
    pub fn check_interval(&self) -> Duration {
        (self.max_age / 10).clamp(CHECK_MIN, CHECK_MAX)
    }

    /// The map's age if it is past the maximum, else `None`. A clock that
    /// went back makes a map young, not stale.
    pub fn stale_for(&self, confirmed: SystemTime, now: SystemTime) -> Option<Duration> {
        let age = now.duration_since(confirmed).unwrap_or(Duration::ZERO);
        (age > self.max_age).then_some(age)
    }

    /// What `warren status` says of a network gone stale.
    pub fn reason(&self, age: Duration) -> String {
        format!(
            "netmap last confirmed by the controller {} ago, past netmap-max-age {}: peers are not trusted until the controller answers",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(self.max_age)
        )
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_AGE)
    }
}

/// The daemon's side: confirmations, the periodic look and going stale.
impl super::Managed {
    pub fn set_netmap_max_age(&mut self, max_age: Duration) {
        self.freshness = Freshness::new(max_age);
    }

    /// How often [`Managed::check_freshness`] should run.
    pub fn freshness_interval(&self) -> Duration {
        self.freshness.check_interval()
    }

    /// The controller just sent network `id` a map: it is confirmed now,
    /// and for as long as this connection lasts.
    pub(super) fn confirm(&mut self, id: NetworkId) {
        let now = SystemTime::now();
        if let Some(net) = self.nets.get_mut(&id) {
            net.live = true;
            net.confirmed = Some(now);
        }
        self.record_confirmed(id, now);
    }

    fn record_confirmed(&self, id: NetworkId, at: SystemTime) {
        if let Err(e) = self.state.save_netmap_confirmed(&id, at) {
            tracing::warn!(network = %id, error = %e, "could not record when the netmap was confirmed");
        }
    }

    /// Whether a cached map is past the maximum age already (checked before
    /// a restart brings it back): it then stays held, for the next delta
    /// and for `warren status`, but runs no data plane.
    pub(super) fn too_old_to_restore(&mut self, map: &Netmap) -> bool {
        let id = map.network_id;
        let freshness = self.freshness;
        let Some(net) = self.nets.get_mut(&id) else {
            return false;
        };
        if !map.self_node.authorized {
            return false;
        }
        // No record at all is trust state missing: fail closed.
        let confirmed = net.confirmed.unwrap_or(SystemTime::UNIX_EPOCH);
        let Some(age) = freshness.stale_for(confirmed, SystemTime::now()) else {
            return false;
        };
        net.state = NetworkState::Stale;
        net.message = Some(freshness.reason(age));
        net.netmap = Some(map.clone());
        true
    }

    /// Confirms the maps of live networks, and takes the peers away from
    /// networks whose map is past the maximum age.
    pub async fn check_freshness(&mut self) {
        let now = SystemTime::now();
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (id, net) in &mut self.nets {
            if net.live {
                net.confirmed = Some(now);
                live.push(*id);
                continue;
            }
            if net.state != NetworkState::Authorized {
                continue;
            }
            let confirmed = net.confirmed.unwrap_or(SystemTime::UNIX_EPOCH);
            if let Some(age) = self.freshness.stale_for(confirmed, now) {
                stale.push((*id, age));
            }
        }
        for id in live {
            self.record_confirmed(id, now);
        }
        for (id, age) in stale {
            let reason = self.freshness.reason(age);
            tracing::warn!(network = %id, %reason, "netmap too old: no longer trusting its peers");
            self.go_stale(id, reason).await;
        }
    }

    /// Takes a network's data plane, DNS and routes down but keeps its map
    /// (in memory and cached): the controller's next map brings it back.
    async fn go_stale(&mut self, id: NetworkId, reason: String) {
        if let Some(net) = self.nets.get_mut(&id) {
            net.state = NetworkState::Stale;
            net.message = Some(reason);
        }
        // Withdrawn before the interface goes.
        self.sync_effects(id).await;
        if let Some(runner) = self.nets.get_mut(&id).and_then(|n| n.runner.take()) {
            runner.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_goes_stale_only_past_the_maximum_age() {
        let f = Freshness::new(Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(f.stale_for(t0, t0), None);
        assert_eq!(f.stale_for(t0, t0 + Duration::from_secs(60)), None);
        assert_eq!(
            f.stale_for(t0, t0 + Duration::from_secs(61)),
            Some(Duration::from_secs(61))
        );
        // The clock went back: not stale.
        assert_eq!(f.stale_for(t0, t0 - Duration::from_secs(3600)), None);
        let reason = f.reason(Duration::from_secs(61));
        assert!(
            reason.contains("1m 1s ago") && reason.contains("netmap-max-age 1m"),
            "{reason}"
        );
    }

    #[test]
    fn ages_are_looked_at_often_enough_but_not_too_often() {
        assert_eq!(Freshness::default().check_interval(), CHECK_MAX);
        assert_eq!(
            Freshness::new(Duration::from_secs(5)).check_interval(),
            CHECK_MIN
        );
        assert_eq!(
            Freshness::new(Duration::from_secs(30)).check_interval(),
            Duration::from_secs(3)
        );
    }
}
