//! The `serve` configuration: flags, `WARREN_*` variables, a TOML file and
//! defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/warren-controller";
pub const DEFAULT_LISTEN_QUIC: &str = "[::]:7443";
pub const DEFAULT_LISTEN_API: &str = "127.0.0.1:7480";

/// Flags of `serve` and `check-config`; each also reads a `WARREN_*` variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory for keys, certificate and database.
    #[arg(long, env = "WARREN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// UDP address for nodes' QUIC connections [default: [::]:7443, or 0.0.0.0:7443 without IPv6].
    #[arg(long, env = "WARREN_LISTEN_QUIC")]
    pub listen_quic: Option<SocketAddr>,
    /// TCP address for the HTTP API [default: 127.0.0.1:7480].
    #[arg(long, env = "WARREN_LISTEN_API")]
    pub listen_api: Option<SocketAddr>,
    /// Host names the API answers to besides IP literals and localhost (repeat or comma-separate).
    #[arg(long = "api-hosts", env = "WARREN_API_HOSTS", value_delimiter = ',')]
    pub api_hosts: Vec<String>,
    /// TOML file with the same keys (kebab-case).
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The TOML file. Unknown keys are errors, so a typo never falls back silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen_quic: Option<SocketAddr>,
    listen_api: Option<SocketAddr>,
    api_hosts: Option<Vec<String>>,
}

/// What `serve` runs with, printed by `check-config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Effective {
    pub data_dir: PathBuf,
    pub listen_quic: SocketAddr,
    pub listen_api: SocketAddr,
    pub api_hosts: Vec<String>,
    /// True when listen-quic is the default, which may fall back to IPv4.
    #[serde(skip)]
    pub quic_is_default: bool,
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let mut file: FileConfig =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    // A relative data dir in the file is relative to the file, not the cwd.
    if let (Some(dir), Some(base)) = (&file.data_dir, path.parent()) {
        if dir.is_relative() {
            file.data_dir = Some(base.join(dir));
        }
    }
    Ok(file)
}

/// Resolves flags (clap has already applied the environment) over the file
/// over defaults.
pub fn resolve(args: &ServeArgs) -> anyhow::Result<Effective> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let default_quic: SocketAddr = DEFAULT_LISTEN_QUIC
        .parse()
        .context("built-in default listen-quic")?;
    let default_api: SocketAddr = DEFAULT_LISTEN_API
        .parse()
        .context("built-in default listen-api")?;
    let listen_quic = args.listen_quic.or(file.listen_quic);
    let api_hosts = if args.api_hosts.is_empty() {
        file.api_hosts.unwrap_or_default()
    } else {
        args.api_hosts.clone()
    };
    Ok(Effective {
        data_dir: args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        quic_is_default: listen_quic.is_none(),
        listen_quic: listen_quic.unwrap_or(default_quic),
        listen_api: args.listen_api.or(file.listen_api).unwrap_or(default_api),
        api_hosts: api_hosts
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            data_dir: None,
            listen_quic: None,
            listen_api: None,
            api_hosts: vec![],
            config: None,
        }
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

        let eff = resolve(&args()).unwrap();
        assert_eq!(eff.listen_quic.to_string(), "[::]:7443");
        assert!(eff.quic_is_default);
        assert_eq!(eff.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
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
