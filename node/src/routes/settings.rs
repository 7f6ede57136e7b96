//! What the user chose, kept in `STATE_DIR/routes.json`: advertised
//! prefixes and accepting per network, the exit node, masquerading.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use warren_proto::site::SiteSpec;
use warren_proto::{NetworkId, NodeId};

/// One network's choices.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkChoice {
    /// Prefixes this node offers (subnet routes, or `0.0.0.0/0` and `::/0`
    /// to be an exit node).
    #[serde(default)]
    pub advertise: BTreeSet<IpNet>,
    /// Install the subnet routes peers serve.
    #[serde(default)]
    pub accept: bool,
    /// The site (a cluster) the advertised routes are for, sent with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteSpec>,
}

/// The exit node in use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExitChoice {
    pub network: NetworkId,
    pub node_id: NodeId,
    /// Prefixes that keep the normal default route.
    #[serde(default)]
    pub exclude: BTreeSet<IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub networks: BTreeMap<NetworkId, NetworkChoice>,
    #[serde(default)]
    pub exit_node: Option<ExitChoice>,
    /// NAT forwarded overlay traffic to this node's LAN address, so the
    /// LAN needs no route back to the overlay.
    #[serde(default = "yes")]
    pub masquerade: bool,
}

fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            networks: BTreeMap::new(),
            exit_node: None,
            masquerade: true,
        }
    }
}

impl Settings {
    pub fn network(&self, id: &NetworkId) -> NetworkChoice {
        self.networks.get(id).cloned().unwrap_or_default()
    }

    pub fn accepts(&self, id: &NetworkId) -> bool {
        self.networks.get(id).is_some_and(|n| n.accept)
    }

    pub fn advertised(&self, id: &NetworkId) -> Vec<IpNet> {
        self.networks
            .get(id)
            .map(|n| n.advertise.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The site network `id`'s routes are advertised for.
    pub fn site(&self, id: &NetworkId) -> Option<SiteSpec> {
        self.networks.get(id).and_then(|n| n.site.clone())
    }

    /// What network `id` advertises, with its site.
    pub fn advertised_with_site(&self, id: &NetworkId) -> super::Advertised {
        super::Advertised {
            routes: self.advertised(id),
            site: self.site(id),
        }
    }

    /// Forgets a left network (and an exit node in it).
    pub fn forget(&mut self, id: &NetworkId) -> bool {
        let mut changed = self.networks.remove(id).is_some();
        if self.exit_node.as_ref().is_some_and(|e| e.network == *id) {
            self.exit_node = None;
            changed = true;
        }
        changed
    }
}

/// The settings file.
pub struct SettingsFile {
    path: PathBuf,
}

impl SettingsFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("routes.json"),
        }
    }

    /// The saved settings; missing means defaults (nothing advertised or
    /// accepted). A corrupt file is an error: the caller runs with the
    /// defaults, which route nothing, and keeps the file for inspection.
    pub fn load(&self) -> anyhow::Result<Settings> {
        if !self.path.exists() {
            return Ok(Settings::default());
        }
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", self.path.display()))
    }

    pub fn save(&self, settings: &Settings) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(settings).context("encoding route settings")?;
        crate::state::write_atomic(&self.path, &text, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_route_nothing_and_masquerade() {
        let s: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Settings::default());
        assert!(s.masquerade);
        let id: NetworkId = "8056c2e21c000001".parse().unwrap();
        assert!(!s.accepts(&id));
        assert!(s.advertised(&id).is_empty());
        assert!(serde_json::from_str::<Settings>(r#"{"bogus":1}"#).is_err());
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = SettingsFile::new(dir.path());
        let id: NetworkId = "8056c2e21c000001".parse().unwrap();
        let mut s = Settings::default();
        s.networks.insert(
            id,
            NetworkChoice {
                advertise: ["10.96.0.0/12".parse().unwrap()].into(),
                accept: true,
                site: Some(SiteSpec {
                    name: "m".into(),
                    dns: Some(warren_proto::site::SiteDns {
                        domain: "cluster.local".into(),
                        server: "10.96.0.10".parse().unwrap(),
                    }),
                }),
            },
        );
        file.save(&s).unwrap();
        assert_eq!(file.load().unwrap(), s);
        assert!(s.forget(&id));
        assert!(s.networks.is_empty());
    }
}
