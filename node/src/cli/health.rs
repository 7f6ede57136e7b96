//! What `warren status` puts first and `warren status --check` judges:
//! each network's summary (controller, DNS, routes, paths, sign-in), and
//! the problems that make the agent unhealthy.

use std::fmt::Write;
use std::time::Duration;

use time::OffsetDateTime;
use warren_proto::local_api::{
    ControlTransport, Effect, EffectState, NetworkState, NetworkStatus, PathKind, PeerStatus,
    Status,
};
use warren_proto::text::printable;

/// Everything unhealthy, one line each; empty when all is well. A network
/// taken down (`warren down`) is not a problem; a controller away is one
/// only after `grace`.
pub fn problems(status: &Status, grace: Duration) -> Vec<String> {
    let mut out = Vec::new();
    for net in status
        .networks
        .iter()
        .filter(|n| n.state != NetworkState::Static)
    {
        let id = &net.id;
        let message = net.message.as_deref().map(printable).unwrap_or_default();
        match net.state {
            NetworkState::Down | NetworkState::Static => continue,
            NetworkState::Refused => out.push(format!(
                "network {id}: refused by the controller: {message}"
            )),
            NetworkState::Conflict => {
                out.push(format!("network {id}: refused by this agent: {message}"))
            }
            NetworkState::Expired => out.push(format!(
                "network {id}: the sign-in ran out: `warren login {id}`"
            )),
            NetworkState::Stale => out.push(format!("network {id}: stale: {message}")),
            NetworkState::Failed => out.push(format!("network {id}: failed: {message}")),
            NetworkState::Pending => out.push(format!(
                "network {id}: waiting for an admin to authorize this node"
            )),
            NetworkState::Connecting | NetworkState::Authorized => {}
        }
        if !net.controller_connected {
            let away = Duration::from_secs(net.controller_down_secs.unwrap_or(0));
            if away >= grace {
                out.push(format!(
                    "network {id}: controller {} unreachable for {}{}",
                    net.controller.as_deref().unwrap_or("?"),
                    humantime::format_duration(away),
                    net.controller_error
                        .as_ref()
                        .map(|e| format!(": {}", printable(&e.message)))
                        .unwrap_or_default()
                ));
            }
        }
        if net.state != NetworkState::Failed {
            out.extend(data_plane_problem(net));
        }
        for (what, effect) in [("DNS", &net.dns), ("routes", &net.routes)] {
            if effect.state == EffectState::Failed {
                out.push(format!(
                    "network {id}: {what} not applied: {}",
                    printable(effect.error.as_deref().unwrap_or("unknown error"))
                ));
            }
        }
    }
    for net in status
        .networks
        .iter()
        .filter(|n| n.state == NetworkState::Static)
    {
        out.extend(data_plane_problem(net));
    }
    for task in &status.task_failures {
        if task.gave_up || task.last_death_secs < RECENT_DEATH.as_secs() {
            out.push(format!(
                "agent task {} died {} time(s), {} ago{}: {}",
                task.task,
                task.deaths,
                humantime::format_duration(Duration::from_secs(task.last_death_secs)),
                if task.gave_up { ", not restarted" } else { "" },
                printable(&task.error)
            ));
        }
    }
    out
}

/// A data plane death this recent still makes the agent unhealthy, even
/// once restarted: a monitor polling now and then sees it flap.
pub const RECENT_DEATH: Duration = Duration::from_secs(600);

/// A data plane that is dead now, given up on, or died lately.
fn data_plane_problem(net: &NetworkStatus) -> Option<String> {
    let health = net.data_plane.as_ref()?;
    let ago = humantime::format_duration(Duration::from_secs(health.last_death_secs));
    let error = printable(&health.last_error);
    let id = &net.id;
    if health.gave_up {
        Some(format!(
            "network {id}: the data plane died {} time(s) and is not restarted: {error}",
            health.deaths
        ))
    } else if let Some(secs) = health.restart_in_secs {
        Some(format!(
            "network {id}: the data plane died {ago} ago ({error}); restart in {secs}s"
        ))
    } else if health.last_death_secs < RECENT_DEATH.as_secs() {
        Some(format!(
            "network {id}: the data plane died {ago} ago and was restarted ({} death(s)): {error}",
            health.deaths
        ))
    } else {
        None
    }
}

/// What `warren status` says of a data plane that died, if one did.
pub fn data_plane_line(net: &NetworkStatus) -> Option<String> {
    let health = net.data_plane.as_ref()?;
    let ago = humantime::format_duration(Duration::from_secs(health.last_death_secs));
    let now = if health.gave_up {
        "not restarted".to_owned()
    } else if let Some(secs) = health.restart_in_secs {
        format!("restart in {secs}s")
    } else {
        "restarted".to_owned()
    };
    Some(format!(
        "data plane died {} time(s), last {ago} ago: {} ({now})",
        health.deaths,
        printable(&health.last_error)
    ))
}

/// Peers of a network by how they are reached.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PathCounts {
    pub direct: usize,
    pub relayed: usize,
    /// Online (or static) peers with no working path.
    pub unreachable: usize,
    /// Peers the controller says are offline.
    pub offline: usize,
}

pub fn path_counts<'a>(peers: impl Iterator<Item = &'a PeerStatus>) -> PathCounts {
    let mut counts = PathCounts::default();
    for peer in peers {
        match (peer.path, peer.online) {
            (PathKind::Direct, _) => counts.direct += 1,
            (PathKind::Relay, _) => counts.relayed += 1,
            (PathKind::None, Some(false)) => counts.offline += 1,
            (PathKind::None, _) => counts.unreachable += 1,
        }
    }
    counts
}

/// The lines under a network's heading: this node, the controller, DNS
/// and routes, the peers' paths, the sign-in.
pub fn network_summary(net: &NetworkStatus, peers: &[&PeerStatus], now: OffsetDateTime) -> String {
    let mut out = String::new();
    if let Some(message) = &net.message {
        let _ = writeln!(out, "  {message}");
    }
    if net.state == NetworkState::Down {
        let _ = writeln!(out, "  down (`warren up {}` brings it back)", net.id);
    }
    let addresses: Vec<String> = net.addresses.iter().map(|a| a.to_string()).collect();
    if let Some(fqdn) = net.fqdn.as_ref().filter(|f| !f.is_empty()) {
        let on = net
            .interface
            .as_deref()
            .map(|i| format!(" on {i}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  this node {fqdn} ({}){on}", addresses.join(", "));
    }
    if let Some(site) = &net.site {
        let _ = writeln!(out, "  router of site {site}");
    }
    if let Some(controller) = &net.controller {
        let link = match (net.state, net.controller_connected) {
            (NetworkState::Down, _) => "not asked while down".to_owned(),
            (_, true) => connected(net.controller_transport),
            (_, false) => format!(
                "not connected{}{}",
                net.controller_down_secs
                    .map(|s| format!(
                        " for {}",
                        humantime::format_duration(Duration::from_secs(s))
                    ))
                    .unwrap_or_default(),
                net.controller_error
                    .as_ref()
                    .map(|e| format!(": {}", e.message))
                    .unwrap_or_default()
            ),
        };
        let _ = writeln!(out, "  controller {controller} {link}");
    }
    if let Some(line) = data_plane_line(net) {
        let _ = writeln!(out, "  {line}");
    }
    if net.state != NetworkState::Down {
        let _ = writeln!(
            out,
            "  {}; {}",
            effect_text("DNS", &net.dns),
            effect_text("routes", &net.routes)
        );
        let c = path_counts(peers.iter().copied());
        let _ = writeln!(
            out,
            "  peers {} direct, {} relayed, {} unreachable, {} offline",
            c.direct, c.relayed, c.unreachable, c.offline
        );
    }
    sign_in_lines(&mut out, net, now);
    out
}

/// A network's heading line in `warren status`.
pub fn heading(net: &NetworkStatus) -> String {
    format!(
        "\nnetwork {} {}: {}",
        net.id,
        net.name.as_deref().unwrap_or(""),
        net.state.as_str()
    )
}

/// What `warren status` says when no network is joined.
pub const NO_NETWORKS: &str =
    "no networks: `warren join NETWORK-ID --controller HOST:PORT --fingerprint FINGERPRINT`";

/// The sign-in of a device people sign in: the page, a refusal, the owner
/// and when the sign-in runs out.
pub fn sign_in_lines(out: &mut String, net: &NetworkStatus, now: OffsetDateTime) {
    if let Some(url) = &net.sign_in_url {
        let _ = writeln!(out, "  sign in to connect this device: {url}");
    }
    if let Some(reason) = &net.sign_in_refused {
        let _ = writeln!(
            out,
            "  the latest sign-in was refused: {}",
            printable(reason)
        );
    }
    if let Some(owner) = &net.owner {
        let _ = writeln!(out, "  owner {owner}");
    }
    if let Some(line) = net
        .expires_at
        .as_deref()
        .and_then(|e| expiry_line(e, &net.id, now))
    {
        let _ = writeln!(out, "  {line}");
    }
}

fn effect_text(what: &str, effect: &Effect) -> String {
    match effect.state {
        EffectState::Applied => format!("{what} applied"),
        EffectState::None => format!("{what} none"),
        EffectState::Failed => format!(
            "{what} NOT applied ({})",
            effect.error.as_deref().unwrap_or("unknown error")
        ),
    }
}

/// Warn this long before a device's sign-in runs out.
const EXPIRY_WARNING: time::Duration = time::Duration::days(7);

/// When the owner's sign-in runs out, with a warning in its last week.
pub fn expiry_line(expires_at: &str, network: &str, now: OffsetDateTime) -> Option<String> {
    let at =
        OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339).ok()?;
    let left = at - now;
    Some(if left <= time::Duration::ZERO {
        format!("sign-in expired {expires_at}: run `warren login {network}`")
    } else if left <= EXPIRY_WARNING {
        format!(
            "warning: the sign-in expires in {} ({expires_at}): run `warren login {network}` to renew it",
            humantime::format_duration(std::time::Duration::from_secs(
                left.whole_minutes().max(1).unsigned_abs() * 60
            ))
        )
    } else {
        format!("sign-in expires {expires_at}")
    })
}

#[cfg(test)]
#[path = "health_tests.rs"]
pub(crate) mod tests;

/// "connected", saying so when the connection had to fall back to TCP.
pub(super) fn connected(transport: Option<ControlTransport>) -> String {
    match transport {
        Some(ControlTransport::Tcp) => "connected over TCP: no UDP answer".to_owned(),
        _ => "connected".to_owned(),
    }
}
