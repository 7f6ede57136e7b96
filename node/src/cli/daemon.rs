//! `warren daemon`: run the agent in the foreground.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Cli;
use crate::config::Config;
use crate::daemon::DaemonOptions;
use crate::metrics::MetricsSettings;
use crate::state::DEFAULT_STATE_DIR;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The agent's TOML configuration (optional: a node that only joins
    /// networks needs none).
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// Where the node key, joined networks and cached netmaps live.
    #[arg(long, env = "WARREN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// First UDP port; each joined network takes the next free one.
    #[arg(long, env = "WARREN_LISTEN_PORT")]
    listen_port: Option<u16>,
    /// How to point the system's resolver at the DNS stubs [default: the
    /// config file's `[dns] manage`, else auto].
    #[arg(long, value_enum, env = "WARREN_DNS_MANAGE")]
    dns_manage: Option<crate::dns::Manage>,
    /// How long a joined network's cached netmap is trusted without its
    /// controller confirming it, e.g. `12h` [default: the config file's
    /// `[node] netmap-max-age`, else 7d].
    #[arg(long, env = "WARREN_NETMAP_MAX_AGE", value_parser = parse_max_age)]
    netmap_max_age: Option<Duration>,
    /// A group (name or number) whose members may change things through
    /// the local API: join, leave, routes, services, DNS. Members of the
    /// socket's group may only read [default: the config file's `[node]
    /// admin-group`, else none: root only].
    #[arg(long, env = "WARREN_ADMIN_GROUP")]
    admin_group: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g.
    /// `127.0.0.1:9101` [default: the config file's `[metrics] listen`,
    /// else off]. A non-loopback address also needs `allow-remote = true`
    /// in the config file's `[metrics]`.
    #[arg(long, env = "WARREN_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Ask the default gateway (PCP, else NAT-PMP, else UPnP IGD) for a mapping of each
    /// data-plane port and advertise it to peers [default: the config
    /// file's `[nat] port-mapping`, else true].
    #[arg(long, env = "WARREN_PORT_MAPPING", value_name = "BOOL")]
    port_mapping: Option<bool>,
    /// Try birthday-paradox probing (many ports at once) with peers that
    /// plain probing does not reach, when one NAT maps per destination
    /// [default: the config file's `[nat] hard-nat-probing`, else true].
    #[arg(long, env = "WARREN_HARD_NAT_PROBING", value_name = "BOOL")]
    hard_nat_probing: Option<bool>,
}

fn parse_max_age(text: &str) -> Result<Duration, String> {
    let age = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if age < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(age)
}

pub fn run(cli: &Cli, args: &DaemonArgs) -> anyhow::Result<()> {
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let socket = cli.socket_or(config.as_ref().and_then(|c| c.node.socket.clone()));
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.node.state_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let mut dns = config.as_ref().map(|c| c.dns.clone()).unwrap_or_default();
    if let Some(manage) = args.dns_manage {
        dns.manage = manage;
    }
    let netmap_max_age = args
        .netmap_max_age
        .or(config.as_ref().map(|c| c.node.netmap_max_age))
        .unwrap_or(crate::daemon::NETMAP_MAX_AGE);
    let admin_group = args
        .admin_group
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.node.admin_group.clone()));
    let metrics = match (
        args.metrics_listen,
        config.as_ref().and_then(|c| c.metrics.clone()),
    ) {
        (Some(listen), file) => Some(MetricsSettings {
            listen,
            allow_remote: file.is_some_and(|m| m.allow_remote),
        }),
        (None, file) => file,
    };
    let port_mapping = args
        .port_mapping
        .unwrap_or_else(|| config.as_ref().is_none_or(|c| c.nat.port_mapping));
    let hard_nat_probing = args
        .hard_nat_probing
        .unwrap_or_else(|| config.as_ref().is_none_or(|c| c.nat.hard_nat_probing));
    if let Some(metrics) = &metrics {
        metrics.check().map_err(anyhow::Error::msg)?;
    }
    let options = DaemonOptions {
        admin_group,
        metrics,
        dns,
        netmap_max_age,
        config,
        state_dir,
        socket,
        listen_port: args.listen_port,
        port_mapping,
        hard_nat_probing,
    };
    super::runtime()?.block_on(crate::daemon::run(options))
}
