//! NAT boxes in RFC 4787 terms: how outbound packets are mapped, which inbound ones pass, and when mappings expire.
//!
//! A NAT keeps one flow per (inside endpoint, remote endpoint), as Linux
//! conntrack does; mapping and filtering are both decided from those flows.
//! Unmatched inbound packets are dropped and leave no state behind, like a
//! home router's input firewall (`NATLAB.md`): a punch that arrives early must
//! not steal the public port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::rng::Rng;

/// Linux's default `nf_conntrack_udp_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a node sits: on the public side, or behind a NAT that behaves so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// No NAT: the node owns a public address.
    Public,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering (`masquerade`).
    PortRestricted,
    /// Endpoint-dependent mapping: a random public port per destination (`masquerade random`).
    Symmetric,
}

impl Behaviour {
    pub const ALL: [Behaviour; 5] = [
        Behaviour::Public,
        Behaviour::FullCone,
        Behaviour::Restricted,
        Behaviour::PortRestricted,
        Behaviour::Symmetric,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Public => "public",
            Behaviour::FullCone => "full-cone",
            Behaviour::Restricted => "restricted",
            Behaviour::PortRestricted => "port-restr",
            Behaviour::Symmetric => "symmetric",
        }
    }

    fn independent_mapping(self) -> bool {
        !matches!(self, Behaviour::Symmetric)
    }
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    public_port: u16,
    last: Duration,
}

/// One NAT box with one public address.
#[derive(Debug, Clone)]
pub struct Nat {
    pub public_ip: IpAddr,
    pub behaviour: Behaviour,
    /// Idle time after which a flow (and so its mapping and permission) is gone.
    pub timeout: Duration,
    /// When set, outbound UDP to anything else is dropped: a network that
    /// allows only the controller.
    pub allow_only: Option<Vec<SocketAddr>>,
    flows: BTreeMap<(SocketAddr, SocketAddr), Flow>,
    /// Ports handed out before a rebinding, never handed out again, so that a
    /// rebinding really moves the node.
    retired: BTreeSet<u16>,
    /// Cone NATs keep the inside port while it is free, as `masquerade` does;
    /// after a rebinding they pick random ones.
    preserve_ports: bool,
    rng: Rng,
}

impl Nat {
    pub fn new(public_ip: IpAddr, behaviour: Behaviour, seed: u64) -> Self {
        Self {
            public_ip,
            behaviour,
            timeout: DEFAULT_TIMEOUT,
            allow_only: None,
            flows: BTreeMap::new(),
            retired: BTreeSet::new(),
            preserve_ports: behaviour.independent_mapping(),
            rng: Rng::new(seed),
        }
    }

    /// Maps a packet from `inside` to `remote`; its public source port, or
    /// `None` if the firewall drops it.
    pub fn outbound(
        &mut self,
        inside: SocketAddr,
        remote: SocketAddr,
        now: Duration,
    ) -> Option<u16> {
        if self
            .allow_only
            .as_ref()
            .is_some_and(|allowed| !allowed.contains(&remote))
        {
            return None;
        }
        self.expire(now);
        if let Some(flow) = self.flows.get_mut(&(inside, remote)) {
            flow.last = now;
            return Some(flow.public_port);
        }
        let existing = self
            .flows
            .iter()
            .find(|((i, _), _)| *i == inside)
            .map(|(_, f)| f.public_port)
            .filter(|_| self.behaviour.independent_mapping());
        let public_port = existing.unwrap_or_else(|| self.allocate(inside));
        self.flows.insert(
            (inside, remote),
            Flow {
                public_port,
                last: now,
            },
        );
        Some(public_port)
    }

    /// The inside endpoint a packet from `remote` to our `public_port` goes
    /// to, or `None` if the filter drops it.
    pub fn inbound(
        &mut self,
        remote: SocketAddr,
        public_port: u16,
        now: Duration,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let behaviour = self.behaviour;
        let permitted = |r: &SocketAddr| match behaviour {
            Behaviour::Public | Behaviour::FullCone => true,
            Behaviour::Restricted => r.ip() == remote.ip(),
            Behaviour::PortRestricted | Behaviour::Symmetric => *r == remote,
        };
        let inside = self
            .flows
            .iter()
            .find(|((_, r), f)| f.public_port == public_port && permitted(r))
            .map(|((i, _), _)| *i)?;
        // Conntrack tracks the reply direction too, so an admitted packet
        // keeps its flow (and the mapping) alive.
        self.flows.insert(
            (inside, remote),
            Flow {
                public_port,
                last: now,
            },
        );
        Some(inside)
    }

    /// The NAT forgets every mapping and will not reuse its ports, as a
    /// router that reboots or a carrier NAT that rebinds does.
    pub fn rebind(&mut self) {
        self.retired
            .extend(self.flows.values().map(|f| f.public_port));
        self.flows.clear();
        self.preserve_ports = false;
    }

    /// The public port of the flow from `inside` to `remote`, if it is alive.
    pub fn mapping(&self, inside: SocketAddr, remote: SocketAddr, now: Duration) -> Option<u16> {
        self.flows
            .get(&(inside, remote))
            .filter(|f| now.saturating_sub(f.last) < self.timeout)
            .map(|f| f.public_port)
    }

    fn expire(&mut self, now: Duration) {
        let timeout = self.timeout;
        self.flows
            .retain(|_, f| now.saturating_sub(f.last) < timeout);
    }

    fn allocate(&mut self, inside: SocketAddr) -> u16 {
        let taken = |nat: &Self, port: u16| {
            nat.retired.contains(&port)
                || nat
                    .flows
                    .iter()
                    .any(|((i, _), f)| f.public_port == port && *i != inside)
        };
        if self.preserve_ports && !taken(self, inside.port()) {
            return inside.port();
        }
        loop {
            let port = 1024 + self.rng.below(65536 - 1024) as u16;
            if !taken(self, port) {
                return port;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr;

    const INSIDE: &str = "10.0.1.2:51820";
    const PEER: &str = "198.51.100.1:4000";

    fn nat(behaviour: Behaviour) -> Nat {
        Nat::new("203.0.113.1".parse().unwrap(), behaviour, 7)
    }

    /// Which of three senders get in after the inside node sent to PEER.
    fn admitted(behaviour: Behaviour) -> [bool; 3] {
        let mut n = nat(behaviour);
        let port = n
            .outbound(addr(INSIDE), addr(PEER), Duration::ZERO)
            .unwrap();
        ["198.51.100.1:4000", "198.51.100.1:4001", "192.0.2.9:4000"].map(|from| {
            n.clone()
                .inbound(addr(from), port, Duration::ZERO)
                .is_some()
        })
    }

    #[test]
    fn filtering_follows_the_behaviour() {
        assert_eq!(admitted(Behaviour::FullCone), [true, true, true]);
        assert_eq!(admitted(Behaviour::Restricted), [true, true, false]);
        assert_eq!(admitted(Behaviour::PortRestricted), [true, false, false]);
        assert_eq!(admitted(Behaviour::Symmetric), [true, false, false]);
    }

    #[test]
    fn cone_mappings_keep_the_port_and_symmetric_ones_vary_per_destination() {
        let (inside, other) = (addr(INSIDE), addr("192.0.2.9:3478"));
        let mut cone = nat(Behaviour::PortRestricted);
        assert_eq!(
            cone.outbound(inside, addr(PEER), Duration::ZERO),
            Some(51820)
        );
        assert_eq!(cone.outbound(inside, other, Duration::ZERO), Some(51820));
        let mut sym = nat(Behaviour::Symmetric);
        let first = sym.outbound(inside, addr(PEER), Duration::ZERO);
        let second = sym.outbound(inside, other, Duration::ZERO);
        assert_ne!(first, second);
        assert_eq!(
            sym.outbound(inside, addr(PEER), Duration::ZERO),
            first,
            "stable per flow"
        );
    }

    #[test]
    fn idle_flows_expire_and_a_rebinding_moves_the_port() {
        let mut n = nat(Behaviour::FullCone);
        let port = n
            .outbound(addr(INSIDE), addr(PEER), Duration::ZERO)
            .unwrap();
        let later = DEFAULT_TIMEOUT - Duration::from_secs(1);
        assert!(
            n.inbound(addr("192.0.2.9:1"), port, later).is_some(),
            "traffic refreshes"
        );
        assert!(
            n.inbound(addr(PEER), port, later + DEFAULT_TIMEOUT)
                .is_none(),
            "expired"
        );
        let again = n.outbound(addr(INSIDE), addr(PEER), later + DEFAULT_TIMEOUT);
        assert_eq!(again, Some(port), "a cone NAT maps to the same port again");
        n.rebind();
        let moved = n.outbound(addr(INSIDE), addr(PEER), later + DEFAULT_TIMEOUT);
        assert!(moved.is_some() && moved != Some(port));
        assert!(n
            .inbound(addr(PEER), port, later + DEFAULT_TIMEOUT)
            .is_none());
    }

    #[test]
    fn a_firewall_passes_only_the_allowed_destinations() {
        let mut n = nat(Behaviour::PortRestricted);
        n.allow_only = Some(vec![addr("192.0.2.10:3478")]);
        assert!(n
            .outbound(addr(INSIDE), addr(PEER), Duration::ZERO)
            .is_none());
        assert!(n
            .outbound(addr(INSIDE), addr("192.0.2.10:3478"), Duration::ZERO)
            .is_some());
    }
}
