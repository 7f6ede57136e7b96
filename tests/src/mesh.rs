//! A controller and managed agents on a [`Star`]: the lab of the
//! membership, resilience and networks suites and of `warren-lab demo`.
//! The controller is spoke 0 (192.0.2.10); agents follow in order.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitStatus;
use std::time::Duration;

use crate::controller::{self, Controller};
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::managed::{JoinOutput, ManagedAgent};
use crate::netns::Netns;
use crate::ping::{self, PingReport};
use crate::star::{Spoke, Star};

/// The controller's spoke role (and namespace / interface name part).
pub const CONTROLLER_ROLE: &str = "ctl";

/// How long a new tunnel gets for its first handshake.
pub const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Fields drop in order: agents stop, then the controller, then the
/// namespaces go.
#[derive(Debug)]
pub struct Mesh {
    pub agents: Vec<ManagedAgent>,
    pub controller: Controller,
    pub star: Star,
}

impl Mesh {
    /// Builds the star, starts the controller and one agent per name.
    /// Names are short roles ("a", "b", ...): they become interface names.
    pub fn build(lab: &Lab, agents: &[&str]) -> Result<Mesh> {
        Self::build_with(lab, agents, &[])
    }

    /// [`Mesh::build`] with more `warren daemon` flags for every agent.
    pub fn build_with(lab: &Lab, agents: &[&str], daemon_args: &[&str]) -> Result<Mesh> {
        Self::build_full(lab, agents, daemon_args, &[])
    }

    /// [`Mesh::build`] with more `warren-controller serve` flags (e.g.
    /// `--listen-https ADDR`).
    pub fn build_with_controller(
        lab: &Lab,
        agents: &[&str],
        controller_args: &[&str],
    ) -> Result<Mesh> {
        Self::build_full(lab, agents, &[], controller_args)
    }

    fn build_full(
        lab: &Lab,
        agents: &[&str],
        daemon_args: &[&str],
        controller_args: &[&str],
    ) -> Result<Mesh> {
        let mut roles = vec![CONTROLLER_ROLE];
        roles.extend_from_slice(agents);
        let star = Star::build(lab, &roles)?;
        let ctl = star.spoke(CONTROLLER_ROLE)?;
        let controller = Controller::start_with(
            lab,
            &ctl.ns,
            SocketAddr::new(ctl.addr.into(), controller::QUIC_PORT),
            controller_args,
        )?;
        let agents = agents
            .iter()
            .map(|name| {
                ManagedAgent::start_with(lab, &star.spoke(name)?.ns, name, None, daemon_args)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mesh {
            agents,
            controller,
            star,
        })
    }

    pub fn agent(&self, name: &str) -> Result<&ManagedAgent> {
        self.agents
            .iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| LabError::Invalid(format!("no agent {name:?} in this mesh")))
    }

    pub fn agent_mut(&mut self, name: &str) -> Result<&mut ManagedAgent> {
        self.agents
            .iter_mut()
            .find(|a| a.name() == name)
            .ok_or_else(|| LabError::Invalid(format!("no agent {name:?} in this mesh")))
    }

    /// The host an agent (or the controller) runs on.
    pub fn host(&self, name: &str) -> Result<&Spoke> {
        self.star.spoke(name)
    }

    /// The namespace an agent (or the controller) runs in.
    pub fn ns(&self, name: &str) -> Result<&Netns> {
        Ok(&self.star.spoke(name)?.ns)
    }

    /// `warren join` of agent `name` to `network` on this mesh's controller.
    pub fn join(&self, name: &str, network: &str, key: Option<&str>) -> Result<JoinOutput> {
        self.agent(name)?.join(&self.controller, network, key)
    }

    /// Like [`Mesh::join`], but the join must exit 0.
    pub fn join_ok(&self, name: &str, network: &str, key: Option<&str>) -> Result<JoinOutput> {
        let out = self.join(name, network, key)?;
        if !out.success() {
            return Err(LabError::Output {
                what: format!("warren join on {name}"),
                detail: out.render(),
            });
        }
        Ok(out)
    }

    /// Creates network `name` on `pool` with a reusable pre-auth key, and
    /// joins `agents` with it, each authorized within `within`; returns
    /// the network ID.
    pub fn network_joined_by(
        &mut self,
        name: &str,
        pool: &str,
        agents: &[&str],
        within: Duration,
    ) -> Result<String> {
        let net = self.controller.network_create(name, pool)?;
        let key = self.controller.key_create(&net, true)?;
        for agent in agents {
            self.join_ok(agent, &net, Some(&key))?;
            self.agent_mut(agent)?
                .wait_state(&net, "authorized", within)?;
        }
        Ok(net)
    }

    /// Restarts agent `name`'s daemon on its state dir; returns how the old
    /// daemon exited.
    pub fn restart_agent(&mut self, lab: &Lab, name: &str) -> Result<Option<ExitStatus>> {
        let ns_index = self
            .star
            .spokes
            .iter()
            .position(|s| s.role == name)
            .ok_or_else(|| LabError::Invalid(format!("no host {name:?}")))?;
        let agent = self
            .agents
            .iter_mut()
            .find(|a| a.name() == name)
            .ok_or_else(|| LabError::Invalid(format!("no agent {name:?}")))?;
        agent.restart(lab, &self.star.spokes[ns_index].ns)
    }

    /// Starts the (killed or running) controller again on its data dir.
    pub fn restart_controller(&mut self, lab: &Lab) -> Result<()> {
        let ns = &self.star.spoke(CONTROLLER_ROLE)?.ns;
        self.controller.restart(lab, ns)
    }

    /// Agent `name`'s overlay address in `network`, IPv4 or IPv6, as its
    /// `warren status` reports it.
    pub fn overlay_addr(&self, name: &str, network: &str, ipv6: bool) -> Result<IpAddr> {
        let status = self.agent(name)?.status()?;
        let net = status.network(network)?;
        Ok(if ipv6 {
            net.ipv6()?.into()
        } else {
            net.ipv4()?.into()
        })
    }

    /// Errors if any daemon or the controller has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        for agent in &mut self.agents {
            agent.ensure_running()?;
        }
        self.controller.ensure_running()
    }
}

/// One ping of a pair: from agent `from` to agent `to`'s overlay address.
#[derive(Debug, Clone)]
pub struct PairPing {
    pub from: String,
    pub to: String,
    pub report: PingReport,
}

impl PairPing {
    pub fn ok(&self) -> bool {
        self.report.sent > 0 && self.report.received == self.report.sent
    }
}

/// Pings every ordered pair of `names` in `network` over IPv4 and IPv6:
/// first until a reply arrives (the handshake, up to [`HANDSHAKE_WITHIN`]),
/// then `count` echoes. A pair that never answers is reported, not an error,
/// so that callers can print every result.
pub fn ping_pairs(mesh: &Mesh, network: &str, names: &[&str], count: u16) -> Result<Vec<PairPing>> {
    ping_every_pair(
        names,
        count,
        |name| mesh.ns(name),
        |name, ipv6| mesh.overlay_addr(name, network, ipv6),
    )
}

/// [`ping_pairs`] for any lab: `ns` gives the namespace an agent runs in,
/// `addr` its overlay address (IPv6 when asked).
pub fn ping_every_pair<'a>(
    names: &[&str],
    count: u16,
    ns: impl Fn(&str) -> Result<&'a Netns>,
    addr: impl Fn(&str, bool) -> Result<IpAddr>,
) -> Result<Vec<PairPing>> {
    let mut out = Vec::new();
    for ipv6 in [false, true] {
        for from in names {
            for to in names.iter().filter(|t| *t != from) {
                let dst = addr(to, ipv6)?;
                let ns = ns(from)?;
                let report = match ping::wait_reachable(ns, dst, HANDSHAKE_WITHIN) {
                    Ok(_) => ping::ping(
                        ns,
                        dst,
                        count,
                        Duration::from_millis(100),
                        Duration::from_secs(2),
                    )?,
                    Err(LabError::Timeout { .. }) => PingReport {
                        dst,
                        sent: 1,
                        received: 0,
                        lines: vec![format!("no reply from {dst} within {HANDSHAKE_WITHIN:?}")],
                    },
                    Err(e) => return Err(e),
                };
                out.push(PairPing {
                    from: (*from).to_owned(),
                    to: (*to).to_owned(),
                    report,
                });
            }
        }
    }
    Ok(out)
}
