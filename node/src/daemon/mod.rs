//! The agent: the static network from the config file, the networks joined
//! through controllers, and the local API, driven by one event loop.

pub mod api;
pub mod api_endpoints;
pub(crate) mod birthday;
mod caller;
pub(crate) mod control;
pub mod datapath;
pub(crate) mod managed;
pub(crate) mod network;
pub(crate) mod relay_in;
pub(crate) mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use warren_proto::local_api::{JoinReply, JoinRequest, NetworkStatus, Status};
use warren_proto::{NetworkId, NodeId, NodePrivateKey};

use crate::config::Config;
use crate::state::StateDir;
use control::{ControlEvent, ControlHandle};
use managed::Managed;
use network::{NetworkHandle, NetworkSpec};

/// How often endpoint candidates are re-read and, if changed, reported.
const ENDPOINT_REFRESH: Duration = Duration::from_secs(30);

/// Everything `warren daemon` was told on its command line and in its file.
pub struct DaemonOptions {
    pub config: Option<Config>,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub listen_port: Option<u16>,
    /// Private DNS settings (the config file's `[dns]`, flags applied).
    pub dns: crate::dns::DnsSettings,
    /// How long a cached netmap is trusted without its controller.
    pub netmap_max_age: Duration,
    /// `admin-group`: its members may change things through the local API.
    pub admin_group: Option<String>,
    /// The Prometheus endpoint (the config file's `[metrics]`, flags applied).
    pub metrics: Option<crate::metrics::MetricsSettings>,
    /// Ask the default gateway for port mappings (`[nat] port-mapping`).
    pub port_mapping: bool,
    /// Birthday probing for hard NATs (`[nat] hard-nat-probing`).
    pub hard_nat_probing: bool,
}

/// The default `netmap-max-age`.
pub const NETMAP_MAX_AGE: Duration = managed::DEFAULT_NETMAP_MAX_AGE;

/// A local-API call that failed: the status code and the error body's fields.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

/// A question from the local API to the event loop, which owns all state.
pub enum Request {
    Status(oneshot::Sender<Status>),
    Join(JoinRequest, oneshot::Sender<Result<JoinReply, Refusal>>),
    Leave(NetworkId, oneshot::Sender<Result<(), Refusal>>),
    /// `warren down`: offline, keeping membership, address and name.
    Down(NetworkId, oneshot::Sender<Result<NetworkStatus, Refusal>>),
    /// `warren up`: back from `warren down`.
    Up(NetworkId, oneshot::Sender<Result<NetworkStatus, Refusal>>),
    /// `warren login`: ask the controller for a page to sign in again.
    Login(NetworkId, oneshot::Sender<Result<NetworkStatus, Refusal>>),
    Ping(
        String,
        oneshot::Sender<Result<managed::PingTarget, Refusal>>,
    ),
    Netcheck(oneshot::Sender<warren_proto::local_api::Netcheck>),
    /// `warren explain`: a destination and one port.
    Explain(
        String,
        warren_proto::filter::PortRange,
        oneshot::Sender<Result<warren_proto::local_api::ExplainReply, Refusal>>,
    ),
    /// `warren dns` and `warren service` (see `crate::dns`).
    Dns(crate::dns::DnsRequest),
    /// `warren routes` and `warren exit-node` (see `crate::routes`).
    Routes(crate::routes::RoutesRequest),
    /// A scrape of the metrics endpoint (see `crate::metrics`).
    Metrics(oneshot::Sender<crate::metrics::Snapshot>),
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(options: DaemonOptions) -> anyhow::Result<()> {
    // Before anything changes the system: a busy or refused address stops the start.
    let metrics = match &options.metrics {
        Some(settings) => Some(crate::metrics::Listener::bind(settings).await?),
        None => None,
    };
    let state = StateDir::open(&options.state_dir)?;
    // Before any cached netmap comes back: repairs what a crash left in resolv.conf.
    let dns = crate::dns::Dns::start(options.dns.clone(), &options.state_dir);
    let key = match options
        .config
        .as_ref()
        .map(Config::read_private_key)
        .transpose()?
        .flatten()
    {
        Some(key) => key,
        None => state.node_key()?,
    };
    let base_port = options
        .listen_port
        .or(options.config.as_ref().map(|c| c.node.listen_port))
        .unwrap_or(crate::config::DEFAULT_LISTEN_PORT);
    crate::routes::reserve_listen_ports(base_port);
    let (net_events_tx, mut net_events) = mpsc::unbounded_channel();
    let (static_net, static_peers) = match options
        .config
        .as_ref()
        .filter(|c| !c.node.addresses.is_empty())
    {
        Some(config) => {
            let (net, peers) = start_static(config, base_port, &key, net_events_tx.clone()).await?;
            (Some(net), peers)
        }
        None => (None, Vec::new()),
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut managed = Managed::new(
        state,
        key.clone(),
        base_port,
        static_net,
        events_tx,
        net_events_tx,
    );
    managed.dns = dns;
    managed.static_peers = static_peers;
    managed.hard_nat_probing = options.hard_nat_probing;
    managed.set_netmap_max_age(options.netmap_max_age);
    let (mapped_tx, mut mapped) = mpsc::unbounded_channel();
    if options.port_mapping {
        managed.enable_port_mapping(mapped_tx);
    }
    // Before any cached netmap comes back: removes what a crash left installed.
    managed.routes = crate::routes::Routes::start(&options.state_dir).await;
    managed
        .restore()
        .await
        .context("restoring joined networks")?;

    let (requests, mut request_rx) = mpsc::channel(16);
    let admin_gid = options
        .admin_group
        .as_deref()
        .map(caller::resolve_group)
        .transpose()?;
    if let Some(listener) = metrics {
        let serve = listener.serve(requests.clone());
        managed.tasks.spawn(METRICS_TASK, ended(serve));
    }
    let api = api::serve(&options.socket, requests.clone(), admin_gid)?;
    managed.tasks.spawn(API_TASK, ended(api));
    tracing::info!(node_id = %NodeId::from_key(&key.public_key()), public_key = %key.public_key(), "agent running");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    let mut refresh = tokio::time::interval(ENDPOINT_REFRESH);
    let mut freshness = tokio::time::interval(managed.freshness_interval());
    let mut grant_check = tokio::time::interval(managed::GRANT_CHECK);
    let mut paths_check = tokio::time::interval(managed::PATHS_CHECK);
    loop {
        tokio::select! {
            Some(request) = request_rx.recv() => match request {
                Request::Status(reply) => { let _ = reply.send(managed.status().await); }
                Request::Join(join, reply) => { let _ = reply.send(managed.join(join).await); }
                Request::Leave(id, reply) => { let _ = reply.send(managed.leave(id).await); }
                Request::Down(id, reply) => { let _ = reply.send(managed.down(id).await); }
                Request::Up(id, reply) => { let _ = reply.send(managed.up(id).await); }
                Request::Login(id, reply) => { let _ = reply.send(managed.login(id).await); }
                Request::Ping(peer, reply) => { let _ = reply.send(managed.ping(&peer).await); }
                Request::Netcheck(reply) => { let _ = reply.send(managed.netcheck().await); }
                Request::Explain(to, port, reply) => { let _ = reply.send(managed.explain(&to, port).await); }
                Request::Dns(request) => managed.handle_dns(request),
                Request::Routes(request) => managed.handle_routes(request).await,
                Request::Metrics(reply) => { let _ = reply.send(managed.metrics().await); }
            },
            Some(event) = events.recv() => managed.handle_control(event).await,
            Some(()) = mapped.recv() => managed.report_endpoints(false),
            Some((network, event)) = net_events.recv() => managed.handle_network_event(&network, event).await,
            () = restart_at(managed.next_restart()) => managed.restart_due(tokio::time::Instant::now()).await,
            death = managed.tasks.next_death() => {
                let Some(at) = death.restart_at else {
                    tracing::error!(task = death.task, error = %death.error, "agent task keeps dying: not restarted");
                    continue;
                };
                match death.task {
                    API_TASK => {
                        let (socket, requests) = (options.socket.clone(), requests.clone());
                        managed.tasks.spawn(API_TASK, async move {
                            tokio::time::sleep_until(at).await;
                            api::serve(&socket, requests, admin_gid)?.await;
                            Ok(())
                        });
                    }
                    METRICS_TASK => {
                        if let Some(settings) = options.metrics.clone() {
                            let requests = requests.clone();
                            managed.tasks.spawn(METRICS_TASK, async move {
                                tokio::time::sleep_until(at).await;
                                crate::metrics::Listener::bind(&settings).await?.serve(requests).await;
                                Ok(())
                            });
                        }
                    }
                    _ => {}
                }
            }
            _ = refresh.tick() => {
                managed.report_endpoints(false);
                managed.dns.retry().await;
                managed.tick_routes().await;
            }
            _ = freshness.tick() => managed.check_freshness().await,
            _ = grant_check.tick() => managed.report_grant_uses().await,
            _ = paths_check.tick() => managed.report_paths().await,
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("agent stopping");
    // Networks first, then their effects on the system; the local API
    // answers until the end.
    managed.shutdown().await;
    managed.stop_tasks().await;
    let _ = std::fs::remove_file(&options.socket);
    Ok(())
}

/// The supervised tasks of the agent itself.
const API_TASK: &str = "local-api";
const METRICS_TASK: &str = "metrics";

/// A server loop as a supervised task: it is meant to run until the agent stops.
async fn ended(serve: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    serve.await;
    anyhow::bail!("stopped serving")
}

/// Sleeps until `at`; forever without it.
async fn restart_at(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts the static network; its handle, and its peers for restarts.
async fn start_static(
    config: &Config,
    port: u16,
    key: &NodePrivateKey,
    events: network::NetworkEvents,
) -> anyhow::Result<(NetworkHandle, Vec<warren_engine::PeerConfig>)> {
    let node = &config.node;
    let spec = NetworkSpec {
        label: "static".to_owned(),
        interface: node.interface_name.clone(),
        mtu: node.mtu,
        addresses: node.addresses.clone(),
        listen_port: port,
        offload: node.offload,
        system_routes: true,
        // Static peers have fixed endpoints: nothing to search for.
        hard_nat_probing: false,
    };
    let handle = NetworkHandle::start(spec, key.clone(), events)?;
    let peers = config
        .peers
        .iter()
        .map(|p| {
            warren_engine::PeerConfig::fixed(
                p.public_key,
                p.endpoint,
                p.allowed_ips.clone(),
                p.persistent_keepalive,
            )
        })
        .collect::<Vec<_>>();
    handle.set_peers(peers.clone()).await;
    Ok((handle, peers))
}

/// Which networks share a controller connection.
type Controllers = BTreeMap<String, ControlHandle>;

/// Peers of a joined network are kept alive through NATs with this keepalive.
pub const NETMAP_KEEPALIVE: Duration = Duration::from_secs(25);

pub(crate) fn refusal(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

pub(crate) type ControlEvents = mpsc::UnboundedSender<ControlEvent>;
