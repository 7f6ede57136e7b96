//! The state directory: the node key, the networks joined and their last netmaps.
//!
//! ```text
//! STATE_DIR/node.key               x25519 private key, mode 0600, made on first start
//! STATE_DIR/networks.json          the networks joined: controller, pinned fingerprint, port
//! STATE_DIR/netmaps/NETID.json     the last netmap of each network
//! STATE_DIR/netmaps/NETID.confirmed.json
//!                                  when its controller last confirmed it (Unix seconds)
//! ```
//! Files are replaced atomically (write, fsync, rename), so a crash leaves
//! the old or the new version. A netmap that cannot be read is not used:
//! trust state that is missing or corrupt fails closed, with no peers.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use warren_proto::netmap::Netmap;
use warren_proto::{NetworkId, NodePrivateKey};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/warren";

/// One joined network, as remembered across restarts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JoinedNetwork {
    pub network_id: NetworkId,
    pub controller: String,
    /// Every address of the controller from the invite code the network
    /// was joined with, `controller` (the one used) first: the controller's
    /// replicas, tried in turn when the one in use does not answer (those
    /// a controller names when the node connects are tried too); empty for
    /// a join by `--controller`, and in files written before invite codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
    /// Pinned SHA-256 of the controller's certificate; learnt on first use if not given.
    pub fingerprint: Option<String>,
    pub name: String,
    /// Kept until the controller has admitted the node, then dropped.
    pub preauth_key: Option<String>,
    pub interface: String,
    pub listen_port: u16,
    /// Zones the user allowed the controller to name (`warren join --allow-zone`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_zones: Vec<String>,
    /// Taken offline with `warren down`: a restart keeps it down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub down: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworksFile {
    networks: Vec<JoinedNetwork>,
}

pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("netmaps"))
            .with_context(|| format!("creating state folder {}", dir.display()))?;
        private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The node key, made on first start.
    pub fn node_key(&self) -> anyhow::Result<NodePrivateKey> {
        let path = self.dir.join("node.key");
        if path.exists() {
            return crate::config::read_private_key(&path);
        }
        let key = NodePrivateKey::generate();
        write_atomic(&path, format!("{}\n", key.to_base64()).as_bytes(), 0o600)?;
        tracing::info!(path = %path.display(), public_key = %key.public_key(), "made a new node key");
        Ok(key)
    }

    pub fn networks(&self) -> anyhow::Result<Vec<JoinedNetwork>> {
        let path = self.dir.join("networks.json");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: NetworksFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is corrupt; move it away to start afresh",
                path.display()
            )
        })?;
        Ok(file.networks)
    }

    pub fn save_networks(&self, networks: &[JoinedNetwork]) -> anyhow::Result<()> {
        let file = NetworksFile {
            networks: networks.to_vec(),
        };
        let text = serde_json::to_vec_pretty(&file).context("encoding networks")?;
        write_atomic(&self.dir.join("networks.json"), &text, 0o600)
    }

    fn netmap_path(&self, id: &NetworkId) -> PathBuf {
        self.dir.join("netmaps").join(format!("{id}.json"))
    }

    /// The cached netmap, if there is one that reads back whole and is for this network.
    pub fn netmap(&self, id: &NetworkId) -> Option<Netmap> {
        let path = self.netmap_path(id);
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str::<Netmap>(&text) {
            Ok(map) if map.network_id == *id => Some(map),
            Ok(_) | Err(_) => {
                tracing::error!(path = %path.display(), "cached netmap is corrupt; not using it");
                None
            }
        }
    }

    pub fn save_netmap(&self, map: &Netmap) -> anyhow::Result<()> {
        let text = serde_json::to_vec(map).context("encoding netmap")?;
        write_atomic(&self.netmap_path(&map.network_id), &text, 0o600)
    }

    pub fn forget_netmap(&self, id: &NetworkId) {
        let _ = std::fs::remove_file(self.netmap_path(id));
        let _ = std::fs::remove_file(self.confirmed_path(id));
    }

    fn confirmed_path(&self, id: &NetworkId) -> PathBuf {
        self.dir
            .join("netmaps")
            .join(format!("{id}.confirmed.json"))
    }

    /// When the cached netmap was last confirmed by its controller: the
    /// recorded time, else (a cache from before it was recorded) when the
    /// map was written, else never.
    pub fn netmap_confirmed(&self, id: &NetworkId) -> Option<SystemTime> {
        let recorded = std::fs::read_to_string(self.confirmed_path(id))
            .ok()
            .and_then(|t| serde_json::from_str::<u64>(&t).ok())
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        recorded.or_else(|| {
            std::fs::metadata(self.netmap_path(id))
                .and_then(|m| m.modified())
                .ok()
        })
    }

    pub fn save_netmap_confirmed(&self, id: &NetworkId, at: SystemTime) -> anyhow::Result<()> {
        let secs = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        write_atomic(&self.confirmed_path(id), secs.to_string().as_bytes(), 0o600)
    }
}

/// The state folder holds the node key, pre-auth keys and netmaps: it is
/// 0700, and made so on start if it was looser.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading the mode of {}", dir.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
        tracing::warn!(path = %dir.display(), mode = %format!("{mode:04o}"), "state folder was open to others: made it 0700");
    }
    Ok(())
}

pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_folder_open_to_others_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A folder made by the agent is private from the start.
        let fresh = dir.path().join("fresh");
        StateDir::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0);
    }

    #[test]
    fn key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let a = state.node_key().unwrap();
        let b = state.node_key().unwrap();
        assert_eq!(a.public_key(), b.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_netmap_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let id: NetworkId = "8056c2e21c000001".parse().unwrap();
        std::fs::write(state.netmap_path(&id), b"{not json").unwrap();
        assert!(state.netmap(&id).is_none());
    }

    #[test]
    fn the_confirmation_time_is_kept_and_forgotten_with_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let id: NetworkId = "8056c2e21c000001".parse().unwrap();
        assert_eq!(state.netmap_confirmed(&id), None);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        state.save_netmap_confirmed(&id, at).unwrap();
        assert_eq!(state.netmap_confirmed(&id), Some(at));
        state.forget_netmap(&id);
        assert_eq!(state.netmap_confirmed(&id), None);
    }

    #[test]
    fn networks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert!(state.networks().unwrap().is_empty());
        let net = JoinedNetwork {
            network_id: "8056c2e21c000001".parse().unwrap(),
            controller: "192.0.2.10:7443".into(),
            controllers: vec!["192.0.2.10:7443".into(), "[2001:db8::10]:7443".into()],
            fingerprint: None,
            name: "laptop".into(),
            preauth_key: None,
            interface: "warren1".into(),
            listen_port: 51821,
            allow_zones: vec!["corp.example.com".into()],
            down: false,
        };
        state.save_networks(std::slice::from_ref(&net)).unwrap();
        assert_eq!(state.networks().unwrap(), vec![net.clone()]);
        // A network taken down stays down; one that is up writes nothing
        // new, so an older agent still reads the file.
        let text = std::fs::read_to_string(dir.path().join("networks.json")).unwrap();
        assert!(!text.contains("down"), "{text}");
        let down = JoinedNetwork { down: true, ..net };
        state.save_networks(std::slice::from_ref(&down)).unwrap();
        assert_eq!(state.networks().unwrap(), vec![down]);
    }
}
