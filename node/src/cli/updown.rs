//! `warren down` and `warren up`: take a network offline and bring it back,
//! keeping the membership, the address and the name (`leave` gives them up).

use clap::Args;
use warren_cli_assets::outln;
use warren_proto::local_api::NetworkStatus;
use warren_proto::text::printable;
use warren_proto::NetworkId;

use super::join::{settle, WaitArgs};
use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct DownArgs {
    network_id: NetworkId,
    /// Print the network's status as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    network_id: NetworkId,
    /// Print the network's status as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    wait: WaitArgs,
}

pub fn down(cli: &Cli, args: &DownArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let path = format!("/v1/networks/{}/down", args.network_id);
    let network: NetworkStatus =
        super::runtime()?.block_on(client::post(&socket, &path, &serde_json::json!({})))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&network)?);
    } else {
        outln!("{}", down_text(&network));
    }
    Ok(())
}

pub fn up(cli: &Cli, args: &UpArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let path = format!("/v1/networks/{}/up", args.network_id);
    let runtime = super::runtime()?;
    let network: NetworkStatus =
        runtime.block_on(client::post(&socket, &path, &serde_json::json!({})))?;
    settle(
        &runtime,
        &socket,
        network,
        &args.wait,
        args.json,
        false,
        || anyhow::bail!("the network waits for a sign-in: `warren login` shows the page"),
    )
}

/// What `warren down` says: what went and what stayed.
fn down_text(network: &NetworkStatus) -> String {
    let addresses: Vec<String> = network.addresses.iter().map(|a| a.to_string()).collect();
    let kept = match (&network.fqdn, addresses.is_empty()) {
        (Some(fqdn), false) => format!(
            "the membership, {} and {} stay",
            addresses.join(", "),
            printable(fqdn)
        ),
        _ => "the membership stays".to_owned(),
    };
    format!(
        "{} is down: its interface and peers are gone; {kept}. `warren up {}` brings it back",
        network.id, network.id
    )
}
