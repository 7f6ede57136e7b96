//! `warren routes` (advertise, withdraw, accept, masquerade, list) and
//! `warren exit-node` (use, off, list).

use std::net::IpAddr;

use clap::{Args, Subcommand, ValueEnum};
use ipnet::IpNet;
use warren_cli_assets::{out, outln};
use warren_proto::routes::{
    AcceptRequest, AdvertiseMode, AdvertiseRequest, AdvertisedState, ExitNodeRequest,
    MasqueradeRequest, RoutesStatus,
};
use warren_proto::site::{check_site_name, SiteDns, SiteSpec};
use warren_proto::text::printable;
use warren_proto::NetworkId;

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(subcommand)]
    command: Option<RoutesCommand>,
    /// Print the local API's JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Offer subnet routes (`0.0.0.0/0` and `::/0` offer this node as an
    /// exit node); an admin approves them on the controller.
    Advertise {
        /// Prefixes, e.g. 10.96.0.0/12.
        #[arg(required_unless_present = "none")]
        prefixes: Vec<IpNet>,
        /// Advertise exactly these, withdrawing the others.
        #[arg(long)]
        replace: bool,
        /// Withdraw every advertised route.
        #[arg(long, conflicts_with_all = ["prefixes", "replace", "site", "no_site"])]
        none: bool,
        /// The site (one cluster) every route of this node in the network
        /// is for, e.g. `m`: a lowercase DNS label. Kept until changed.
        #[arg(long, value_parser = site_name)]
        site: Option<String>,
        /// The site's own DNS domain, e.g. `cluster.local`: members resolve
        /// `NAME.SITE.ZONE` by asking --dns-server for `NAME.DOMAIN`.
        #[arg(long, requires_all = ["site", "dns_server"])]
        dns_domain: Option<String>,
        /// The site's DNS server, e.g. `10.96.0.10`, asked through the mesh.
        #[arg(long, requires_all = ["site", "dns_domain"])]
        dns_server: Option<IpAddr>,
        /// Advertise the routes for no site any more.
        #[arg(long, conflicts_with = "site")]
        no_site: bool,
        /// The network (needed when several are joined).
        #[arg(long)]
        network: Option<NetworkId>,
    },
    /// Stop offering some routes.
    Withdraw {
        #[arg(required = true)]
        prefixes: Vec<IpNet>,
        #[arg(long)]
        network: Option<NetworkId>,
    },
    /// Install (or not) the subnet routes peers serve.
    Accept {
        #[arg(value_enum)]
        state: OnOff,
        /// One network only (default: every joined network).
        #[arg(long)]
        network: Option<NetworkId>,
    },
    /// NAT overlay traffic this node forwards to its LAN address (default on).
    Masquerade {
        #[arg(value_enum)]
        state: OnOff,
    },
    /// What is advertised, accepted and installed; the filter's drop counters.
    List,
}

#[derive(Debug, Args)]
pub struct ExitNodeArgs {
    #[command(subcommand)]
    command: ExitNodeCommand,
    /// Print the local API's JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ExitNodeCommand {
    /// Send default traffic through PEER (name, FQDN, node ID or overlay
    /// address), except this node's LAN, the controller and `--exclude`.
    Use {
        peer: String,
        /// Prefixes that keep the normal default route (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<IpNet>,
        #[arg(long)]
        network: Option<NetworkId>,
    },
    /// Stop using an exit node.
    Off,
    /// Peers that offer to be exit nodes, and the one in use.
    List,
}

pub fn run(cli: &Cli, args: &RoutesArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let rt = super::runtime()?;
    let status: RoutesStatus = match &args.command {
        None | Some(RoutesCommand::List) => rt.block_on(client::get(&socket, "/v1/routes"))?,
        Some(RoutesCommand::Advertise {
            prefixes,
            replace,
            none,
            site,
            dns_domain,
            dns_server,
            no_site,
            network,
        }) => {
            let dns = match (dns_domain, dns_server) {
                (Some(domain), Some(server)) => Some(SiteDns {
                    domain: domain.clone(),
                    server: *server,
                }),
                _ => None,
            };
            let request = AdvertiseRequest {
                network: *network,
                mode: if *replace || *none {
                    AdvertiseMode::Replace
                } else {
                    AdvertiseMode::Add
                },
                routes: if *none { Vec::new() } else { prefixes.clone() },
                site: site.as_ref().map(|name| SiteSpec {
                    name: name.clone(),
                    dns,
                }),
                no_site: *no_site,
            };
            rt.block_on(client::post(&socket, "/v1/routes/advertise", &request))?
        }
        Some(RoutesCommand::Withdraw { prefixes, network }) => {
            let request = AdvertiseRequest {
                network: *network,
                mode: AdvertiseMode::Remove,
                routes: prefixes.clone(),
                site: None,
                no_site: false,
            };
            rt.block_on(client::post(&socket, "/v1/routes/advertise", &request))?
        }
        Some(RoutesCommand::Accept { state, network }) => {
            let request = AcceptRequest {
                network: *network,
                accept: state.on(),
            };
            rt.block_on(client::post(&socket, "/v1/routes/accept", &request))?
        }
        Some(RoutesCommand::Masquerade { state }) => {
            let request = MasqueradeRequest {
                masquerade: state.on(),
            };
            rt.block_on(client::post(&socket, "/v1/routes/masquerade", &request))?
        }
    };
    print(&status, args.json)
}

pub fn exit_node(cli: &Cli, args: &ExitNodeArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let rt = super::runtime()?;
    let status: RoutesStatus = match &args.command {
        ExitNodeCommand::Use {
            peer,
            exclude,
            network,
        } => {
            let request = ExitNodeRequest {
                network: *network,
                peer: peer.clone(),
                exclude: exclude.clone(),
            };
            rt.block_on(client::post(&socket, "/v1/exit-node", &request))?
        }
        ExitNodeCommand::Off => {
            rt.block_on(client::delete(&socket, "/v1/exit-node"))?;
            rt.block_on(client::get(&socket, "/v1/routes"))?
        }
        ExitNodeCommand::List => rt.block_on(client::get(&socket, "/v1/routes"))?,
    };
    print(&status, args.json)
}

fn print(status: &RoutesStatus, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(status)?);
    } else {
        out!("{}", printable(&render(status)));
    }
    Ok(())
}

/// `--site`: one lowercase DNS label.
fn site_name(s: &str) -> Result<String, String> {
    check_site_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn render(status: &RoutesStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if status.networks.is_empty() {
        let _ = writeln!(out, "no networks joined");
    }
    for net in &status.networks {
        let _ = writeln!(
            out,
            "network {}: accept routes {}",
            net.network,
            on_off(net.accept)
        );
        if !net.advertised.is_empty() {
            let list: Vec<String> = net
                .advertised
                .iter()
                .map(|a| {
                    let state = match a.state {
                        AdvertisedState::Unknown => "no netmap yet",
                        AdvertisedState::Pending => "waiting for approval",
                        AdvertisedState::Approved => "approved, standing by",
                        AdvertisedState::Primary => "approved, primary",
                    };
                    format!("{} ({state})", a.prefix)
                })
                .collect();
            let _ = writeln!(out, "  advertised: {}", list.join(", "));
        }
        if let Some(site) = &net.site {
            match &site.dns {
                Some(dns) => {
                    let _ = writeln!(
                        out,
                        "  site: {} (DNS {} at {})",
                        site.name, dns.domain, dns.server
                    );
                }
                None => {
                    let _ = writeln!(out, "  site: {}", site.name);
                }
            }
        }
        for m in &net.mapped {
            let _ = writeln!(
                out,
                "  mapped: {} reached as {} (translated here)",
                m.real, m.mapped
            );
        }
        for r in &net.peer_routes {
            let state = match (&r.refused, r.installed) {
                (Some(why), _) => format!("refused: {why}"),
                (None, true) => "installed".to_owned(),
                (None, false) => "not accepted".to_owned(),
            };
            let online = if r.online { "online" } else { "offline" };
            let _ = writeln!(
                out,
                "  {} via {} ({}, {online}): {state}",
                r.prefix, r.name, r.node_id
            );
        }
        for e in &net.exit_nodes {
            let prefixes: Vec<String> = e.prefixes.iter().map(ToString::to_string).collect();
            let online = if e.online { "online" } else { "offline" };
            let _ = writeln!(
                out,
                "  exit node offered: {} ({}, {online}): {}",
                e.name,
                e.node_id,
                prefixes.join(", ")
            );
        }
    }
    match &status.exit_node {
        Some(e) => {
            let excluded: Vec<String> = e.exclude.iter().map(ToString::to_string).collect();
            let state = if e.active {
                "active".to_owned()
            } else {
                format!("inactive: {}", e.message.as_deref().unwrap_or(""))
            };
            let _ = writeln!(
                out,
                "exit node: {} ({}) in {}: {state}",
                e.name, e.node_id, e.network
            );
            if !excluded.is_empty() {
                let _ = writeln!(out, "  excluded: {}", excluded.join(", "));
            }
        }
        None => {
            let _ = writeln!(out, "exit node: none");
        }
    }
    let f = &status.filter;
    let _ = writeln!(
        out,
        "filter: {}, masquerade {}; dropped into the overlay: {} packets ({} bytes), out of it: {} packets ({} bytes)",
        if f.active { "active" } else { "inactive" },
        on_off(f.masquerade),
        f.dropped_into_overlay_packets,
        f.dropped_into_overlay_bytes,
        f.dropped_from_overlay_packets,
        f.dropped_from_overlay_bytes,
    );
    let _ = writeln!(
        out,
        "forwarding: ipv4 {}, ipv6 {}",
        on_off(status.forwarding.ipv4),
        on_off(status.forwarding.ipv6)
    );
    if let Some(e) = &status.error {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::routes::{AdvertisedRoute, FilterStatus, Forwarding, NetworkRoutes};
    use warren_proto::site::MappedPrefix;

    #[test]
    fn the_list_shows_the_site_and_what_this_router_translates() {
        let status = RoutesStatus {
            networks: vec![NetworkRoutes {
                network: "8056c2e21c000001".parse().unwrap(),
                accept: true,
                advertised: vec![AdvertisedRoute {
                    prefix: "10.96.0.0/12".parse().unwrap(),
                    state: AdvertisedState::Primary,
                }],
                site: Some(SiteSpec {
                    name: "m".into(),
                    dns: Some(SiteDns {
                        domain: "cluster.local".into(),
                        server: "10.96.0.10".parse().unwrap(),
                    }),
                }),
                mapped: vec![MappedPrefix {
                    real: "10.96.0.0/12".parse().unwrap(),
                    mapped: "100.64.0.0/12".parse().unwrap(),
                }],
                peer_routes: vec![],
                exit_nodes: vec![],
            }],
            exit_node: None,
            filter: FilterStatus::default(),
            forwarding: Forwarding::default(),
            error: None,
        };
        let text = render(&status);
        assert!(
            text.contains("  site: m (DNS cluster.local at 10.96.0.10)\n"),
            "{text}"
        );
        assert!(
            text.contains("  mapped: 10.96.0.0/12 reached as 100.64.0.0/12 (translated here)\n"),
            "{text}"
        );
    }
}
