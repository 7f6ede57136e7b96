//! The `serve` configuration: flags, `WARREN_*` variables, a TOML file and
//! defaults, in that order of precedence.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use warren_controller::relay::RelayLimits;
use warren_proto::control::normalise_fingerprint;
use warren_proto::{relay, stun};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/warren-controller";
pub const DEFAULT_LISTEN_QUIC: &str = "[::]:7443";
pub const DEFAULT_LISTEN_API: &str = "127.0.0.1:7480";
/// The admin socket's file name in the data directory, its default place.
pub const ADMIN_SOCKET_FILE: &str = "admin.sock";
/// A relay-only instance shares its controller's host (it reads its
/// database), so it cannot share its port.
pub const DEFAULT_RELAY_LISTEN_QUIC: &str = "[::]:7444";
/// A relay-only instance's own key and certificate.
pub const DEFAULT_RELAY_STATE_DIR: &str = "/var/lib/warren-controller-relay";

/// Flags of `serve` and `check-config`; each also reads a `WARREN_*` variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory for keys, certificate and database.
    #[arg(long, env = "WARREN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DB) to keep state in [default: SQLite, DATA_DIR/controller.db].
    #[arg(long, env = "WARREN_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// UDP address for nodes' QUIC connections [default: [::]:7443, or 0.0.0.0:7443 without IPv6].
    #[arg(long, env = "WARREN_LISTEN_QUIC")]
    pub listen_quic: Option<SocketAddr>,
    /// TCP address for nodes whose networks block UDP: QUIC over TCP [default: the listen-quic address, over TCP].
    #[arg(long, env = "WARREN_LISTEN_TCP", conflicts_with = "no_listen_tcp")]
    pub listen_tcp: Option<SocketAddr>,
    /// No QUIC over TCP: nodes whose networks block UDP cannot connect.
    #[arg(long)]
    pub no_listen_tcp: bool,
    /// TCP address for the HTTP API [default: 127.0.0.1:7480].
    #[arg(long, env = "WARREN_LISTEN_API")]
    pub listen_api: Option<SocketAddr>,
    /// Host names the API answers to besides IP literals and localhost (repeat or comma-separate).
    #[arg(long = "api-hosts", env = "WARREN_API_HOSTS", value_delimiter = ',')]
    pub api_hosts: Vec<String>,
    /// Unix socket serving the API to root and the controller's own user, no token needed [default: DATA_DIR/admin.sock].
    #[arg(long, env = "WARREN_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
    /// UDP addresses answering STUN (repeat or comma-separate) [default: [::]:3478,[::]:3479, or 0.0.0.0 without IPv6].
    #[arg(
        long = "listen-stun",
        env = "WARREN_LISTEN_STUN",
        value_delimiter = ','
    )]
    pub listen_stun: Vec<SocketAddr>,
    #[command(flatten)]
    pub relay: RelayLimitArgs,
    /// UDP and TCP address of the authoritative DNS server for every
    /// network's zone [default: none, DNS off].
    #[arg(long, env = "WARREN_LISTEN_DNS")]
    pub listen_dns: Option<SocketAddr>,
    /// HOST:PORT of a relay-only instance (`warren-controller relay`) that
    /// reads this controller's database; agents relay through it instead
    /// of this controller [default: none, this controller relays].
    #[arg(long, env = "WARREN_ADVERTISE_RELAY")]
    pub advertise_relay: Option<String>,
    /// The SHA-256 fingerprint of that instance's own certificate
    /// (`warren-controller fingerprint --data-dir RELAY_STATE_DIR`), which
    /// agents pin; required with --advertise-relay.
    #[arg(long, env = "WARREN_ADVERTISE_RELAY_FINGERPRINT")]
    pub advertise_relay_fingerprint: Option<String>,
    /// HOST:PORT agents reach this controller's QUIC listener at. With
    /// several replicas on one database, each says its own: agents learn
    /// every replica's and move when theirs goes away [default: the
    /// listen-quic address, unless it is a wildcard].
    #[arg(long, env = "WARREN_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// TCP address of the HTTPS listener for people's pages (sign-in) [default: none].
    #[arg(long, env = "WARREN_LISTEN_HTTPS")]
    pub listen_https: Option<SocketAddr>,
    /// The https:// address browsers reach the HTTPS listener at (sign-in links and the provider's redirect).
    #[arg(long, env = "WARREN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// IPv4 range that mapped prefixes of overlapping sites' routes are
    /// allocated from; keep it clear of network pools and routes [default:
    /// 100.64.0.0/10].
    #[arg(long, env = "WARREN_SITE_MAPPED_RANGE", value_name = "PREFIX")]
    pub site_mapped_range: Option<Ipv4Net>,
    /// TOML file with the same keys (kebab-case).
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Each node's share of the relay; flags of `serve` and `relay`.
#[derive(Debug, Clone, Default, Args)]
pub struct RelayLimitArgs {
    /// Relay bytes per second each node may send [default: 12500000, about 100 Mbit/s].
    #[arg(long, env = "WARREN_RELAY_RATE")]
    pub relay_rate: Option<u64>,
    /// Relay bytes a node may send in one burst [default: 2097152, 2 MiB].
    #[arg(long, env = "WARREN_RELAY_BURST")]
    pub relay_burst: Option<u64>,
}

/// The TOML file. Unknown keys are errors, so a typo never falls back silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    listen_quic: Option<SocketAddr>,
    /// An address, or "off".
    listen_tcp: Option<String>,
    listen_api: Option<SocketAddr>,
    api_hosts: Option<Vec<String>>,
    admin_socket: Option<PathBuf>,
    listen_stun: Option<Vec<SocketAddr>>,
    relay_rate: Option<u64>,
    relay_burst: Option<u64>,
    listen_dns: Option<SocketAddr>,
    advertise_relay: Option<String>,
    advertise_relay_fingerprint: Option<String>,
    advertise_address: Option<String>,
    listen_https: Option<SocketAddr>,
    public_url: Option<String>,
    site_mapped_range: Option<Ipv4Net>,
    https_cert: Option<PathBuf>,
    https_key: Option<PathBuf>,
    oidc: Option<super::sign_in::OidcFile>,
    github: Option<super::sign_in::GithubFile>,
    roles: Option<RolesFile>,
}

/// `[roles]`: people who may use the API (and the console) with their
/// session instead of a token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    auditors: Vec<String>,
}

/// What `serve` runs with, printed by `check-config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Effective {
    pub data_dir: PathBuf,
    /// The PostgreSQL URL, if the state is kept there; printed with its
    /// password hidden.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_database"
    )]
    pub database: Option<String>,
    pub listen_quic: SocketAddr,
    /// QUIC over TCP, unless off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_tcp: Option<SocketAddr>,
    pub listen_api: SocketAddr,
    pub api_hosts: Vec<String>,
    pub site_mapped_range: Ipv4Net,
    pub admin_socket: PathBuf,
    pub listen_stun: Vec<SocketAddr>,
    pub relay_rate: u64,
    pub relay_burst: u64,
    /// Where DNS answers, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_dns: Option<SocketAddr>,
    /// The relay-only instance agents are sent to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_relay: Option<String>,
    /// Its certificate's fingerprint, normalised (lowercase hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_relay_fingerprint: Option<String>,
    /// Where agents reach this replica, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_https: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<super::sign_in::EffectiveOidc>,
    #[serde(skip_serializing_if = "warren_controller::roles::Roles::is_empty")]
    pub roles: warren_controller::roles::Roles,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<super::sign_in::EffectiveGithub>,
    /// True when listen-quic is the default, which may fall back to IPv4.
    #[serde(skip)]
    pub quic_is_default: bool,
    /// True when listen-tcp is the default, which may fall back to IPv4
    /// and only warns when it cannot be bound.
    #[serde(skip)]
    pub tcp_is_default: bool,
    /// True when admin-socket is the default, which may be left out.
    #[serde(skip)]
    pub admin_socket_is_default: bool,
    /// True when listen-stun is the default, which may fall back to IPv4.
    #[serde(skip)]
    pub stun_is_default: bool,
}

impl Effective {
    pub fn relay_limits(&self) -> RelayLimits {
        RelayLimits {
            rate: self.relay_rate,
            burst: self.relay_burst,
        }
    }
}

/// Something with directory keys (`data-dir`, …) read from a TOML file.
pub trait HasDirs {
    fn dirs_mut(&mut self) -> Vec<&mut Option<PathBuf>>;
}

impl HasDirs for FileConfig {
    fn dirs_mut(&mut self) -> Vec<&mut Option<PathBuf>> {
        let mut paths = vec![
            &mut self.data_dir,
            &mut self.admin_socket,
            &mut self.https_cert,
            &mut self.https_key,
        ];
        if let Some(oidc) = &mut self.oidc {
            paths.push(&mut oidc.client_secret_file);
        }
        if let Some(github) = &mut self.github {
            paths.push(&mut github.client_secret_file);
        }
        paths
    }
}

pub fn read_file<T: HasDirs + serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let mut file: T =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    // A relative directory in the file is relative to the file, not the cwd.
    if let Some(base) = path.parent() {
        for dir in file.dirs_mut() {
            if let Some(relative) = dir.as_ref().filter(|d| d.is_relative()) {
                *dir = Some(base.join(relative));
            }
        }
    }
    Ok(file)
}

/// Flag over file over default for the relay limits, checked.
pub fn relay_limits(
    args: &RelayLimitArgs,
    file_rate: Option<u64>,
    file_burst: Option<u64>,
) -> anyhow::Result<RelayLimits> {
    let limits = RelayLimits {
        rate: args
            .relay_rate
            .or(file_rate)
            .unwrap_or(RelayLimits::DEFAULT_RATE),
        burst: args
            .relay_burst
            .or(file_burst)
            .unwrap_or(RelayLimits::DEFAULT_BURST),
    };
    if limits.rate == 0 {
        anyhow::bail!("relay-rate must be at least 1 byte per second");
    }
    if limits.burst < relay::MAX_FRAME as u64 {
        anyhow::bail!(
            "relay-burst must be at least {} bytes (the largest relay frame), got {}",
            relay::MAX_FRAME,
            limits.burst
        );
    }
    Ok(limits)
}

/// The built-in STUN addresses: every IPv6 (and, dual-stack, IPv4) address
/// on each of the default ports.
pub fn default_stun() -> Vec<SocketAddr> {
    stun::DEFAULT_PORTS
        .iter()
        .map(|&port| SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
        .collect()
}

/// A `database` value: a PostgreSQL URL (SQLite needs none, it lives in
/// the data directory).
pub fn check_database(url: &str) -> anyhow::Result<String> {
    if !warren_controller::store::is_postgres_url(url) {
        anyhow::bail!(
            "database must be a postgres:// URL (SQLite needs no setting: it is \
             DATA_DIR/controller.db); got {:?}",
            redact_password(url)
        );
    }
    Ok(url.to_owned())
}

/// `url` with the password of its user info, if any, as `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn serialize_database<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&redact_password(url)),
        None => serializer.serialize_none(),
    }
}

/// Resolves flags (clap has already applied the environment) over the file
/// over defaults.
/// Where QUIC over TCP listens: the flags win over the file.
enum TcpChoice {
    Off,
    At(SocketAddr),
    Default,
}

fn listen_tcp(args: &ServeArgs, file: Option<&str>) -> anyhow::Result<TcpChoice> {
    if args.no_listen_tcp {
        return Ok(TcpChoice::Off);
    }
    if let Some(addr) = args.listen_tcp {
        return Ok(TcpChoice::At(addr));
    }
    match file.map(str::trim) {
        None => Ok(TcpChoice::Default),
        Some("off") => Ok(TcpChoice::Off),
        Some(addr) => addr.parse().map(TcpChoice::At).map_err(|_| {
            anyhow::anyhow!(
                "listen-tcp {addr:?} is neither \"off\" nor an address such as \"[::]:443\""
            )
        }),
    }
}

pub fn resolve(args: &ServeArgs) -> anyhow::Result<Effective> {
    let file: FileConfig = match &args.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let default_quic: SocketAddr = DEFAULT_LISTEN_QUIC
        .parse()
        .context("built-in default listen-quic")?;
    let default_api: SocketAddr = DEFAULT_LISTEN_API
        .parse()
        .context("built-in default listen-api")?;
    let (advertise_relay, advertise_relay_fingerprint) = advertised_relay(args, &file)?;
    let listen_quic = args.listen_quic.or(file.listen_quic);
    let listen_tcp = listen_tcp(args, file.listen_tcp.as_deref())?;
    let api_hosts = if args.api_hosts.is_empty() {
        file.api_hosts.unwrap_or_default()
    } else {
        args.api_hosts.clone()
    };
    let listen_stun = if args.listen_stun.is_empty() {
        file.listen_stun
    } else {
        Some(args.listen_stun.clone())
    };
    let limits = relay_limits(&args.relay, file.relay_rate, file.relay_burst)?;
    let advertise_address = args
        .advertise_address
        .clone()
        .or(file.advertise_address.clone());
    if let Some(address) = &advertise_address {
        check_host_port("advertise-address", address)?;
    }
    let listen_https = args.listen_https.or(file.listen_https);
    let public_url = args
        .public_url
        .clone()
        .or(file.public_url)
        .map(|u| super::sign_in::check_public_url(&u))
        .transpose()?;
    if file.https_cert.is_some() != file.https_key.is_some() {
        anyhow::bail!(
            "https-cert and https-key go together (a certificate chain and its key, PEM)"
        );
    }
    let oidc = file.oidc.map(super::sign_in::resolve_oidc).transpose()?;
    let github = file
        .github
        .map(super::sign_in::resolve_github)
        .transpose()?;
    let roles = file.roles.unwrap_or_default();
    let roles = warren_controller::roles::Roles::parse(&roles.admins, &roles.auditors)
        .map_err(|e| anyhow::anyhow!("[roles]: {e}"))?;
    if !roles.is_empty() && oidc.is_none() && github.is_none() {
        anyhow::bail!("[roles] gives roles to people who sign in: it needs sign-in configured");
    }
    // Checked here so that check-config says so too.
    super::sign_in::settings(
        public_url.as_deref(),
        listen_https,
        oidc.as_ref(),
        github.as_ref(),
    )?;
    let database = args
        .database
        .clone()
        .or(file.database)
        .map(|url| check_database(&url))
        .transpose()?;
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let admin_socket = args.admin_socket.clone().or(file.admin_socket);
    let site_mapped_range = args
        .site_mapped_range
        .or(file.site_mapped_range)
        .unwrap_or(warren_controller::store::DEFAULT_SITE_MAPPED_RANGE);
    if site_mapped_range != site_mapped_range.trunc() {
        anyhow::bail!(
            "site-mapped-range {site_mapped_range} has host bits set (did you mean {}?)",
            site_mapped_range.trunc()
        );
    }
    Ok(Effective {
        site_mapped_range,
        database,
        admin_socket_is_default: admin_socket.is_none(),
        admin_socket: admin_socket.unwrap_or_else(|| data_dir.join(ADMIN_SOCKET_FILE)),
        data_dir,
        quic_is_default: listen_quic.is_none(),
        listen_quic: listen_quic.unwrap_or(default_quic),
        tcp_is_default: matches!(listen_tcp, TcpChoice::Default),
        listen_tcp: match listen_tcp {
            TcpChoice::Off => None,
            TcpChoice::At(addr) => Some(addr),
            TcpChoice::Default => Some(listen_quic.unwrap_or(default_quic)),
        },
        listen_api: args.listen_api.or(file.listen_api).unwrap_or(default_api),
        api_hosts: api_hosts
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        stun_is_default: listen_stun.is_none(),
        listen_stun: match listen_stun {
            Some(list) => list,
            None => default_stun(),
        },
        relay_rate: limits.rate,
        relay_burst: limits.burst,
        listen_dns: args.listen_dns.or(file.listen_dns),
        advertise_relay,
        advertise_relay_fingerprint,
        advertise_address,
        listen_https,
        public_url,
        https_cert: file.https_cert,
        https_key: file.https_key,
        oidc,
        roles,
        github,
    })
}

/// `advertise-relay` and its fingerprint: both or neither.
fn advertised_relay(
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let relay = args
        .advertise_relay
        .clone()
        .or_else(|| file.advertise_relay.clone());
    let fingerprint = args
        .advertise_relay_fingerprint
        .clone()
        .or_else(|| file.advertise_relay_fingerprint.clone());
    match (relay, fingerprint) {
        (None, None) => Ok((None, None)),
        (Some(relay), Some(fingerprint)) => {
            check_host_port("advertise-relay", &relay)?;
            let fingerprint = normalise_fingerprint(&fingerprint).ok_or_else(|| {
                anyhow::anyhow!(
                    "advertise-relay-fingerprint must be 64 hex digits (colons allowed), got {fingerprint:?}"
                )
            })?;
            Ok((Some(relay), Some(fingerprint)))
        }
        (Some(_), None) => anyhow::bail!(
            "advertise-relay needs advertise-relay-fingerprint: the relay-only instance's own \
             certificate, as `warren-controller fingerprint --data-dir RELAY_STATE_DIR` prints it"
        ),
        (None, Some(_)) => {
            anyhow::bail!("advertise-relay-fingerprint is set without advertise-relay")
        }
    }
}

/// `HOST:PORT` as an agent will dial it: a host (name, IPv4 or `[IPv6]`)
/// and a port that is not 0.
fn check_host_port(key: &str, value: &str) -> anyhow::Result<()> {
    let bad = || anyhow::anyhow!("{key} must be HOST:PORT, got {value:?}");
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if port == 0 || host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    if host.contains(':') && !bracketed {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            data_dir: None,
            database: None,
            listen_quic: None,
            listen_tcp: None,
            no_listen_tcp: false,
            listen_api: None,
            api_hosts: vec![],
            admin_socket: None,
            listen_stun: vec![],
            relay: RelayLimitArgs::default(),
            listen_dns: None,
            advertise_relay: None,
            advertise_relay_fingerprint: None,
            advertise_address: None,
            listen_https: None,
            public_url: None,
            site_mapped_range: None,
            config: None,
        }
    }

    #[test]
    fn advertised_relays_must_be_dialable() {
        let mut a = args();
        a.advertise_relay_fingerprint = Some("AB:".repeat(32));
        for good in ["relay.example:7444", "192.0.2.1:7444", "[2001:db8::1]:7444"] {
            a.advertise_relay = Some(good.into());
            assert_eq!(resolve(&a).unwrap().advertise_relay.as_deref(), Some(good));
        }
        for bad in [
            "relay.example",
            ":7444",
            "relay:0",
            "2001:db8::1:7444",
            "a b:1",
            "x:99999",
        ] {
            a.advertise_relay = Some(bad.into());
            let e = resolve(&a).unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_advertised_relay_comes_with_its_own_fingerprint() {
        let mut a = args();
        a.advertise_relay = Some("relay.example:7444".into());
        let e = resolve(&a).unwrap_err().to_string();
        assert!(e.contains("needs advertise-relay-fingerprint"), "{e}");
        for bad in ["ab", &"zz".repeat(32), &"ab".repeat(33)] {
            a.advertise_relay_fingerprint = Some(bad.to_string());
            let e = resolve(&a).unwrap_err().to_string();
            assert!(e.contains("64 hex digits"), "{bad}: {e}");
        }
        a.advertise_relay_fingerprint = Some("AB:".repeat(32));
        let effective = resolve(&a).unwrap();
        assert_eq!(
            effective.advertise_relay_fingerprint.as_deref(),
            Some("ab".repeat(32).as_str())
        );
        a.advertise_relay = None;
        let e = resolve(&a).unwrap_err().to_string();
        assert!(e.contains("without advertise-relay"), "{e}");
    }

    #[test]
    fn quic_over_tcp_follows_the_quic_address_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        let mut a = args();
        a.listen_quic = Some("192.0.2.1:443".parse().unwrap());
        let eff = resolve(&a).unwrap();
        assert_eq!(eff.listen_tcp, a.listen_quic);
        assert!(eff.tcp_is_default);
        for (file, want) in [
            ("listen-tcp = \"off\"\n", None),
            ("listen-tcp = \"127.0.0.1:8443\"\n", Some("127.0.0.1:8443")),
        ] {
            std::fs::write(&path, file).unwrap();
            a.config = Some(path.clone());
            let eff = resolve(&a).unwrap();
            assert_eq!(eff.listen_tcp, want.map(|w| w.parse().unwrap()), "{file}");
            assert!(!eff.tcp_is_default);
        }
        a.no_listen_tcp = true;
        std::fs::write(&path, "listen-tcp = \"127.0.0.1:8443\"\n").unwrap();
        assert_eq!(resolve(&a).unwrap().listen_tcp, None);
        a.no_listen_tcp = false;
        std::fs::write(&path, "listen-tcp = \"yes\"\n").unwrap();
        let e = resolve(&a).unwrap_err().to_string();
        assert!(e.contains("neither \"off\" nor an address"), "{e}");
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        std::fs::write(
            &path,
            "data-dir = \"state\"\nlisten-api = \"127.0.0.1:9000\"\nlisten-quic = \"127.0.0.1:9443\"\n",
        )
        .unwrap();
        let mut a = args();
        a.config = Some(path);
        a.listen_api = Some("127.0.0.1:9001".parse().unwrap());
        let eff = resolve(&a).unwrap();
        assert_eq!(eff.listen_api.port(), 9001);
        assert_eq!(eff.listen_quic.port(), 9443);
        assert!(!eff.quic_is_default);
        assert_eq!(eff.data_dir, dir.path().join("state"));
        assert_eq!(eff.admin_socket, dir.path().join("state/admin.sock"));
        assert!(eff.admin_socket_is_default);

        let eff = resolve(&args()).unwrap();
        assert_eq!(eff.listen_quic.to_string(), "[::]:7443");
        assert!(eff.quic_is_default);
        assert_eq!(eff.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            eff.admin_socket,
            PathBuf::from("/var/lib/warren-controller/admin.sock")
        );
        let stun: Vec<String> = eff.listen_stun.iter().map(|a| a.to_string()).collect();
        assert_eq!(stun, ["[::]:3478", "[::]:3479"]);
        assert!(eff.stun_is_default);
        assert_eq!(eff.relay_limits(), RelayLimits::default());
    }

    #[test]
    fn stun_and_relay_keys_resolve_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        std::fs::write(
            &path,
            "listen-stun = []\nrelay-rate = 1000000\nrelay-burst = 100000\n",
        )
        .unwrap();
        let mut a = args();
        a.config = Some(path.clone());
        let eff = resolve(&a).unwrap();
        assert!(eff.listen_stun.is_empty());
        assert!(!eff.stun_is_default);
        assert_eq!((eff.relay_rate, eff.relay_burst), (1_000_000, 100_000));

        a.listen_stun = vec!["127.0.0.1:3478".parse().unwrap()];
        a.relay.relay_rate = Some(5);
        let eff = resolve(&a).unwrap();
        assert_eq!(eff.listen_stun.len(), 1);
        assert_eq!(eff.relay_rate, 5);

        a.relay.relay_burst = Some(1000);
        assert!(resolve(&a).is_err(), "a burst below one frame never passes");
        a.relay.relay_burst = None;
        a.relay.relay_rate = Some(0);
        assert!(resolve(&a).is_err());
    }

    #[test]
    fn the_site_mapped_range_resolves_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        std::fs::write(&path, "site-mapped-range = \"198.18.0.0/15\"\n").unwrap();
        assert_eq!(
            resolve(&args()).unwrap().site_mapped_range.to_string(),
            "100.64.0.0/10"
        );
        let mut a = args();
        a.config = Some(path);
        let eff = resolve(&a).unwrap();
        assert_eq!(eff.site_mapped_range.to_string(), "198.18.0.0/15");
        assert!(toml::to_string(&eff)
            .unwrap()
            .contains("site-mapped-range = \"198.18.0.0/15\""));
        a.site_mapped_range = Some("100.96.0.0/12".parse().unwrap());
        assert_eq!(
            resolve(&a).unwrap().site_mapped_range.to_string(),
            "100.96.0.0/12"
        );
        a.site_mapped_range = Some("100.64.0.1/10".parse().unwrap());
        let err = resolve(&a).unwrap_err().to_string();
        assert!(err.contains("host bits"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen-quik = \"127.0.0.1:1\"\n").unwrap();
        let mut a = args();
        a.config = Some(path);
        assert!(resolve(&a).is_err());
    }
}
