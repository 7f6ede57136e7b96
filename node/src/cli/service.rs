//! `warren service add|remove|list`: services this node publishes in its
//! network's DNS zone as `_NAME._PROTO.<zone>` SRV records.

use clap::{Args, Subcommand};
use warren_cli_assets::outln;
use warren_proto::local_dns::{PublishedService, ServiceList, ServiceRemove, ServiceRequest};
use warren_proto::service::{ServiceProto, ServiceSpec};
use warren_proto::NetworkId;

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Publish a service: `_NAME._PROTO.<zone>` then points at this node.
    Add {
        /// The service label, e.g. `http` or `postgres`.
        name: String,
        /// The port it listens on, on this node's overlay addresses.
        port: u16,
        /// `tcp` or `udp`.
        #[arg(long, default_value = "tcp")]
        proto: ServiceProto,
        /// The network (needed when more than one is joined).
        #[arg(long)]
        network: Option<NetworkId>,
        /// A TXT string for the service (repeatable), e.g. `path=/`.
        #[arg(long)]
        txt: Vec<String>,
        /// Print the local API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a service.
    Remove {
        name: String,
        /// `tcp` or `udp`.
        #[arg(long, default_value = "tcp")]
        proto: ServiceProto,
        /// The network (needed when more than one is joined).
        #[arg(long)]
        network: Option<NetworkId>,
    },
    /// The services this node publishes.
    List {
        /// Print the local API's JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, args: &ServiceArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let runtime = super::runtime()?;
    match &args.command {
        ServiceCommand::Add {
            name,
            port,
            proto,
            network,
            txt,
            json,
        } => {
            let request = ServiceRequest {
                network: *network,
                service: ServiceSpec {
                    name: name.clone(),
                    proto: *proto,
                    port: *port,
                    txt: txt.clone(),
                },
            };
            let published: PublishedService =
                runtime.block_on(client::post(&socket, "/v1/services", &request))?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&published)?);
            } else {
                outln!("published {}", line(&published));
            }
        }
        ServiceCommand::Remove {
            name,
            proto,
            network,
        } => {
            let request = ServiceRemove {
                network: *network,
                name: name.clone(),
                proto: *proto,
            };
            runtime.block_on(client::delete_json(&socket, "/v1/services", &request))?;
            outln!("removed _{name}._{proto}");
        }
        ServiceCommand::List { json } => {
            let list: ServiceList = runtime.block_on(client::get(&socket, "/v1/services"))?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.services.is_empty() {
                outln!("no services published: `warren service add NAME PORT`");
            } else {
                for s in &list.services {
                    outln!("{}", line(s));
                }
            }
        }
    }
    Ok(())
}

fn line(s: &PublishedService) -> String {
    let name = s
        .fqdn
        .clone()
        .unwrap_or_else(|| format!("{} (zone not known yet)", s.service.label()));
    format!("{name} port {} in network {}", s.service.port, s.network)
}
