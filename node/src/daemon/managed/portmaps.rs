//! One port mapper per running network's data-plane port, while port
//! mapping is on: started and stopped as networks come and go.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use tokio::sync::mpsc;

use crate::portmap::{Mapping, PortMapper};

#[derive(Default)]
pub struct PortMaps {
    /// Where mappers report a new or lost mapping; `None`: port mapping is off.
    changed: Option<mpsc::UnboundedSender<()>>,
    mappers: BTreeMap<u16, PortMapper>,
}

impl PortMaps {
    /// Keeps a mapper for each of `ports` and no other; stopped mappers
    /// delete their mappings on `lingering`.
    pub fn keep(&mut self, ports: &BTreeSet<u16>, lingering: &mut tokio::task::JoinSet<()>) {
        let Some(changed) = &self.changed else {
            return;
        };
        let gone: Vec<u16> = self
            .mappers
            .keys()
            .filter(|p| !ports.contains(p))
            .copied()
            .collect();
        for port in gone {
            if let Some(mapper) = self.mappers.remove(&port) {
                lingering.spawn(mapper.stop());
            }
        }
        for port in ports {
            self.mappers
                .entry(*port)
                .or_insert_with(|| PortMapper::start(*port, changed.clone()));
        }
    }

    /// The mapping of `port` held now.
    pub fn mapping(&self, port: u16) -> Option<Mapping> {
        self.mappers.get(&port).and_then(PortMapper::current)
    }

    /// The external endpoint of `port`'s mapping, to advertise.
    pub fn external(&self, port: u16) -> Option<SocketAddr> {
        self.mapping(port).map(|m| m.external)
    }

    /// Stops every mapper, deleting their mappings.
    pub async fn stop(&mut self) {
        let mappers = std::mem::take(&mut self.mappers);
        for mapper in mappers.into_values() {
            mapper.stop().await;
        }
    }
}

impl super::Managed {
    /// Turns port mapping on: mappers start with the next endpoint report
    /// and tell `changed` of each new or lost mapping.
    pub fn enable_port_mapping(&mut self, changed: mpsc::UnboundedSender<()>) {
        self.portmaps.changed = Some(changed);
    }

    /// A mapper for each network with a data plane, and none for the
    /// rest (left or down: their mappings are deleted).
    pub(super) fn sync_port_maps(&mut self) {
        let ports = self.nets.values().filter(|n| n.runner.is_some());
        let ports = ports.map(|n| n.config.listen_port).collect();
        self.portmaps.keep(&ports, &mut self.lingering);
    }
}
