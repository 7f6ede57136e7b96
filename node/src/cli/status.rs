//! `warren status`: the agent's interface, peers and counters.

use clap::Args;
use time::OffsetDateTime;
use warren_proto::local_api::Status;
use warren_proto::text::printable;

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the local API's JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &StatusArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let status: Status = super::runtime()?.block_on(client::get(&socket, "/v1/status"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", printable(&render(&status, OffsetDateTime::now_utc())));
    }
    Ok(())
}

fn render(status: &Status, now: OffsetDateTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} ({}), warren {}",
        status.node_id, status.public_key, status.version
    );
    if status.networks.is_empty() {
        let _ = writeln!(
            out,
            "no networks: `warren join NETWORK-ID --controller HOST:PORT`"
        );
    }
    for net in &status.networks {
        let addresses: Vec<String> = net.addresses.iter().map(|a| a.to_string()).collect();
        let state = serde_json::to_value(net.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nnetwork {} {}: {state}",
            net.id,
            net.name.as_deref().unwrap_or("")
        );
        if let Some(message) = &net.message {
            let _ = writeln!(out, "  {message}");
        }
        if let Some(controller) = &net.controller {
            let link = if net.controller_connected {
                "connected"
            } else {
                "not connected"
            };
            let _ = writeln!(out, "  controller {controller} ({link})");
        }
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
        if let Some(fqdn) = net.fqdn.as_ref().filter(|f| !f.is_empty()) {
            let _ = writeln!(out, "  name {fqdn}");
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

/// Warn this long before a device's sign-in runs out.
const EXPIRY_WARNING: time::Duration = time::Duration::days(7);

/// When the owner's sign-in runs out, with a warning in its last week.
fn expiry_line(expires_at: &str, network: &str, now: OffsetDateTime) -> Option<String> {
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

fn render_peer(out: &mut String, peer: &warren_proto::local_api::PeerStatus, now: OffsetDateTime) {
    use std::fmt::Write;
    let allowed: Vec<String> = peer.addresses.iter().map(|a| a.to_string()).collect();
    let handshake = match peer.last_handshake {
        Some(t) => format!("{}s ago", (now - t).whole_seconds().max(0)),
        None => "never".to_owned(),
    };
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

    #[test]
    fn the_sign_in_expiry_is_shown_and_warned_about_in_its_last_week() {
        let now = OffsetDateTime::parse(
            "2026-12-05T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let net = "8056c2e21c000001";
        let far = expiry_line("2027-06-01T12:00:00Z", net, now).unwrap();
        assert_eq!(far, "sign-in expires 2027-06-01T12:00:00Z");
        let soon = expiry_line("2026-12-08T12:00:00Z", net, now).unwrap();
        assert!(
            soon.starts_with("warning: the sign-in expires in 3days"),
            "{soon}"
        );
        assert!(soon.contains("warren login 8056c2e21c000001"), "{soon}");
        let gone = expiry_line("2026-12-05T11:00:00Z", net, now).unwrap();
        assert!(gone.starts_with("sign-in expired"), "{gone}");
        assert_eq!(expiry_line("not a time", net, now), None);
    }

    #[test]
    fn human_output_names_peers_and_handshake_age() {
        let key = warren_proto::NodePrivateKey::generate().public_key();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100);
        let status = Status {
            public_key: key,
            node_id: warren_proto::NodeId::from_key(&key),
            version: "0.1.0".into(),
            networks: vec![warren_proto::local_api::NetworkStatus {
                id: "static".into(),
                name: None,
                controller: None,
                controller_connected: false,
                state: warren_proto::local_api::NetworkState::Static,
                message: None,
                fqdn: None,
                interface: Some("warren0".into()),
                listen_port: Some(51820),
                addresses: vec!["10.99.0.1/24".parse().unwrap()],
                mtu: 1420,
                offload: true,
                netmap_version: None,
                counters: Default::default(),
                filter: Default::default(),
                sign_in_url: None,
                owner: None,
                expires_at: None,
                sign_in_refused: None,
            }],
            peers: vec![warren_proto::local_api::PeerStatus {
                network: "static".into(),
                public_key: key,
                node_id: None,
                name: None,
                online: None,
                addresses: vec!["10.99.0.2/32".parse().unwrap()],
                endpoint: Some("192.0.2.2:51820".into()),
                last_handshake: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(90)),
                rx_bytes: 2048,
                tx_bytes: 10,
                persistent_keepalive: None,
                path: warren_proto::local_api::PathKind::Direct,
                latency_ms: None,
            }],
            counters: Default::default(),
        };
        let text = render(&status, now);
        assert!(text.contains("last handshake 10s ago"), "{text}");
        assert!(text.contains("2.00 KiB received, 10 B sent"), "{text}");
        assert!(text.contains("endpoint 192.0.2.2:51820"), "{text}");
    }
}
