//! How long each pair of agents takes to settle on its path: every pair is
//! watched at once, from the moment the later of its two joins returned
//! until both agents report the path NATLAB.md expects.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use warren_lab::natpair::{expected_path, NatKind, PeerPath};
use warren_lab::routes_lab::{RoutesLab, Site};
use warren_lab::status::Status;

/// How often the agents are asked; a figure is late by at most this plus
/// the time the three `warren status` calls take.
pub const POLL: Duration = Duration::from_millis(100);

/// What one agent says of one peer: its path, and a line for people.
struct View {
    path: String,
    said: String,
}

/// One pair and what became of it.
pub struct PairPath {
    pub a: &'static str,
    pub b: &'static str,
    pub kinds: (NatKind, NatKind),
    pub want: PeerPath,
    /// How long after the later join both agents first reported `want`,
    /// and what `a` said of `b` then; or what they said last, on timeout.
    pub outcome: Result<(Duration, String), String>,
}

/// Watches every pair of `sites` until each has settled or `within` runs
/// out (each unsettled pair then says so, with what its agents said last).
pub fn settle(
    world: &RoutesLab,
    sites: &[(&'static str, NatKind)],
    joined: &BTreeMap<&str, Instant>,
    within: Duration,
) -> anyhow::Result<Vec<PairPath>> {
    let mut pairs = Vec::new();
    for (i, (a, kind_a)) in sites.iter().enumerate() {
        for (b, kind_b) in &sites[i + 1..] {
            pairs.push(PairPath {
                a,
                b,
                kinds: (*kind_a, *kind_b),
                want: expected_path(*kind_a, *kind_b),
                outcome: Err("not looked at yet".to_owned()),
            });
        }
    }
    let since = |name: &str| joined.get(name).copied().unwrap_or_else(Instant::now);
    let deadline = Instant::now() + within;
    loop {
        let mut statuses = BTreeMap::new();
        for (name, _) in sites {
            statuses.insert(*name, world.site(name)?.agent.status()?);
        }
        let seen_at = Instant::now();
        for pair in pairs.iter_mut().filter(|p| p.outcome.is_err()) {
            let (site_a, site_b) = (world.site(pair.a)?, world.site(pair.b)?);
            let ab = view(&statuses, site_a, site_b);
            let ba = view(&statuses, site_b, site_a);
            let want = pair.want.to_string();
            pair.outcome = if ab.path == want && ba.path == want {
                let later = since(pair.a).max(since(pair.b));
                Ok((seen_at.saturating_duration_since(later), ab.said))
            } else {
                Err(format!("{}: {}, {}: {}", pair.a, ab.path, pair.b, ba.path))
            };
        }
        if pairs.iter().all(|p| p.outcome.is_ok()) {
            return Ok(pairs);
        }
        if Instant::now() >= deadline {
            for pair in pairs.iter_mut() {
                if let Err(last) = &pair.outcome {
                    pair.outcome = Err(format!(
                        "timed out after {} s (last seen: {last})",
                        within.as_secs()
                    ));
                }
            }
            return Ok(pairs);
        }
        thread::sleep(POLL);
    }
}

/// What `from`'s status says of `to`.
fn view(statuses: &BTreeMap<&str, Status>, from: &Site, to: &Site) -> View {
    let peer = statuses
        .get(from.name.as_str())
        .and_then(|s| s.peer(to.agent.public_key()).ok());
    let Some(peer) = peer else {
        return View {
            path: "not a peer yet".to_owned(),
            said: String::new(),
        };
    };
    let text = |key: &str| {
        peer.0
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    let latency = peer
        .0
        .get("latency_ms")
        .and_then(serde_json::Value::as_f64)
        .map_or_else(String::new, |ms| format!(", {ms:.2} ms"));
    View {
        path: text("path"),
        said: format!(
            "{} sees {} at {}{latency}",
            from.name,
            to.name,
            text("endpoint")
        ),
    }
}
