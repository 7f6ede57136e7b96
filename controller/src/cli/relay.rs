//! `relay`: a relay-only instance with its own key and certificate, reading
//! a controller's database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use warren_cli_assets::out;
use warren_controller::server::{self, Role, ServerOptions};

use super::config::{
    read_file, relay_limits, HasDirs, RelayLimitArgs, DEFAULT_DATA_DIR, DEFAULT_RELAY_LISTEN_QUIC,
    DEFAULT_RELAY_STATE_DIR,
};
use super::serve::{print_addresses, wait_for_signal};

/// Flags of `relay`; each also reads a `WARREN_*` variable.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// The controller's data directory: only its database is read.
    #[arg(long, env = "WARREN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This instance's own key and certificate, made on first use [default: /var/lib/warren-controller-relay].
    #[arg(long, env = "WARREN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// UDP address for nodes' QUIC connections [default: [::]:7444, or 0.0.0.0:7444 without IPv6].
    #[arg(long, env = "WARREN_LISTEN_QUIC")]
    pub listen_quic: Option<SocketAddr>,
    /// UDP addresses answering STUN (repeat or comma-separate) [default: none].
    #[arg(
        long = "listen-stun",
        env = "WARREN_LISTEN_STUN",
        value_delimiter = ','
    )]
    pub listen_stun: Vec<SocketAddr>,
    /// TCP address serving only /healthz and /metrics [default: none].
    #[arg(long, env = "WARREN_LISTEN_METRICS")]
    pub listen_metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub relay: RelayLimitArgs,
    /// TOML file with the same keys (kebab-case).
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print it as TOML and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RelayFile {
    data_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    listen_quic: Option<SocketAddr>,
    listen_stun: Option<Vec<SocketAddr>>,
    listen_metrics: Option<SocketAddr>,
    relay_rate: Option<u64>,
    relay_burst: Option<u64>,
}

impl HasDirs for RelayFile {
    fn dirs_mut(&mut self) -> Vec<&mut Option<PathBuf>> {
        vec![&mut self.data_dir, &mut self.state_dir]
    }
}

/// What `relay` runs with.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
struct RelayConfig {
    data_dir: PathBuf,
    state_dir: PathBuf,
    listen_quic: SocketAddr,
    listen_stun: Vec<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_metrics: Option<SocketAddr>,
    relay_rate: u64,
    relay_burst: u64,
    #[serde(skip)]
    quic_is_default: bool,
}

fn resolve(args: &RelayArgs) -> anyhow::Result<RelayConfig> {
    let file: RelayFile = match &args.config {
        Some(path) => read_file(path)?,
        None => RelayFile::default(),
    };
    let default_quic: SocketAddr = DEFAULT_RELAY_LISTEN_QUIC
        .parse()
        .context("built-in default listen-quic")?;
    let listen_quic = args.listen_quic.or(file.listen_quic);
    let limits = relay_limits(&args.relay, file.relay_rate, file.relay_burst)?;
    Ok(RelayConfig {
        data_dir: args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        state_dir: args
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RELAY_STATE_DIR)),
        quic_is_default: listen_quic.is_none(),
        listen_quic: listen_quic.unwrap_or(default_quic),
        listen_stun: if args.listen_stun.is_empty() {
            file.listen_stun.unwrap_or_default()
        } else {
            args.listen_stun.clone()
        },
        listen_metrics: args.listen_metrics.or(file.listen_metrics),
        relay_rate: limits.rate,
        relay_burst: limits.burst,
    })
}

pub async fn run(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(&args)?;
    if args.check_config {
        out!(
            "{}",
            toml::to_string(&config).context("printing the configuration")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let running = server::start(ServerOptions {
        role: Role::RelayOnly,
        data_dir: config.data_dir.clone(),
        database: None,
        state_dir: Some(config.state_dir.clone()),
        listen_quic: config.listen_quic,
        quic_fallback_v4: config.quic_is_default,
        // Agents whose networks block UDP reach it as they reach their
        // controller: QUIC over TCP on the same address.
        listen_tcp: Some(server::TcpFallback {
            addr: config.listen_quic,
            is_default: true,
        }),
        listen_api: config.listen_metrics,
        api_hosts: Vec::new(),
        admin_socket: None,
        listen_stun: config.listen_stun.clone(),
        stun_fallback_v4: false,
        relay: server::RelayLimits {
            rate: config.relay_rate,
            burst: config.relay_burst,
        },
        advertise_relay: None,
        advertise_address: None,
        retry_above_handshakes: warren_controller::control::admission::RETRY_ABOVE_HANDSHAKES,
        listen_https: None,
        https_certificate: None,
        listen_dns: None,
        sign_in: None,
        roles: warren_controller::roles::Roles::default(),
        public_url: None,
        site_mapped_range: warren_controller::store::DEFAULT_SITE_MAPPED_RANGE,
    })
    .await
    .context("starting the relay")?;
    print_addresses(&running)?;
    tracing::info!(
        quic = %running.quic_addr,
        metrics = ?running.api_addr,
        stun = ?running.stun_addrs,
        fingerprint = %running.fingerprint,
        data_dir = %config.data_dir.display(),
        state_dir = %config.state_dir.display(),
        "relay running"
    );
    wait_for_signal().await?;
    tracing::info!("stopping");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_differ_from_the_controller_where_they_must() {
        let args = RelayArgs {
            data_dir: None,
            state_dir: None,
            listen_quic: None,
            listen_stun: vec![],
            listen_metrics: None,
            relay: RelayLimitArgs::default(),
            config: None,
            check_config: false,
        };
        let config = resolve(&args).unwrap();
        assert_eq!(config.listen_quic.to_string(), "[::]:7444");
        assert!(config.listen_stun.is_empty());
        assert!(config.listen_metrics.is_none());
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_RELAY_STATE_DIR));
    }

    #[test]
    fn controller_only_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "listen-api = \"127.0.0.1:7480\"\n").unwrap();
        let args = RelayArgs {
            data_dir: None,
            state_dir: None,
            listen_quic: None,
            listen_stun: vec![],
            listen_metrics: None,
            relay: RelayLimitArgs::default(),
            config: Some(path),
            check_config: false,
        };
        assert!(resolve(&args).is_err());
    }
}
