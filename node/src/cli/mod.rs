//! Command-line definitions and dispatch: exit 0 on success, 1 on error,
//! 2 on usage, and the codes of [`exit`] where a command says more.

mod check_config;
mod daemon;
mod dns;
mod exit;
mod explain;
pub(crate) mod health;
mod join;
mod key;
mod login;
mod netcheck;
mod ping;
mod progress;
mod routes;
mod service;
mod status;
mod updown;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_SOCKET;

#[derive(Debug, Parser)]
#[command(name = "warren", version, about = "Warren overlay VPN agent")]
pub struct Cli {
    /// Local API socket of the agent.
    #[arg(long, global = true, env = "WARREN_SOCKET")]
    socket: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "WARREN_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `warren=debug`.
    #[arg(long, global = true, default_value = "info", env = "WARREN_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make or read WireGuard-compatible node keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Run the agent in the foreground.
    Daemon(daemon::DaemonArgs),
    /// Join a network run by a controller (with an invite code, or a
    /// network ID and --controller), and wait until it is up, waits for
    /// approval or is refused.
    #[command(after_help = exit::JOIN_HELP)]
    Join(join::JoinArgs),
    /// Leave a network: give up the membership, address and name; its
    /// interface goes down and its peers are forgotten.
    Leave(join::LeaveArgs),
    /// Take a network offline: its interface, peers, DNS and routes go, the
    /// membership, address and name stay (also across restarts).
    Down(updown::DownArgs),
    /// Bring a network taken down back, and wait until it is up.
    #[command(after_help = exit::JOIN_HELP)]
    Up(updown::UpArgs),
    /// Sign this device in again (its owner, in a browser), before or after
    /// its sign-in runs out.
    Login(login::LoginArgs),
    /// Show the agent's networks and peers: a summary, then one line per
    /// peer; --check for monitoring.
    #[command(after_help = exit::STATUS_HELP)]
    Status(status::StatusArgs),
    /// Probe a peer: which path answers (direct or relay) and how fast.
    Ping(ping::PingArgs),
    /// Would the access policy let a new flow out to DEST, and by which rule?
    Explain(explain::ExplainArgs),
    /// Report what the NAT does, port mapping and the path peers would
    /// take; with --controller, probe a controller before joining.
    #[command(after_help = exit::NETCHECK_HELP)]
    Netcheck(netcheck::NetcheckArgs),
    /// Check a config file and print the effective configuration.
    CheckConfig(check_config::CheckConfigArgs),
    /// Private DNS: the stubs, their zones and the split-DNS setup.
    Dns(dns::DnsArgs),
    /// Publish services in the network's DNS zone (`_NAME._tcp.<zone>` SRV).
    Service(service::ServiceArgs),
    /// Subnet routes: advertise, accept, list.
    Routes(routes::RoutesArgs),
    /// Send default traffic through a peer that offers to be an exit node.
    ExitNode(routes::ExitNodeArgs),
    /// Write man pages, completions and the command reference (packaging).
    #[command(hide = true)]
    GenerateAssets(warren_cli_assets::AssetsArgs),
}

impl Cli {
    /// The socket: flag, then WARREN_SOCKET (both through clap), then the config file, then the default.
    fn socket_or(&self, from_config: Option<PathBuf>) -> PathBuf {
        self.socket
            .clone()
            .or(from_config)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let result = match &cli.command {
        Command::Key(cmd) => key::run(cmd),
        Command::Daemon(args) => daemon::run(&cli, args),
        Command::Join(args) => join::join(&cli, args),
        Command::Leave(args) => join::leave(&cli, args),
        Command::Down(args) => updown::down(&cli, args),
        Command::Up(args) => updown::up(&cli, args),
        Command::Login(args) => login::login(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Ping(args) => ping::ping(&cli, args),
        Command::Explain(args) => explain::run(&cli, args),
        Command::Netcheck(args) => netcheck::run(&cli, args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Dns(args) => dns::run(&cli, args),
        Command::Service(args) => service::run(&cli, args),
        Command::Routes(args) => routes::run(&cli, args),
        Command::ExitNode(args) => routes::exit_node(&cli, args),
        Command::GenerateAssets(args) => {
            warren_cli_assets::run::<Cli>("warren", env!("CARGO_PKG_VERSION"), args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warren_cli_assets::errln!("warren: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A runtime on this thread: the data path is fastest on one thread here.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
