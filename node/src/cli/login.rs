//! `warren login NETWORK`: the device's owner signs it in again in a
//! browser, before its sign-in runs out (which starts the period anew) or
//! after (which brings the device back).

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use warren_cli_assets::outln;
use warren_proto::local_api::{NetworkState, NetworkStatus, Status};
use warren_proto::text::printable;
use warren_proto::NetworkId;

use super::Cli;
use crate::client;

/// How long the controller gets to send the page.
const PAGE_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The 16-hex-digit network ID.
    network_id: NetworkId,
    /// How long to wait for the sign-in in a browser.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    sign_in_wait: Duration,
}

pub fn login(cli: &Cli, args: &LoginArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let id = args.network_id.to_string();
    let runtime = super::runtime()?;
    let asked: NetworkStatus = runtime.block_on(client::post(
        &socket,
        &format!("/v1/networks/{id}/login"),
        &serde_json::json!({}),
    ))?;
    let before = asked.expires_at.clone();
    let current = || -> anyhow::Result<NetworkStatus> {
        std::thread::sleep(Duration::from_millis(200));
        let status: Status = runtime.block_on(client::get(&socket, "/v1/status"))?;
        status
            .networks
            .into_iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow::anyhow!("network {id} is no longer joined"))
    };
    let deadline = Instant::now() + PAGE_WAIT;
    let mut network = asked;
    while network.sign_in_url.is_none() && Instant::now() < deadline {
        network = current()?;
    }
    let Some(url) = network.sign_in_url.clone() else {
        bail!(
            "the controller sent no sign-in page within {}s (is sign-in enabled, and is the controller reachable?); see `warren status`",
            PAGE_WAIT.as_secs()
        );
    };
    warren_cli_assets::errln!(
        "To sign this device in again, open this page and sign in:\n\n    {}\n",
        printable(&url)
    );
    warren_cli_assets::errln!(
        "waiting for the sign-in (up to {})...",
        humantime::format_duration(args.sign_in_wait)
    );
    let renewed = |n: &NetworkStatus| n.state == NetworkState::Authorized && n.expires_at != before;
    let deadline = Instant::now() + args.sign_in_wait;
    while !renewed(&network) && network.sign_in_refused.is_none() && Instant::now() < deadline {
        network = current()?;
    }
    if let Some(reason) = &network.sign_in_refused {
        bail!(
            "the sign-in was refused: {}; `warren login {id}` again shows a new page",
            printable(reason)
        );
    }
    if !renewed(&network) {
        bail!(
            "nobody signed this device in within {}; `warren login {id}` again shows a new page",
            humantime::format_duration(args.sign_in_wait)
        );
    }
    outln!(
        "signed in again: {} is on {id}{}{}",
        printable(network.fqdn.as_deref().unwrap_or("this device")),
        network
            .owner
            .as_deref()
            .map(|o| format!(", owned by {}", printable(o)))
            .unwrap_or_default(),
        network
            .expires_at
            .as_deref()
            .map(|e| format!(", until {}", printable(e)))
            .unwrap_or_default(),
    );
    Ok(())
}
