//! The `[dns]` section of the agent's config file, on its own so that the
//! config file's fuzz target builds it as it is (`fuzz/fuzz_targets/config.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Manage {
    /// systemd-resolved if it resolves for the system, else resolv.conf.
    #[default]
    Auto,
    Resolved,
    ResolvConf,
    /// Leave the system's resolver configuration alone (the stubs still run).
    Off,
}

impl Manage {
    pub fn as_str(self) -> &'static str {
        match self {
            Manage::Auto => "auto",
            Manage::Resolved => "resolved",
            Manage::ResolvConf => "resolv-conf",
            Manage::Off => "off",
        }
    }
}

pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The `[dns]` section of the agent's config file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DnsSettings {
    /// How the system is pointed at the stubs: auto, resolved, resolv-conf or off.
    #[serde(default)]
    pub manage: Manage,
    /// Run the stubs at all (`false` also turns management off).
    #[serde(default = "yes")]
    pub stub: bool,
    #[serde(default = "default_stub_port")]
    pub stub_port: u16,
    /// Where names outside the zones go; default: the system's resolvers
    /// from before the agent (never a public resolver).
    #[serde(default)]
    pub upstream: Vec<SocketAddr>,
    #[serde(default = "default_resolv_conf")]
    pub resolv_conf: PathBuf,
}

fn yes() -> bool {
    true
}
fn default_stub_port() -> u16 {
    53
}
fn default_resolv_conf() -> PathBuf {
    PathBuf::from(DEFAULT_RESOLV_CONF)
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            manage: Manage::Auto,
            stub: true,
            stub_port: default_stub_port(),
            upstream: Vec::new(),
            resolv_conf: default_resolv_conf(),
        }
    }
}
