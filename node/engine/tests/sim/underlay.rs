//! The underlay: how datagrams leave a node, pass its NAT, cross a link or the relay, and reach an engine.

use std::net::SocketAddr;

use warren_engine::{NetworkAction, PacketError, Via};

use crate::link::{Fate, Link, Wire};
use crate::world::{Delivery, NatId, NodeId, World};

impl World {
    pub(crate) fn send_via(&mut self, node: usize, to: Via, payload: Vec<u8>) {
        match to {
            Via::Udp(to) => self.transmit(node, to, payload),
            Via::Relay(key) => self.relay(NodeId(node), key, payload),
        }
    }

    /// The node behind `nat` that owns `addr`: its LAN neighbour.
    fn lan_owner(&self, nat: NatId, addr: SocketAddr) -> Option<NodeId> {
        self.owner(addr)
            .filter(|n| self.nodes[n.0].nat == Some(nat))
    }

    /// Sends a datagram from node `from` to `to`, through its NAT unless
    /// `to` is on its own LAN.
    fn transmit(&mut self, from: usize, to: SocketAddr, payload: Vec<u8>) {
        let inside = self.nodes[from].addr;
        let (source, link) = match self.nodes[from].nat {
            Some(nat) if self.lan_owner(nat, to).is_some() => (inside, self.lan_link),
            // No hairpinning: the router's input firewall drops what its LAN
            // sends to its own public address.
            Some(nat) if self.nats[nat.0].public_ip == to.ip() => {
                return self.record(inside, to, payload, Fate::NoHost, false)
            }
            Some(nat) => match self.nats[nat.0].outbound(inside, to, self.now) {
                Some(port) => (
                    SocketAddr::new(self.nats[nat.0].public_ip, port),
                    self.default_link,
                ),
                None => return self.record(inside, to, payload, Fate::Blocked, false),
            },
            None => {
                let link = self
                    .owner(to)
                    .and_then(|dst| self.links.get(&(NodeId(from), dst)))
                    .copied()
                    .unwrap_or(self.default_link);
                (inside, link)
            }
        };
        self.put_on_link(source, to, payload, link);
    }

    /// Puts a datagram on a link, which may lose it or find it too big.
    pub(crate) fn put_on_link(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        payload: Vec<u8>,
        link: Link,
    ) {
        let fate = if link.mtu.is_some_and(|mtu| payload.len() > mtu) {
            Fate::TooBig
        } else if link.loss > 0.0 && self.rng.chance(link.loss) {
            Fate::Lost
        } else {
            let at = self.now + link.latency;
            return self.schedule(at, Delivery::Udp { from, to, payload });
        };
        self.record(from, to, payload, fate, false);
    }

    /// Hands an arriving datagram to the controller, a NAT or a node.
    pub(crate) fn deliver(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        if self
            .controller
            .as_ref()
            .is_some_and(|c| c.stun.contains(&to))
        {
            self.record(from, to, payload.clone(), Fate::Delivered, false);
            return self.answer_stun(from, to, &payload);
        }
        let node = match self.nats.iter().position(|n| n.public_ip == to.ip()) {
            Some(nat) => match self.nats[nat].inbound(from, to.port(), self.now) {
                Some(inside) => self.owner(inside),
                None => return self.record(from, to, payload, Fate::Filtered, false),
            },
            // A private address is reachable only from its own LAN.
            None => self.owner(to).filter(|n| match self.nodes[n.0].nat {
                Some(nat) => self.lan_owner(nat, from).is_some(),
                None => true,
            }),
        };
        let Some(node) = node else {
            return self.record(from, to, payload, Fate::NoHost, false);
        };
        // Recorded first, so that the wire lists a datagram before what it caused.
        self.record(from, to, payload.clone(), Fate::Delivered, false);
        if let Err(e) = self.receive(node.0, from, &payload) {
            self.nodes[node.0].errors.push((self.now, e));
        }
    }

    pub(crate) fn record(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        payload: Vec<u8>,
        fate: Fate,
        relayed: bool,
    ) {
        self.wire.push(Wire {
            at: self.now,
            from,
            to,
            payload,
            fate,
            relayed,
        });
    }

    pub(crate) fn receive(
        &mut self,
        node: usize,
        from: SocketAddr,
        payload: &[u8],
    ) -> Result<NetworkAction, PacketError> {
        let now = self.instant();
        // A node has one address, which every datagram for it reaches (a
        // NAT's mapping leads to it), so its answers leave from it too.
        let dst_ip = Some(self.nodes[node].addr.ip());
        let result = self.nodes[node].engine.handle_network_packet(
            from,
            dst_ip,
            payload,
            &mut self.buf,
            now,
        );
        self.act(node, &result);
        result
    }

    /// Hands a datagram the relay carried from `from` to `to`'s engine.
    pub(crate) fn receive_relayed(
        &mut self,
        to: NodeId,
        from: NodeId,
        payload: &[u8],
    ) -> Result<NetworkAction, PacketError> {
        let now = self.instant();
        let key = self.nodes[from.0].engine.public_key();
        let result = self.nodes[to.0]
            .engine
            .handle_relay_packet(key, payload, &mut self.buf, now);
        self.act(to.0, &result);
        result
    }

    /// Does what the engine asked after a datagram, then drains it.
    fn act(&mut self, node: usize, result: &Result<NetworkAction, PacketError>) {
        match result {
            Ok(NetworkAction::Tunnel { len }) => {
                let packet = self.buf[..*len].to_vec();
                self.nodes[node].tun.push(packet);
            }
            Ok(NetworkAction::Reply { to, len }) => {
                let reply = self.buf[..*len].to_vec();
                self.send_via(node, *to, reply);
            }
            Ok(NetworkAction::Nothing) | Err(_) => {}
        }
        self.drain(node);
    }

    /// Sends what the engine queued, writes the rejects it made to the TUN
    /// and keeps the events it raised; the shell's share of them goes to
    /// the controller.
    pub(crate) fn drain(&mut self, node: usize) {
        while let Some(t) = self.nodes[node].engine.poll_transmit() {
            self.send_via(node, t.to, t.payload);
        }
        while let Some(packet) = self.nodes[node].engine.poll_tun_packet() {
            self.nodes[node].tun.push(packet);
        }
        while let Some(event) = self.nodes[node].engine.poll_event() {
            self.on_event(NodeId(node), &event);
            self.nodes[node].events.push((self.now, event));
        }
    }
}
