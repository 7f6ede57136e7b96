//! The services this node publishes, per network, kept in the state
//! directory so they are published again after a restart or a reconnect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use warren_proto::service::{validate_list, ServiceError, ServiceProto, ServiceSpec};
use warren_proto::NetworkId;

#[derive(Debug, Default)]
pub struct ServiceBook {
    path: PathBuf,
    /// A network is listed once a service was added or removed in it, so an
    /// emptied list is still sent (and the controller's copy emptied).
    by_network: BTreeMap<NetworkId, Vec<ServiceSpec>>,
}

impl ServiceBook {
    /// Reads `services.json` in the state directory (none is an empty book).
    pub fn open(state_dir: &Path) -> ServiceBook {
        let path = state_dir.join("services.json");
        let by_network = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "published services unreadable; starting with none");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        ServiceBook { path, by_network }
    }

    /// Networks with a list to (re)send, and their lists.
    pub fn all(&self) -> &BTreeMap<NetworkId, Vec<ServiceSpec>> {
        &self.by_network
    }

    pub fn get(&self, net: NetworkId) -> Option<&Vec<ServiceSpec>> {
        self.by_network.get(&net)
    }

    /// Adds or replaces (same name and protocol) a service; returns the new list.
    pub fn add(
        &mut self,
        net: NetworkId,
        spec: ServiceSpec,
    ) -> Result<Vec<ServiceSpec>, ServiceError> {
        let mut list = self.by_network.get(&net).cloned().unwrap_or_default();
        list.retain(|s| !(s.name == spec.name && s.proto == spec.proto));
        list.push(spec);
        list.sort();
        validate_list(&list)?;
        self.by_network.insert(net, list.clone());
        Ok(list)
    }

    /// Removes a service; `None` if it was not published.
    pub fn remove(
        &mut self,
        net: NetworkId,
        name: &str,
        proto: ServiceProto,
    ) -> Option<Vec<ServiceSpec>> {
        let list = self.by_network.get_mut(&net)?;
        let before = list.len();
        list.retain(|s| !(s.name == name && s.proto == proto));
        (list.len() != before).then(|| list.clone())
    }

    /// Drops a network's services (after leaving it).
    pub fn forget(&mut self, net: NetworkId) -> bool {
        self.by_network.remove(&net).is_some()
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&self.by_network).context("encoding services")?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, port: u16) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            proto: ServiceProto::Tcp,
            port,
            txt: vec![],
        }
    }

    #[test]
    fn add_replace_remove_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let net: NetworkId = "8056c2e21c000001".parse().unwrap();
        let mut book = ServiceBook::open(dir.path());
        assert_eq!(book.add(net, spec("http", 80)).unwrap().len(), 1);
        assert_eq!(
            book.add(net, spec("http", 8080)).unwrap(),
            vec![spec("http", 8080)]
        );
        book.add(net, spec("ssh", 22)).unwrap();
        assert!(book.add(net, spec("Bad", 1)).is_err());
        book.save().unwrap();
        let mut again = ServiceBook::open(dir.path());
        assert_eq!(again.get(net).unwrap().len(), 2);
        assert_eq!(
            again.remove(net, "ssh", ServiceProto::Tcp).unwrap().len(),
            1
        );
        assert!(again.remove(net, "ssh", ServiceProto::Tcp).is_none());
        assert!(again.remove(net, "http", ServiceProto::Udp).is_none());
        assert!(again.forget(net));
        assert!(again.all().is_empty());
    }
}
