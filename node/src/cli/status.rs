//! `warren status`: the agent's interface, peers and counters.

use clap::Args;
use time::OffsetDateTime;
use warren_proto::local_api::Status;

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
        print!("{}", render(&status, OffsetDateTime::now_utc()));
    }
    Ok(())
}

fn render(status: &Status, now: OffsetDateTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let addresses: Vec<String> = status.addresses.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(
        out,
        "interface {} ({}), port {}, mtu {}, offload {}",
        status.interface,
        addresses.join(", "),
        status.listen_port,
        status.mtu,
        if status.offload { "on" } else { "off" }
    );
    let _ = writeln!(out, "public key {}", status.public_key);
    for peer in &status.peers {
        let allowed: Vec<String> = peer.addresses.iter().map(|a| a.to_string()).collect();
        let handshake = match peer.last_handshake {
            Some(t) => format!("{}s ago", (now - t).whole_seconds().max(0)),
            None => "never".to_owned(),
        };
        let _ = writeln!(out, "\npeer {}", peer.public_key);
        let _ = writeln!(
            out,
            "  endpoint {}",
            peer.endpoint.as_deref().unwrap_or("(none)")
        );
        let _ = writeln!(out, "  allowed ips {}", allowed.join(", "));
        let _ = writeln!(out, "  last handshake {handshake}");
        let _ = writeln!(
            out,
            "  transfer {} received, {} sent",
            bytes(peer.rx_bytes),
            bytes(peer.tx_bytes)
        );
    }
    out
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
    fn human_output_names_peers_and_handshake_age() {
        let key = warren_proto::NodePrivateKey::generate().public_key();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100);
        let status = Status {
            public_key: key,
            interface: "warren0".into(),
            listen_port: 51820,
            addresses: vec!["10.99.0.1/24".parse().unwrap()],
            mtu: 1420,
            offload: true,
            peers: vec![warren_proto::local_api::PeerStatus {
                public_key: key,
                addresses: vec!["10.99.0.2/32".parse().unwrap()],
                endpoint: Some("192.0.2.2:51820".into()),
                last_handshake: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(90)),
                rx_bytes: 2048,
                tx_bytes: 10,
                persistent_keepalive: None,
            }],
            counters: Default::default(),
        };
        let text = render(&status, now);
        assert!(text.contains("last handshake 10s ago"), "{text}");
        assert!(text.contains("2.00 KiB received, 10 B sent"), "{text}");
        assert!(text.contains("endpoint 192.0.2.2:51820"), "{text}");
    }
}
