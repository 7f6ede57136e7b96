//! The agent's TOML configuration: one typed struct, checked before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use warren_proto::{NodePrivateKey, NodePublicKey};

pub const DEFAULT_SOCKET: &str = "/run/warren/warren.sock";
pub const DEFAULT_INTERFACE: &str = "warren0";
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_MTU: u16 = 1420;

/// The whole file: `[node]` and any number of `[[peer]]` tables.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub node: NodeConfig,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
    /// Private DNS: the stubs and how the system is pointed at them.
    #[serde(default)]
    pub dns: crate::dns::DnsSettings,
    /// The Prometheus endpoint; off without the section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<crate::metrics::MetricsSettings>,
    /// NAT traversal helpers: port mapping.
    #[serde(default)]
    pub nat: NatConfig,
}

/// `[nat]`: what the agent asks of the NATs in front of it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NatConfig {
    /// Ask the default gateway for a mapping of each data-plane port
    /// (PCP, else NAT-PMP) and advertise it as an endpoint.
    #[serde(default = "default_true")]
    pub port_mapping: bool,
    /// Try birthday-paradox probing with peers that plain probing does
    /// not reach: one side behind a NAT that maps per destination, the
    /// other behind one that filters on address and port.
    #[serde(default = "default_true")]
    pub hard_nat_probing: bool,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            port_mapping: true,
            hard_nat_probing: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// Relative paths are taken from the config file's folder. Without it
    /// the key lives in the state directory, made on first start.
    pub private_key_file: Option<PathBuf>,
    /// Where the node key (unless `private-key-file`), the joined networks
    /// and their cached netmaps live.
    pub state_dir: Option<PathBuf>,
    #[serde(default = "default_listen_port")]
    pub listen_port: u16,
    /// Overlay addresses of the static network; needed only with `[[peer]]`s.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default = "default_interface")]
    pub interface_name: String,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    pub socket: Option<PathBuf>,
    /// Ask the kernel for TUN offloads (TSO/GRO). Falls back to plain reads
    /// by itself where the kernel refuses; `false` forces the plain path.
    #[serde(default = "default_true")]
    pub offload: bool,
    /// How long a joined network's netmap stays trusted without its
    /// controller confirming it; past that the network has no peers.
    #[serde(default = "default_netmap_max_age", with = "humantime_serde")]
    pub netmap_max_age: Duration,
    /// A group (name or number) whose members may change things through
    /// the local API; without it only root (and the agent's own user) can.
    pub admin_group: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeerConfig {
    pub public_key: NodePublicKey,
    pub endpoint: Option<SocketAddr>,
    #[serde(default)]
    pub allowed_ips: Vec<IpNet>,
    #[serde(default, with = "humantime_serde")]
    pub persistent_keepalive: Option<Duration>,
}

fn default_listen_port() -> u16 {
    DEFAULT_LISTEN_PORT
}
fn default_interface() -> String {
    DEFAULT_INTERFACE.to_owned()
}
fn default_mtu() -> u16 {
    DEFAULT_MTU
}
fn default_true() -> bool {
    true
}
fn default_netmap_max_age() -> Duration {
    crate::daemon::NETMAP_MAX_AGE
}

impl Config {
    /// Reads and checks a config file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.node.private_key_file,
            &mut config.node.state_dir,
        ]
        .into_iter()
        .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        config
            .validate()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let node = &self.node;
        if node.addresses.is_empty() && !self.peers.is_empty() {
            bail!("[node] addresses: [[peer]]s need at least one overlay address");
        }
        if node.addresses.iter().filter(|a| a.addr().is_ipv4()).count() > 1 {
            bail!("[node] addresses: at most one IPv4 address (any number of IPv6 ones)");
        }
        if node.interface_name.is_empty() || node.interface_name.len() > 15 {
            bail!(
                "[node] interface-name {:?}: must be 1 to 15 characters",
                node.interface_name
            );
        }
        if node.netmap_max_age < Duration::from_secs(1) {
            bail!("[node] netmap-max-age must be at least 1s");
        }
        if !(1280..=9000).contains(&node.mtu) {
            bail!("[node] mtu {}: must be between 1280 and 9000", node.mtu);
        }
        if let Some(metrics) = &self.metrics {
            metrics.check().map_err(anyhow::Error::msg)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, peer) in self.peers.iter().enumerate() {
            if !seen.insert(peer.public_key) {
                bail!(
                    "[[peer]] #{}: public key {} appears twice",
                    i + 1,
                    peer.public_key
                );
            }
            if peer
                .persistent_keepalive
                .is_some_and(|d| d.as_secs() > 65_535)
            {
                bail!(
                    "[[peer]] #{}: persistent-keepalive must be at most 65535s",
                    i + 1
                );
            }
        }
        Ok(())
    }

    /// The key named by `private-key-file`, if the file names one.
    pub fn read_private_key(&self) -> anyhow::Result<Option<NodePrivateKey>> {
        self.node
            .private_key_file
            .as_deref()
            .map(read_private_key)
            .transpose()
    }
}

/// Reads a WireGuard-format private key file.
pub fn read_private_key(path: &Path) -> anyhow::Result<NodePrivateKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading private key {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("private key {} is not a WireGuard key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[node]
private-key-file = "node.key"
listen-port = 51820
addresses = ["10.99.0.1/24", "fd99::1/64"]
interface-name = "warren0"
mtu = 1420
socket = "/run/warren/warren.sock"

[[peer]]
public-key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
endpoint = "192.0.2.2:51820"
allowed-ips = ["10.99.0.2/32", "fd99::2/128"]
persistent-keepalive = "25s"
"#;

    #[test]
    fn parses_the_documented_example() {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        config.validate().unwrap();
        assert_eq!(config.node.addresses.len(), 2);
        assert_eq!(
            config.peers[0].persistent_keepalive,
            Some(Duration::from_secs(25))
        );
        assert_eq!(
            config.peers[0].endpoint,
            Some("192.0.2.2:51820".parse().unwrap())
        );
    }

    #[test]
    fn netmap_max_age_defaults_to_a_week_and_takes_units() {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(
            config.node.netmap_max_age,
            Duration::from_secs(7 * 24 * 3600)
        );
        let text = EXAMPLE.replace("mtu = 1420", "mtu = 1420\nnetmap-max-age = \"12h\"");
        let config: Config = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.node.netmap_max_age, Duration::from_secs(12 * 3600));
        let text = EXAMPLE.replace("mtu = 1420", "mtu = 1420\nnetmap-max-age = \"0s\"");
        let config: Config = toml::from_str(&text).unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = EXAMPLE.replace("mtu = 1420", "mtu = 1420\nmtuu = 1");
        let err = toml::from_str::<Config>(&text).unwrap_err().to_string();
        assert!(err.contains("mtuu"), "{err}");
    }

    #[test]
    fn bad_values_get_clear_errors() {
        let text = EXAMPLE.replace("xTIBA5rbo", "!!!");
        assert!(toml::from_str::<Config>(&text).is_err());
        let mut config: Config = toml::from_str(EXAMPLE).unwrap();
        config.node.mtu = 100;
        assert!(config.validate().unwrap_err().to_string().contains("mtu"));
        config.node.mtu = 1420;
        config.peers.push(config.peers[0].clone());
        assert!(config.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn metrics_are_off_unless_asked_for_and_checked_when_they_are() {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(config.metrics, None);
        let text = format!("{EXAMPLE}\n[metrics]\nlisten = \"127.0.0.1:9101\"\n");
        let config: Config = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.metrics.map(|m| m.listen),
            Some("127.0.0.1:9101".parse().unwrap())
        );
        let text = format!("{EXAMPLE}\n[metrics]\nlisten = \"0.0.0.0:9101\"\n");
        let config: Config = toml::from_str(&text).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("metrics endpoint 0.0.0.0:9101"), "{err}");
    }

    #[test]
    fn relative_key_path_follows_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warren.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(
            config.node.private_key_file,
            Some(dir.path().join("node.key"))
        );
    }
}

/// The config file's fuzz target, replayed over its committed inputs.
#[cfg(test)]
#[path = "../../fuzz/checks/config.rs"]
mod fuzz_inputs;
