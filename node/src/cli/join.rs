//! `warren join` and `warren leave`: membership of networks run by a controller.

use std::time::{Duration, Instant};
use warren_proto::text::printable;

use clap::Args;
use warren_proto::local_api::{JoinRequest, NetworkState, NetworkStatus, Status};
use warren_proto::NetworkId;

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The 16-hex-digit network ID.
    network_id: NetworkId,
    /// The controller's QUIC address, HOST:PORT.
    #[arg(long)]
    controller: String,
    /// SHA-256 fingerprint of the controller's certificate
    /// (`warren-controller fingerprint`). Without it the first certificate
    /// seen is trusted and pinned.
    #[arg(long)]
    fingerprint: Option<String>,
    /// A pre-auth key: join without waiting for approval.
    #[arg(long)]
    key: Option<String>,
    /// The name to ask for (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Print the network's status as JSON.
    #[arg(long)]
    json: bool,
    /// Let the controller name this DNS zone (and names under it) for the
    /// network; without it only zones under warren.internal, internal and
    /// home.arpa are accepted. Repeat for more zones.
    #[arg(long = "allow-zone", value_name = "ZONE")]
    allow_zones: Vec<String>,
    /// How long to wait for the controller's answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    network_id: NetworkId,
}

pub fn join(cli: &Cli, args: &JoinArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let request = JoinRequest {
        network_id: args.network_id,
        controller: args.controller.clone(),
        fingerprint: args.fingerprint.clone(),
        preauth_key: args.key.clone(),
        name: args.name.clone(),
        allow_zones: args.allow_zones.clone(),
    };
    let runtime = super::runtime()?;
    let mut network: NetworkStatus =
        runtime.block_on(client::post(&socket, "/v1/networks", &request))?;
    let deadline = Instant::now() + args.wait;
    let id = args.network_id.to_string();
    while network.state == NetworkState::Connecting && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let status: Status = runtime.block_on(client::get(&socket, "/v1/status"))?;
        if let Some(n) = status.networks.into_iter().find(|n| n.id == id) {
            network = n;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&network)?);
        if matches!(
            network.state,
            NetworkState::Refused | NetworkState::Conflict
        ) {
            anyhow::bail!(
                "joining {id} failed: {}",
                network.message.as_deref().unwrap_or("refused")
            );
        }
        return Ok(());
    }
    match network.state {
        NetworkState::Authorized => {
            let addresses: Vec<String> = network.addresses.iter().map(|a| a.to_string()).collect();
            let fqdn = network.fqdn.as_deref().unwrap_or("?");
            println!(
                "joined {id} as {} ({})",
                printable(fqdn),
                addresses.join(", ")
            );
        }
        NetworkState::Pending => {
            println!("joined {id}: waiting for an admin to authorize this node")
        }
        NetworkState::Connecting | NetworkState::Stale => {
            println!("joining {id}: the controller has not answered yet; see `warren status`")
        }
        NetworkState::Refused | NetworkState::Conflict => anyhow::bail!(
            "joining {id} failed: {}",
            network.message.as_deref().unwrap_or("refused")
        ),
        NetworkState::Static => {}
    }
    Ok(())
}

pub fn leave(cli: &Cli, args: &LeaveArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let path = format!("/v1/networks/{}", args.network_id);
    super::runtime()?.block_on(client::delete(&socket, &path))?;
    println!("left {}", args.network_id);
    Ok(())
}
