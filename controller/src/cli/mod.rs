//! The command line: `serve`, `check-config`, `relay`, `fingerprint`,
//! `token`, and the admin commands that talk to the HTTP API (`info`,
//! `network`, `member`, `key`, `audit`, `route`, `policy`, `grant`), on
//! the admin socket or over TCP with a token.

mod admin_socket;
mod audit;
mod client;
mod config;
mod console;
mod fingerprint;
mod grant;
mod info;
mod invite;
mod key;
mod member;
mod network;
mod output;
mod policy;
mod relay;
mod route;
mod serve;
mod sign_in;
mod timeline;
mod token;
mod user;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Warren's controller: control plane, HTTP API and admin CLI.
#[derive(Debug, Parser)]
#[command(name = "warren-controller", version, propagate_version = true)]
pub struct Cli {
    /// Log output format (logs go to stderr).
    #[arg(long, global = true, env = "WARREN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller: QUIC for nodes (control and relay), STUN, HTTP for the API.
    Serve(config::ServeArgs),
    /// Validate the configuration and print the effective settings.
    CheckConfig(config::ServeArgs),
    /// Run a relay-only instance over a controller's data directory.
    Relay(relay::RelayArgs),
    /// Print the TLS certificate fingerprint that nodes pin.
    Fingerprint(fingerprint::FingerprintArgs),
    /// Manage API tokens (writes the database directly).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The web console: break-glass sign-in codes (writes the database directly).
    #[command(subcommand)]
    Console(console::ConsoleCommand),
    /// What the controller is: version, fingerprints, addresses, features (through the API).
    Info(info::InfoArgs),
    /// Networks (through the API).
    Network(network::NetworkArgs),
    /// Members of a network (through the API).
    Member(member::MemberArgs),
    /// Pre-auth keys (through the API).
    Key(key::KeyArgs),
    /// The audit log (through the API).
    Audit(audit::AuditArgs),
    /// Subnet and exit routes: approval and auto-approval (through the API).
    Route(route::RouteArgs),
    /// Access policy: get, set, test, explain, history (through the API).
    Policy(policy::PolicyArgs),
    /// Temporary access: grants that end by themselves (through the API).
    Grant(grant::GrantArgs),
    /// People who signed devices in: list, disable, enable (through the API).
    User(user::UserArgs),
    /// Write man pages, completions and the command reference (packaging).
    #[command(hide = true)]
    GenerateAssets(warren_cli_assets::AssetsArgs),
}

/// How the admin commands reach the API.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the controller's API: http://ADDR (the plain listener,
    /// keep it on loopback) or https://HOST:PORT (the HTTPS listener)
    /// [default: the admin socket when there is no token, else
    /// http://127.0.0.1:7480].
    #[arg(long, global = true, env = "WARREN_API")]
    api: Option<String>,
    /// For an https:// API: the SHA-256 fingerprint of its certificate, as
    /// `warren-controller fingerprint` prints it (64 hex digits, colons
    /// allowed). Only that certificate is accepted.
    #[arg(long, global = true, env = "WARREN_API_FINGERPRINT", value_name = "FP")]
    api_fingerprint: Option<String>,
    /// For an https:// API with a CA-signed certificate: PEM CA certificates
    /// to verify it against instead of the system's CA roots.
    #[arg(long, global = true, env = "WARREN_API_CA", value_name = "FILE")]
    api_ca: Option<std::path::PathBuf>,
    /// API token (prefer the WARREN_TOKEN environment variable: flags show in `ps`).
    #[arg(long, global = true, env = "WARREN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The controller's admin socket, used (as root or the controller's
    /// user, no token) when neither --token nor --api is given [default:
    /// /run/warren-controller/admin.sock, else
    /// /var/lib/warren-controller/admin.sock].
    #[arg(
        long = "admin-socket",
        global = true,
        env = "WARREN_ADMIN_SOCKET",
        value_name = "PATH"
    )]
    admin_socket: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

impl ApiArgs {
    /// The admin socket when there is neither a token nor an API URL and
    /// one answers; else the API at `--api` with the token.
    fn client(&self) -> anyhow::Result<client::ApiClient> {
        let token = self.token.clone().filter(|t| !t.trim().is_empty());
        let mut no_token = None;
        if token.is_none() && self.api.is_none() {
            match admin_socket::find(self.admin_socket.as_deref())? {
                admin_socket::Found::Usable(path) => return Ok(client::ApiClient::local(path)),
                admin_socket::Found::Unusable(why) => no_token = Some(why),
            }
        }
        let trust = client::TrustArgs {
            fingerprint: self.api_fingerprint.as_deref(),
            ca_file: self.api_ca.as_deref(),
        };
        let api = self.api.as_deref().unwrap_or(DEFAULT_API);
        let client = client::ApiClient::new(api, token, trust)?;
        Ok(match no_token {
            Some(why) => client.with_no_token_message(why),
            None => client,
        })
    }
}

/// Where the admin commands find the API without an admin socket or --api.
const DEFAULT_API: &str = "http://127.0.0.1:7480";

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// Runs the parsed command; the exit code is 0 ok, 1 error (2, usage, is clap's).
pub fn run(cli: Cli) -> ExitCode {
    let level = match cli.command {
        Command::Serve(_) | Command::Relay(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, level);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // A server uses every core it is given (tokio's default: the CPUs this
    // process may run on, or TOKIO_WORKER_THREADS); a one-off command
    // needs two threads at most.
    if !matches!(cli.command, Command::Serve(_) | Command::Relay(_)) {
        builder.worker_threads(2);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            warren_cli_assets::errln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(args).await,
            Command::CheckConfig(args) => serve::check_config(args),
            Command::Relay(args) => relay::run(args).await,
            Command::Fingerprint(args) => fingerprint::run(args),
            Command::Token(command) => token::run(command).await,
            Command::Console(command) => console::run(command).await,
            Command::Info(args) => info::run(args).await,
            Command::Network(args) => network::run(args).await,
            Command::Member(args) => member::run(args).await,
            Command::Key(args) => key::run(args).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Route(args) => route::run(args).await,
            Command::User(args) => user::run(args).await,
            Command::Policy(args) => policy::run(args).await,
            Command::Grant(args) => grant::run(args).await,
            Command::GenerateAssets(args) => {
                warren_cli_assets::run::<Cli>("warren-controller", env!("CARGO_PKG_VERSION"), &args)
                    .map(|()| ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            warren_cli_assets::errln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
