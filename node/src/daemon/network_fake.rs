//! Data planes without a TUN or a socket, for the daemon's own tests: they
//! answer the daemon's commands, remember what they were told, and die
//! when a test says so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use warren_engine::PeerConfig;
use warren_proto::filter::PacketFilter;
use warren_proto::NodePrivateKey;

use super::{
    supervise, Command, DataPlanes, NetworkEvents, NetworkHandle, NetworkReport, NetworkSpec,
    NEXT_INSTANCE,
};
use crate::daemon::relay_in::{relay_in_queue, RELAY_IN_QUEUE};

/// How a test kills a fake data plane.
#[derive(Debug, Clone, Copy)]
pub enum Death {
    Panic,
    Error,
}

/// What one label's data planes were told, over all their starts.
#[derive(Debug, Default)]
pub struct FakePlane {
    /// Every start, in order.
    pub starts: Vec<NetworkSpec>,
    /// Whether the latest start still runs.
    pub running: bool,
    pub peers: Vec<PeerConfig>,
    pub filter: Option<PacketFilter>,
    pub site_mappings: Vec<warren_proto::site::MappedPrefix>,
    /// Kills the running one.
    kill: Option<mpsc::UnboundedSender<Death>>,
}

#[derive(Debug, Default)]
pub struct FakeState {
    /// By label (`static` or the network ID).
    pub planes: BTreeMap<String, FakePlane>,
    /// While set, starts fail with this message (as a TUN that cannot be made).
    pub refuse_start: Option<String>,
}

/// Clones share one state: keep one to look at what the daemon did.
#[derive(Debug, Clone, Default)]
pub struct FakePlanes(Arc<Mutex<FakeState>>);

impl FakePlanes {
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Kills the running data plane of `label`; false if none runs.
    pub fn kill(&self, label: &str, how: Death) -> bool {
        self.state()
            .planes
            .get(label)
            .and_then(|p| p.kill.as_ref())
            .is_some_and(|k| k.send(how).is_ok())
    }

    pub fn running(&self, label: &str) -> bool {
        self.state().planes.get(label).is_some_and(|p| p.running)
    }

    pub fn starts(&self, label: &str) -> usize {
        self.state().planes.get(label).map_or(0, |p| p.starts.len())
    }
}

impl DataPlanes for FakePlanes {
    fn start(
        &self,
        spec: NetworkSpec,
        _key: NodePrivateKey,
        events: NetworkEvents,
    ) -> anyhow::Result<NetworkHandle> {
        let (kill_tx, mut kill) = mpsc::unbounded_channel();
        {
            let mut s = self.state();
            if let Some(e) = &s.refuse_start {
                anyhow::bail!("creating TUN {}: {e}", spec.interface);
            }
            let plane = s.planes.entry(spec.label.clone()).or_default();
            plane.starts.push(spec.clone());
            plane.running = true;
            plane.kill = Some(kill_tx);
        }
        let (commands, mut rx) = mpsc::channel(256);
        let (relay_in, _relay_rx) = relay_in_queue(RELAY_IN_QUEUE);
        let instance = NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let planes = self.clone();
        let label = spec.label.clone();
        let owned = spec.clone();
        let work = async move {
            let result = loop {
                tokio::select! {
                    how = kill.recv() => match how {
                        Some(Death::Panic) => {
                            planes.set_running(&label, false);
                            panic!("fake data plane told to panic");
                        }
                        Some(Death::Error) => break Err(anyhow::anyhow!("fake TUN device vanished")),
                        None => {}
                    },
                    command = rx.recv() => match command {
                        Some(Command::Stop) | None => break Ok(()),
                        Some(command) => planes.handle(&owned, command),
                    },
                }
            };
            planes.set_running(&label, false);
            result
        };
        let task = supervise(spec.label.clone(), instance, events, work);
        Ok(NetworkHandle {
            spec,
            instance,
            commands,
            relay_in,
            task,
        })
    }
}

impl FakePlanes {
    fn set_running(&self, label: &str, running: bool) {
        if let Some(p) = self.state().planes.get_mut(label) {
            p.running = running;
        }
    }

    fn handle(&self, spec: &NetworkSpec, command: Command) {
        let mut s = self.state();
        let Some(plane) = s.planes.get_mut(&spec.label) else {
            return;
        };
        match command {
            Command::SetPeers(peers) => plane.peers = peers,
            Command::SetFilter(filter) => plane.filter = filter,
            Command::SetSiteMappings(pairs) => plane.site_mappings = pairs,
            Command::Report(reply) => {
                let _ = reply.send(NetworkReport {
                    interface: spec.interface.clone(),
                    listen_port: spec.listen_port,
                    offload: spec.offload,
                    peers: Vec::new(),
                    counters: Default::default(),
                    filter: Default::default(),
                });
            }
            Command::Netcheck(reply) => {
                let _ = reply.send(Vec::new());
            }
            Command::Explain(_, reply) => {
                let _ = reply.send(None);
            }
            Command::Ping(_, reply) => {
                let _ = reply.send(super::PingOutcome::NoAnswer);
            }
            Command::SetRelay(_)
            | Command::SetLocalEndpoints(_)
            | Command::SetStunServers(_)
            | Command::CallMeMaybe(..)
            | Command::SprayRequest(..)
            | Command::Stop => {}
        }
    }
}
