//! `warren status`: a summary of each network, then one line per peer;
//! `-v` for every detail, `--check` for monitoring.

use std::time::Duration;

use clap::Args;
use time::OffsetDateTime;
use warren_cli_assets::{out, outln};
use warren_proto::local_api::{PathKind, PeerStatus, Status};
use warren_proto::text::printable;

use super::exit::{self, Exit};
use super::health;
use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the local API's JSON.
    #[arg(long)]
    json: bool,
    /// Every detail: the long form, several lines per peer.
    #[arg(short, long)]
    verbose: bool,
    /// Judge the agent's health: print each problem and exit 3 if there is
    /// one (a network refused, expired, stale or waiting for approval; its
    /// controller unreachable for longer than --grace; DNS or routes not
    /// applied), else print `healthy` and exit 0.
    #[arg(long)]
    check: bool,
    /// With --check: how long a controller may be unreachable before it
    /// counts (the agent runs on without it, and reconnects with backoff).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace: Duration,
}

pub fn run(cli: &Cli, args: &StatusArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let status: Status = super::runtime()?.block_on(client::get(&socket, "/v1/status"))?;
    let now = OffsetDateTime::now_utc();
    let problems = health::problems(&status, args.grace);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else if args.check {
        out!("{}", printable(&check_text(&problems)));
    } else if args.verbose {
        out!("{}", printable(&render_long(&status, now)));
    } else {
        out!("{}", printable(&render(&status, &problems, now)));
    }
    if args.check && !problems.is_empty() {
        return Err(Exit::error(
            exit::UNHEALTHY,
            format!("unhealthy: {} problem(s)", problems.len()),
        ));
    }
    Ok(())
}

/// What `--check` prints.
fn check_text(problems: &[String]) -> String {
    if problems.is_empty() {
        return "healthy\n".to_owned();
    }
    problems
        .iter()
        .map(|p| format!("unhealthy: {p}\n"))
        .collect()
}

/// The summary: health, then per network what it is, then its peers.
fn render(status: &Status, problems: &[String], now: OffsetDateTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let health = match problems.len() {
        0 => "healthy".to_owned(),
        n => format!("{n} problem(s)"),
    };
    let _ = writeln!(
        out,
        "node {}, warren {}: {health}",
        status.node_id, status.version
    );
    for problem in problems {
        let _ = writeln!(out, "  ! {problem}");
    }
    if status.networks.is_empty() {
        let _ = writeln!(out, "{}", health::NO_NETWORKS);
    }
    for net in &status.networks {
        let _ = writeln!(out, "{}", health::heading(net));
        let peers: Vec<&PeerStatus> = status
            .peers
            .iter()
            .filter(|p| p.network == net.id)
            .collect();
        out.push_str(&health::network_summary(net, &peers, now));
        out.push_str(&peer_table(&peers, now));
    }
    out
}

/// One line per peer, in aligned columns.
fn peer_table(peers: &[&PeerStatus], now: OffsetDateTime) -> String {
    if peers.is_empty() {
        return String::new();
    }
    let mut rows = vec![[
        "PEER".to_owned(),
        "ADDRESS".to_owned(),
        "PATH".to_owned(),
        "RTT".to_owned(),
        "HANDSHAKE".to_owned(),
        "RX/TX".to_owned(),
    ]];
    for peer in peers {
        let name = peer
            .name
            .clone()
            .unwrap_or_else(|| peer.public_key.to_string());
        let address = peer
            .addresses
            .first()
            .map(|a| a.addr().to_string())
            .unwrap_or_default();
        let path = match (peer.path, peer.online) {
            (PathKind::Direct, _) => {
                format!("direct {}", peer.endpoint.as_deref().unwrap_or_default())
            }
            (PathKind::Relay, _) => "relay".to_owned(),
            (PathKind::None, Some(false)) => "offline".to_owned(),
            (PathKind::None, _) => "unreachable".to_owned(),
        };
        let rtt = peer
            .latency_ms
            .map(|ms| format!("{ms:.2} ms"))
            .unwrap_or_else(|| "-".to_owned());
        rows.push([
            name,
            address,
            path,
            rtt,
            handshake_age(peer, now),
            format!("{}/{}", bytes(peer.rx_bytes), bytes(peer.tx_bytes)),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(&format!("  {}\n", cells.join("  ").trim_end()));
    }
    out
}

fn handshake_age(peer: &PeerStatus, now: OffsetDateTime) -> String {
    match peer.last_handshake {
        Some(t) => format!("{}s ago", (now - t).whole_seconds().max(0)),
        None => "never".to_owned(),
    }
}

/// The long form (`-v`): every field of every network and peer.
fn render_long(status: &Status, now: OffsetDateTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} ({}), warren {}",
        status.node_id, status.public_key, status.version
    );
    if status.networks.is_empty() {
        let _ = writeln!(out, "{}", health::NO_NETWORKS);
    }
    for net in &status.networks {
        let addresses: Vec<String> = net.addresses.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "{}", health::heading(net));
        if let Some(message) = &net.message {
            let _ = writeln!(out, "  {message}");
        }
        if let Some(line) = health::data_plane_line(net) {
            let _ = writeln!(out, "  {line}");
        }
        if let Some(controller) = &net.controller {
            let link = if net.controller_connected {
                super::health::connected(net.controller_transport)
            } else {
                "not connected".to_owned()
            };
            let _ = writeln!(out, "  controller {controller} ({link})");
        }
        if let Some(fp) = &net.fingerprint {
            let _ = writeln!(out, "  controller certificate {fp}");
        }
        if let Some(fqdn) = net.fqdn.as_ref().filter(|f| !f.is_empty()) {
            let _ = writeln!(out, "  name {fqdn}");
        }
        if let Some(site) = &net.site {
            let _ = writeln!(out, "  router of site {site}");
        }
        health::sign_in_lines(&mut out, net, now);
        if let Some(interface) = &net.interface {
            let _ = writeln!(
                out,
                "  interface {interface} ({}), port {}, mtu {}, offload {}",
                addresses.join(", "),
                net.listen_port.unwrap_or(0),
                net.mtu,
                if net.offload { "on" } else { "off" }
            );
        }
        for peer in status.peers.iter().filter(|p| p.network == net.id) {
            render_peer(&mut out, peer, now);
        }
    }
    out
}

fn render_peer(out: &mut String, peer: &warren_proto::local_api::PeerStatus, now: OffsetDateTime) {
    use std::fmt::Write;
    let allowed: Vec<String> = peer.addresses.iter().map(|a| a.to_string()).collect();
    let handshake = handshake_age(peer, now);
    let online = match peer.online {
        Some(true) => " (online)",
        Some(false) => " (offline)",
        None => "",
    };
    let _ = writeln!(
        out,
        "  peer {} {}{online}",
        peer.name.as_deref().unwrap_or(""),
        peer.public_key
    );
    let _ = writeln!(
        out,
        "    endpoint {}",
        peer.endpoint.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(out, "    allowed ips {}", allowed.join(", "));
    let _ = writeln!(out, "    last handshake {handshake}");
    let path = match peer.path {
        warren_proto::local_api::PathKind::Direct => "direct",
        warren_proto::local_api::PathKind::Relay => "relay",
        warren_proto::local_api::PathKind::None => "none",
    };
    let latency = peer
        .latency_ms
        .map(|ms| format!(", {ms:.2} ms"))
        .unwrap_or_default();
    let _ = writeln!(out, "    path {path}{latency}");
    let _ = writeln!(
        out,
        "    transfer {} received, {} sent",
        bytes(peer.rx_bytes),
        bytes(peer.tx_bytes)
    );
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::health::tests::{joined, peer, status_of};
    use warren_proto::local_api::NetworkState;

    #[test]
    fn the_summary_comes_first_then_one_line_per_peer() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100);
        let mut net = joined(NetworkState::Authorized, true);
        net.site = Some("m".into());
        let mut direct = peer("db", PathKind::Direct, Some(true));
        direct.last_handshake = Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(90));
        direct.rx_bytes = 2048;
        direct.latency_ms = Some(0.42);
        let status = status_of(
            vec![net],
            vec![
                direct,
                peer("web", PathKind::Relay, Some(true)),
                peer("cold", PathKind::None, Some(false)),
                peer("lost", PathKind::None, Some(true)),
            ],
        );
        let text = render(&status, &[], now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(": healthy"), "{text}");
        assert!(
            text.contains("peers 1 direct, 1 relayed, 1 unreachable, 1 offline"),
            "{text}"
        );
        assert!(
            text.contains("controller 192.0.2.10:7443 connected"),
            "{text}"
        );
        assert!(text.contains("DNS applied; routes none"), "{text}");
        assert!(text.contains("  router of site m\n"), "{text}");
        let db = lines
            .iter()
            .find(|l| l.trim_start().starts_with("db "))
            .unwrap();
        for column in [
            "10.147.0.2",
            "direct 192.0.2.2:51820",
            "0.42 ms",
            "10s ago",
            "2.00 KiB/0 B",
        ] {
            assert!(db.contains(column), "{column} not in {db:?}");
        }
        // One line per peer: the table is its heading and four rows.
        let table = lines
            .iter()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .count();
        assert!(table >= 5, "{text}");
        assert!(
            !text.contains("allowed ips"),
            "the long form leaked: {text}"
        );
        let problems = vec!["network x: broken".to_owned()];
        let text = render(&status, &problems, now);
        assert!(
            text.lines().next().unwrap().ends_with(": 1 problem(s)"),
            "{text}"
        );
        assert!(text.contains("  ! network x: broken"), "{text}");
    }

    #[test]
    fn the_long_form_names_peers_and_handshake_age() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100);
        let mut p = peer("db", PathKind::Direct, None);
        p.last_handshake = Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(90));
        p.rx_bytes = 2048;
        p.tx_bytes = 10;
        let status = status_of(vec![joined(NetworkState::Authorized, true)], vec![p]);
        let text = render_long(&status, now);
        assert!(text.contains("last handshake 10s ago"), "{text}");
        assert!(text.contains("2.00 KiB received, 10 B sent"), "{text}");
        assert!(text.contains("endpoint 192.0.2.2:51820"), "{text}");
        assert!(
            text.contains(&format!("controller certificate {}", "ab".repeat(32))),
            "{text}"
        );
    }

    #[test]
    fn both_forms_show_a_data_plane_that_died() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100);
        let mut net = joined(NetworkState::Authorized, true);
        net.data_plane = Some(warren_proto::local_api::DataPlaneHealth {
            deaths: 1,
            last_error: "reading the TUN device: gone".into(),
            last_death_secs: 2,
            restart_in_secs: Some(1),
            gave_up: false,
        });
        let status = status_of(vec![net], vec![]);
        let problems = health::problems(&status, Duration::from_secs(30));
        let short = render(&status, &problems, now);
        let long = render_long(&status, now);
        for text in [&short, &long] {
            assert!(
                text.contains("data plane died 1 time(s), last 2s ago: reading the TUN device: gone (restart in 1s)"),
                "{text}"
            );
        }
        assert!(short.contains(": 1 problem(s)"), "{short}");
    }

    #[test]
    fn check_prints_healthy_or_each_problem() {
        assert_eq!(check_text(&[]), "healthy\n");
        let text = check_text(&["a".to_owned(), "b".to_owned()]);
        assert_eq!(text, "unhealthy: a\nunhealthy: b\n");
    }
}
