//! The engine's disco handling: answering and sending path probes, choosing
//! paths, call-me-maybe, and `warren ping`.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use warren_proto::control::NatHint;
use warren_proto::disco::{self, DiscoMessage, TxId};
use warren_proto::NodePublicKey;

use crate::engine::{Engine, Event, Source, Transmit};
use crate::error::PacketError;
use crate::path::{Probe, ProbeTarget, Via, CALL_ME_MAYBE_EVERY};
use crate::peer::PeerId;

/// Where a disco message came from, and which of our addresses it was sent
/// to (for a UDP datagram, where the socket can tell).
#[derive(Debug, Clone, Copy)]
struct Arrival {
    source: Source,
    dst_ip: Option<IpAddr>,
}

impl Engine {
    /// Whether packets may go through the relay now (the control connection is up).
    pub fn set_relay_available(&mut self, available: bool, now: Instant) {
        self.relay = available;
        let mut events = Vec::new();
        for peer in self.peers_mut() {
            let before = peer.via;
            peer.refresh_via(available, now);
            if peer.paths.is_some() && peer.via != before {
                events.push(peer.path_event());
            }
        }
        for event in events {
            self.push_event(event);
        }
    }

    /// Our own endpoint candidates, sent to peers in call-me-maybe requests.
    /// New candidates (a STUN answer, typically) are worth telling every
    /// peer without a direct path about at once, and probing with.
    pub fn set_local_endpoints(&mut self, endpoints: Vec<SocketAddr>, now: Instant) {
        if endpoints == self.local_endpoints {
            return;
        }
        self.local_endpoints = endpoints;
        if self.local_endpoints.is_empty() {
            return;
        }
        let mut searching = Vec::new();
        for (id, peer) in self.peers_iter_mut() {
            if let Some(paths) = peer.paths.as_mut().filter(|p| p.best.is_none()) {
                paths.last_call_me_maybe = Some(now);
                searching.push((id, peer.config.public_key));
            }
        }
        for (id, peer) in searching {
            self.push_event(Event::CallMeMaybe {
                peer,
                endpoints: self.local_endpoints.clone(),
                nat: self.plain_nat_hint(),
            });
            self.probe_afresh(id, now);
        }
    }

    /// A peer (through the controller) asks us to probe it now: it is
    /// probing us at the same moment, which opens both NATs. `nat`: what
    /// it says of its NAT (`crate::birthday`).
    pub fn handle_call_me_maybe(
        &mut self,
        from: NodePublicKey,
        endpoints: &[SocketAddr],
        nat: Option<NatHint>,
        now: Instant,
    ) {
        let Some(id) = self.peer_id(&from) else {
            return;
        };
        if let Some(paths) = self.peer_mut(id).and_then(|p| p.paths.as_mut()) {
            for addr in endpoints {
                paths.learn(*addr, now);
            }
            paths.birthday.peer_nat = nat;
        }
        if let Some(NatHint::PerDestination { ip }) = nat {
            self.answer_fan_out(id, ip, now);
        }
        self.probe_afresh(id, now);
    }

    /// Probes every path to a peer; the first answer comes back as
    /// [`Event::PingResult`]. False if the peer is unknown or not a disco peer.
    pub fn ping(&mut self, peer: &NodePublicKey, now: Instant) -> bool {
        let Some(id) = self.peer_id(peer) else {
            return false;
        };
        if self.peer_mut(id).is_none_or(|p| p.paths.is_none()) {
            return false;
        }
        self.probe(id, true, now);
        true
    }

    /// `dst_ip`: the local address a UDP datagram was sent to, which the
    /// pong to a ping leaves from.
    pub(crate) fn handle_disco(
        &mut self,
        source: Source,
        dst_ip: Option<IpAddr>,
        datagram: &[u8],
        now: Instant,
    ) -> Result<(), PacketError> {
        let sender =
            disco::sender(datagram).inspect_err(|_| self.counters_mut().dropped_invalid += 1)?;
        let Some(id) = self.peer_id(&sender) else {
            self.counters_mut().dropped_unknown_peer += 1;
            return Err(PacketError::UnknownPeer);
        };
        if matches!(source, Source::Relay(k) if k != sender) {
            self.counters_mut().dropped_invalid += 1;
            return Err(PacketError::Malformed);
        }
        let message = {
            let Some(key) = self.peer_mut(id).and_then(|p| p.disco_key.clone()) else {
                self.counters_mut().dropped_invalid += 1;
                return Err(PacketError::Malformed);
            };
            disco::decode(&key, datagram)
                .inspect_err(|_| self.counters_mut().dropped_invalid += 1)?
        };
        if let DiscoMessage::Ping { tx, sent_at } = message {
            // A copy of a ping, sent again from anywhere, would make us
            // answer and probe where the copier likes.
            let fresh = self
                .peer_mut(id)
                .is_some_and(|p| p.ping_replay.accept(sent_at, tx));
            if !fresh {
                self.counters_mut().dropped_replay += 1;
                return Err(PacketError::Replay);
            }
        }
        self.counters_mut().disco_rx += 1;
        match message {
            DiscoMessage::Ping { tx, .. } => {
                self.handle_ping(id, Arrival { source, dst_ip }, tx, now)
            }
            DiscoMessage::Pong { tx, .. } => {
                self.handle_pong(id, Arrival { source, dst_ip }, tx, now)
            }
        }
        Ok(())
    }

    fn handle_ping(&mut self, id: PeerId, arrival: Arrival, tx: TxId, now: Instant) {
        let Arrival { source, dst_ip } = arrival;
        let (observed, src_ip) = match source {
            Source::Udp(addr) => (addr, dst_ip),
            Source::Relay(_) => (SocketAddr::from(([0, 0, 0, 0], 0)), None),
        };
        // The pong leaves from where the ping was sent: a pong from another
        // address of a multi-homed host proves nothing to the peer, which
        // takes only an answer from the address it pinged, and a NAT or
        // firewall in front of the peer may drop it.
        let pong = DiscoMessage::Pong { tx, observed };
        self.send_disco(id, source.reply_via(), src_ip, pong);
        let Source::Udp(addr) = source else {
            return;
        };
        // The peer's packets came from here: a candidate (perhaps a new one,
        // the only way through a NAT that maps per destination). Unless a
        // direct path already works, probe it at once: the peer's ping has
        // just opened its own NAT's filter towards us, so ours gets through
        // now rather than at the next probe round.
        let probe_back = self
            .peer_mut(id)
            .and_then(|p| p.paths.as_mut())
            .is_some_and(|paths| {
                paths.learn(addr, now);
                paths.reached_at(addr, dst_ip);
                paths.should_probe_back(addr, now)
            });
        if probe_back {
            self.send_ping(id, ProbeTarget::Udp(addr), false, now);
        }
    }

    fn handle_pong(&mut self, id: PeerId, arrival: Arrival, tx: TxId, now: Instant) {
        let Arrival { source, dst_ip } = arrival;
        let relay = self.relay;
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        let key = peer.config.public_key;
        let Some(paths) = peer.paths.as_mut() else {
            return;
        };
        let Some(probe) = paths.pings.remove(&tx) else {
            return;
        };
        let rtt = now.saturating_duration_since(probe.sent);
        let answered = match (probe.to, source) {
            (ProbeTarget::Udp(to), Source::Udp(from)) if to == from => Via::Udp(from),
            (ProbeTarget::Relay, Source::Relay(_)) => Via::Relay(key),
            // A sprayed ping: whichever port of the address got through.
            (ProbeTarget::Spray(ip), Source::Udp(from)) if from.ip() == ip => Via::Udp(from),
            // A pong for a ping sent elsewhere: the path it names is not proven.
            _ => return,
        };
        let changed = match answered {
            Via::Udp(addr) => paths.heard(addr, dst_ip, Some(rtt), now),
            Via::Relay(_) => {
                paths.relay_rtt = Some(rtt);
                false
            }
        };
        if changed {
            let event = peer.follow_best(relay, now);
            self.push_event(event);
        }
        if probe.asked {
            self.push_event(Event::PingResult {
                peer: key,
                via: Some(answered),
                rtt: Some(rtt),
            });
            // One answer per `warren ping`: the later pongs are not news.
            if let Some(paths) = self.peer_mut(id).and_then(|p| p.paths.as_mut()) {
                paths.pings.values_mut().for_each(|p| p.asked = false);
            }
        }
    }

    /// Runs on every engine tick: expires pings and dead paths, and sends
    /// the probes and call-me-maybe requests that are due.
    pub(crate) fn handle_disco_timers(&mut self, now: Instant) {
        let relay = self.relay;
        let mut due = Vec::new();
        let mut checks = Vec::new();
        let mut events = Vec::new();
        let have_endpoints = !self.local_endpoints.is_empty();
        for (id, peer) in self.peers_iter_mut() {
            let key = peer.config.public_key;
            let Some(paths) = peer.paths.as_mut() else {
                continue;
            };
            for expired in paths.expire_pings(now) {
                if expired.asked && !paths.pings.values().any(|p| p.asked) {
                    events.push(Event::PingResult {
                        peer: key,
                        via: None,
                        rtt: None,
                    });
                }
            }
            if paths.choose(now) {
                events.push(peer.follow_best(relay, now));
            }
            let tx_bytes = peer.tx_bytes;
            let Some(paths) = peer.paths.as_mut() else {
                continue;
            };
            if let Some(addr) = paths.silent_best(tx_bytes, now) {
                checks.push((id, addr));
            }
            if paths.next_probe.is_some_and(|t| now >= t) {
                due.push(id);
                let searching = paths.best.is_none();
                if searching
                    && have_endpoints
                    && paths
                        .last_call_me_maybe
                        .is_none_or(|t| now.saturating_duration_since(t) >= CALL_ME_MAYBE_EVERY)
                {
                    paths.last_call_me_maybe = Some(now);
                    events.push(Event::CallMeMaybe {
                        peer: key,
                        endpoints: Vec::new(),
                        nat: None,
                    });
                }
            }
        }
        for event in events {
            let event = match event {
                Event::CallMeMaybe { peer, .. } => Event::CallMeMaybe {
                    peer,
                    endpoints: self.local_endpoints.clone(),
                    nat: self.plain_nat_hint(),
                },
                other => other,
            };
            self.push_event(event);
        }
        for &id in &due {
            self.probe(id, false, now);
        }
        for (id, addr) in checks {
            if !due.contains(&id) {
                self.send_ping(id, ProbeTarget::Udp(addr), false, now);
            }
        }
    }

    /// Probes after news that may open a path (our new endpoints, the
    /// peer's, its call-me-maybe): the search restarts with its fast
    /// rounds, so a ping lost to a filter that the news is about to open
    /// goes again within a quarter second.
    pub(crate) fn probe_afresh(&mut self, id: PeerId, now: Instant) {
        if let Some(paths) = self.peer_mut(id).and_then(|p| p.paths.as_mut()) {
            paths.search_round = 0;
        }
        self.probe(id, false, now);
    }

    /// Pings every candidate of a peer, and the relay path too while no
    /// direct path works (or when a user asked).
    pub(crate) fn probe(&mut self, id: PeerId, asked: bool, now: Instant) {
        let relay = self.relay;
        let Some(paths) = self.peer_mut(id).and_then(|p| p.paths.as_mut()) else {
            return;
        };
        let searching = paths.best.is_none();
        paths.schedule_next_probe(now);
        let targets: Vec<SocketAddr> = paths.candidates.keys().copied().collect();
        for addr in targets {
            self.send_ping(id, ProbeTarget::Udp(addr), asked, now);
        }
        if relay && (searching || asked) {
            self.send_ping(id, ProbeTarget::Relay, asked, now);
        }
    }

    pub(crate) fn send_ping(&mut self, id: PeerId, to: ProbeTarget, asked: bool, now: Instant) {
        let mut tx = [0u8; 12];
        self.rng.fill_bytes(&mut tx);
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        let via = match to {
            ProbeTarget::Udp(addr) => Via::Udp(addr),
            ProbeTarget::Relay => Via::Relay(peer.config.public_key),
            // No one datagram: `crate::birthday` sends sprays.
            ProbeTarget::Spray(_) => return,
        };
        let mut src_ip = None;
        if let Some(paths) = peer.paths.as_mut() {
            if let ProbeTarget::Udp(addr) = to {
                src_ip = paths.local_for(&addr);
            }
            paths.pings.insert(
                tx,
                Probe {
                    to,
                    sent: now,
                    asked,
                },
            );
        }
        let sent_at = self.ping_clock.stamp(now);
        // From where the peer's packets from that address reach us, if
        // known: the peer's NAT may pass only what comes from there.
        self.send_disco(id, via, src_ip, DiscoMessage::Ping { tx, sent_at });
    }

    fn send_disco(&mut self, id: PeerId, to: Via, src_ip: Option<IpAddr>, message: DiscoMessage) {
        let mut nonce = [0u8; 12];
        self.rng.fill_bytes(&mut nonce);
        let own = self.public_key();
        let Some(key) = self.peer_mut(id).and_then(|p| p.disco_key.clone()) else {
            return;
        };
        let payload = disco::encode(&key, &own, nonce, &message);
        to.count_tx(self.counters_mut(), payload.len());
        self.push_transmit(Transmit {
            to,
            src_ip,
            payload,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Instant;

    use rand_core::{impls, RngCore};
    use warren_proto::disco::{self, DiscoKey, DiscoMessage};
    use warren_proto::NodePrivateKey;

    use crate::engine::{Engine, EngineConfig, Event, NetworkAction, Transmit};
    use crate::path::Via;
    use crate::peer::PeerConfig;

    /// A counter: enough randomness for transaction IDs and nonces here.
    pub(crate) struct Counter(pub(crate) u64);

    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            impls::fill_bytes_via_next(self, dest)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    /// Where A sends from.
    const A_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 51820);
    /// B's second address (on its loopback, say), the one A probes; the
    /// routing table of B's host would answer from another.
    const B_SECOND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)), 51820);

    pub(crate) fn engine(
        own: &NodePrivateKey,
        peer: &NodePrivateKey,
        at: SocketAddr,
        seed: u64,
    ) -> Engine {
        let mut engine = Engine::new(EngineConfig::new(own.clone(), Box::new(Counter(seed))));
        let config = PeerConfig {
            public_key: peer.public_key(),
            endpoint: None,
            allowed_ips: Vec::new(),
            persistent_keepalive: None,
            disco: true,
            candidates: vec![at],
        };
        engine.add_peer(config, Instant::now()).unwrap();
        engine
    }

    pub(crate) fn transmits(engine: &mut Engine) -> Vec<Transmit> {
        std::iter::from_fn(|| engine.poll_transmit()).collect()
    }

    #[test]
    fn a_pong_leaves_from_the_address_the_ping_was_sent_to() {
        let (a_key, b_key) = (
            NodePrivateKey::from_bytes([1; 32]),
            NodePrivateKey::from_bytes([2; 32]),
        );
        let now = Instant::now();
        let mut a = engine(&a_key, &b_key, B_SECOND, 1);
        let mut b = engine(&b_key, &a_key, A_ADDR, 1_000);
        assert!(a.ping(&b_key.public_key(), now));
        let [ping] = transmits(&mut a).try_into().unwrap();
        // Nothing from B has reached A yet: the routing table picks.
        assert_eq!((ping.to, ping.src_ip), (Via::Udp(B_SECOND), None));

        let mut out = vec![0; 65_536];
        let action = b
            .handle_network_packet(A_ADDR, Some(B_SECOND.ip()), &ping.payload, &mut out, now)
            .unwrap();
        assert_eq!(action, NetworkAction::Nothing);
        let b_to_a = DiscoKey::derive(&a_key, &b_key.public_key()).unwrap();
        let sent = transmits(&mut b);
        let pong = sent
            .iter()
            .find(|t| {
                matches!(
                    disco::decode(&b_to_a, &t.payload),
                    Ok(DiscoMessage::Pong { .. })
                )
            })
            .unwrap();
        assert_eq!(
            (pong.to, pong.src_ip),
            (Via::Udp(A_ADDR), Some(B_SECOND.ip()))
        );
        // B pings back (it has no direct path yet) from where A reached it:
        // a NAT in front of A would let nothing else through.
        let back: Vec<_> = sent.iter().filter(|t| !std::ptr::eq(*t, pong)).collect();
        assert!(!back.is_empty());
        assert!(back
            .iter()
            .all(|t| (t.to, t.src_ip) == (Via::Udp(A_ADDR), Some(B_SECOND.ip()))));

        // Sent from there, the pong proves the path A probed.
        let a_local = Some(A_ADDR.ip());
        a.handle_network_packet(B_SECOND, a_local, &pong.payload, &mut out, now)
            .unwrap();
        let answered = std::iter::from_fn(|| a.poll_event()).find_map(|e| match e {
            Event::PingResult { via, .. } => Some(via),
            _ => None,
        });
        assert_eq!(answered, Some(Some(Via::Udp(B_SECOND))));
        // On that path, A sends from where B's packets reach it.
        assert!(a.ping(&b_key.public_key(), now));
        let [again] = transmits(&mut a).try_into().unwrap();
        assert_eq!((again.to, again.src_ip), (Via::Udp(B_SECOND), a_local));
    }

    #[test]
    fn a_pong_through_the_relay_has_no_source_address() {
        let (a_key, b_key) = (
            NodePrivateKey::from_bytes([3; 32]),
            NodePrivateKey::from_bytes([4; 32]),
        );
        let now = Instant::now();
        let mut a = engine(&a_key, &b_key, B_SECOND, 1);
        let mut b = engine(&b_key, &a_key, A_ADDR, 1_000);
        a.set_relay_available(true, now);
        assert!(a.ping(&b_key.public_key(), now));
        let relayed = transmits(&mut a)
            .into_iter()
            .find(|t| matches!(t.to, Via::Relay(_)))
            .unwrap();
        let mut out = vec![0; 65_536];
        b.handle_relay_packet(a_key.public_key(), &relayed.payload, &mut out, now)
            .unwrap();
        let [pong] = transmits(&mut b).try_into().unwrap();
        assert_eq!(
            (pong.to, pong.src_ip),
            (Via::Relay(a_key.public_key()), None)
        );
    }
}
