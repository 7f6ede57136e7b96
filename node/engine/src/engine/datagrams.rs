//! The engine's datagram path: what arrives from the network or the relay
//! (handshakes, data, disco), which peer it belongs to, roaming, and what
//! waited for a session.

use super::*;

impl Engine {
    /// Handles a datagram that arrived from `from`, writing into `out` what
    /// comes of it (see [`NetworkAction`]). `out` should hold 65,535 bytes.
    /// `dst_ip` is the local address it was sent to, where the socket can
    /// tell (`IP_PKTINFO`): what the engine queues in answer to it (a disco
    /// pong) leaves from there (see [`Transmit::src_ip`]).
    pub fn handle_network_packet(
        &mut self,
        from: SocketAddr,
        dst_ip: Option<IpAddr>,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<NetworkAction, PacketError> {
        self.counters.udp_rx_datagrams += 1;
        self.counters.udp_rx_bytes += datagram.len() as u64;
        self.handle_datagram(Source::Udp(from), dst_ip, datagram, out, now)
    }

    /// Handles a datagram that the relay brought from `from`.
    pub fn handle_relay_packet(
        &mut self,
        from: NodePublicKey,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<NetworkAction, PacketError> {
        self.counters.relay_rx_datagrams += 1;
        self.counters.relay_rx_bytes += datagram.len() as u64;
        self.handle_datagram(Source::Relay(from), None, datagram, out, now)
    }

    fn handle_datagram(
        &mut self,
        source: Source,
        dst_ip: Option<IpAddr>,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<NetworkAction, PacketError> {
        if disco::is_disco(datagram) {
            self.handle_disco(source, dst_ip, datagram, now)?;
            return Ok(NetworkAction::Nothing);
        }
        if let Source::Udp(from) = source {
            if warren_proto::stun::is_stun(datagram) {
                self.handle_stun(from, datagram)?;
                return Ok(NetworkAction::Nothing);
            }
        }
        if out.len() < MIN_OUTPUT_BUFFER {
            return Err(PacketError::BufferTooSmall {
                have: out.len(),
                need: MIN_OUTPUT_BUFFER,
            });
        }
        let id = match self.find_peer(source.ip(), datagram, out)? {
            Found::Peer(id) => id,
            Found::CookieReply(len) => {
                return Ok(NetworkAction::Reply {
                    to: source.reply_via(),
                    len,
                })
            }
        };
        self.schedule_tick(now);
        let Some(peer) = self.peers.get_mut(&id) else {
            self.counters.dropped_invalid += 1;
            return Err(PacketError::UnknownIndex(id.0 << 8));
        };
        if let Source::Relay(key) = source {
            if key != peer.config.public_key {
                // The relay vouches for who sent it; a mismatch is forged.
                self.counters.dropped_invalid += 1;
                return Err(PacketError::Malformed);
            }
        }
        let result = peer.session.decapsulate(source.ip(), datagram, out);
        let message_type = datagram.first().copied().unwrap_or_default();
        let relayed = matches!(source, Source::Relay(_));
        match result {
            Ok(SessionOutput::Network(len)) => {
                // A cookie reply is the rate limiter talking, not the peer: it proves nothing.
                if !(len == COOKIE_REPLY_LEN && out[0] == 3) {
                    peer.count_rx(datagram.len(), relayed);
                    peer.count_tx(len, source.reply_via());
                    peer.counters.handshakes += 1;
                    peer.expired = false;
                    let key = peer.config.public_key;
                    self.roam(id, source, dst_ip, now);
                    self.events
                        .push_back(Event::HandshakeCompleted { peer: key });
                    // Only a response makes the new session current. A responder
                    // that flushed here would find no session, re-queue the packet
                    // and start a handshake of its own, abandoning the one it had
                    // in flight: crossing initiations then storm. Its queue goes
                    // out with the initiator's first data packet instead (below).
                    if message_type == 2 {
                        self.flush_queued(id);
                    }
                }
                source.reply_via().count_tx(&mut self.counters, len);
                Ok(NetworkAction::Reply {
                    to: source.reply_via(),
                    len,
                })
            }
            Ok(SessionOutput::Tunnel { len, source: inner }) => {
                if self.routes.lookup(inner) != Some(&id) {
                    peer.counters.dropped_spoofed += 1;
                    self.counters.dropped_spoofed += 1;
                    return Err(PacketError::Spoofed {
                        peer: peer.config.public_key,
                        source_ip: inner,
                    });
                }
                peer.count_rx(datagram.len(), relayed);
                self.roam(id, source, dst_ip, now);
                self.flush_queued(id);
                // After roaming: the packet proves the peer's path whatever the policy says.
                if let Err(e) =
                    crate::filter::check(&mut self.filter, Direction::Inbound, &out[..len], now)
                {
                    if let Some(peer) = self.peers.get_mut(&id) {
                        peer.counters.dropped_filter += 1;
                    }
                    return Err(e);
                }
                // After the filter, which the policy for mapped prefixes meets.
                self.site_nat.translate_inbound(&mut out[..len]);
                Ok(NetworkAction::Tunnel { len })
            }
            Ok(SessionOutput::Done) => {
                if message_type == 4 {
                    // An authenticated keepalive. As the initiator's first
                    // message in a new session it makes that session current.
                    peer.count_rx(datagram.len(), relayed);
                    self.roam(id, source, dst_ip, now);
                    self.flush_queued(id);
                }
                Ok(NetworkAction::Nothing)
            }
            Err(WireGuardError::DuplicateCounter | WireGuardError::InvalidCounter) => {
                peer.counters.dropped_replay += 1;
                self.counters.dropped_replay += 1;
                Err(PacketError::Replay)
            }
            Err(e) => {
                peer.counters.dropped_invalid += 1;
                self.counters.dropped_invalid += 1;
                Err(PacketError::WireGuard(e))
            }
        }
    }

    /// Finds the peer a datagram belongs to. Handshake initiations name their
    /// sender only inside the encrypted static key, so they are checked
    /// against the rate limiter (MAC1, cookies) before any DH is spent on them.
    fn find_peer(
        &mut self,
        from: IpAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Found, PacketError> {
        let parsed = Tunn::parse_incoming_packet(datagram).map_err(|_| {
            self.counters.dropped_invalid += 1;
            PacketError::Malformed
        })?;
        let index = match parsed {
            Packet::HandshakeInit(_) => return self.find_initiator(from, datagram, out),
            Packet::HandshakeResponse(p) => p.receiver_idx,
            Packet::PacketCookieReply(p) => p.receiver_idx,
            Packet::PacketData(p) => p.receiver_idx,
        };
        let id = PeerId::from_receiver_index(index);
        if self.peers.contains_key(&id) {
            Ok(Found::Peer(id))
        } else {
            self.counters.dropped_invalid += 1;
            Err(PacketError::UnknownIndex(index))
        }
    }

    fn find_initiator(
        &mut self,
        from: IpAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Found, PacketError> {
        let init = match self.limiter.verify_packet(Some(from), datagram, out) {
            Ok(Packet::HandshakeInit(init)) => init,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                self.counters.udp_tx_datagrams += 1;
                self.counters.udp_tx_bytes += cookie.len() as u64;
                return Ok(Found::CookieReply(cookie.len()));
            }
            Ok(_) | Err(_) => {
                self.counters.dropped_invalid += 1;
                return Err(PacketError::Malformed);
            }
        };
        let public = self.public_key.to_x25519();
        let half =
            parse_handshake_anon(self.private_key.as_secret(), &public, &init).map_err(|e| {
                self.counters.dropped_invalid += 1;
                PacketError::WireGuard(e)
            })?;
        let key = NodePublicKey::from_bytes(half.peer_static_public).map_err(|_| {
            self.counters.dropped_invalid += 1;
            PacketError::Malformed
        })?;
        match self.by_key.get(&key) {
            Some(&id) => Ok(Found::Peer(id)),
            None => {
                self.counters.dropped_unknown_peer += 1;
                Err(PacketError::UnknownPeer)
            }
        }
    }

    /// An authenticated packet from a peer came through the relay: if we
    /// hold a direct path to it, the peer has given that path up. Ours is
    /// checked at once, or dropped if it has gone silent too, so that our
    /// answers follow the peer onto the relay instead of into a dead path.
    fn relayed_by_peer(&mut self, id: PeerId, now: Instant) {
        let relay = self.relay;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        // The usual case, every packet of a relayed peer: no direct path to doubt.
        let Some(paths) = peer.paths.as_mut().filter(|p| p.best.is_some()) else {
            return;
        };
        let check = paths.peer_relayed(now);
        if paths.choose(now) {
            let event = peer.follow_best(relay, now);
            self.events.push_back(event);
        }
        if let Some(addr) = check {
            self.send_ping(id, ProbeTarget::Udp(addr), false, now);
        }
    }

    /// Follows a peer to the address its latest authenticated packet came
    /// from, and sends to it from `dst_ip`, where it arrived.
    /// A disco peer's address becomes a live direct path; a packet through
    /// the relay proves nothing about addresses.
    fn roam(&mut self, id: PeerId, source: Source, dst_ip: Option<IpAddr>, now: Instant) {
        let Source::Udp(from) = source else {
            self.relayed_by_peer(id, now);
            return;
        };
        let relay = self.relay;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some(paths) = &mut peer.paths {
            if paths.best == Some(from) {
                paths.heard_on_best(dst_ip, now);
                return;
            }
            if paths.heard(from, dst_ip, None, now) {
                let event = peer.follow_best(relay, now);
                self.events.push_back(event);
            }
            return;
        }
        if dst_ip.is_some() {
            peer.endpoint_local = dst_ip;
        }
        if peer.endpoint != Some(from) {
            peer.endpoint = Some(from);
            peer.endpoint_local = dst_ip;
            peer.refresh_via(relay, now);
            self.events.push_back(Event::EndpointChanged {
                peer: peer.config.public_key,
                endpoint: from,
            });
        }
    }

    /// Sends the packets boringtun queued while a handshake was under way.
    fn flush_queued(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        while let Ok(SessionOutput::Network(len)) = peer.session.next_queued(&mut self.scratch) {
            if let Some(to) = peer.via {
                let payload = &self.scratch[..len];
                queue_transmit(peer, to, payload, &mut self.counters, &mut self.transmits);
            }
        }
    }

    pub(super) fn send_keepalive(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let (Ok(SessionOutput::Network(len)), Some(to)) =
            (peer.session.encapsulate(&[], &mut self.scratch), peer.via)
        {
            let payload = &self.scratch[..len];
            queue_transmit(peer, to, payload, &mut self.counters, &mut self.transmits);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use ipnet::IpNet;

    use warren_proto::NodePrivateKey;

    use super::*;
    use crate::disco::tests::Counter;

    const A_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 51820);
    /// B's second address, which the routing table of B's host would not pick.
    const B_SECOND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)), 51820);

    /// A `[[peer]]`-style engine: `peer` at a fixed `endpoint` (or none),
    /// owning `tunnel_ip`.
    fn static_engine(
        own: &NodePrivateKey,
        peer: &NodePrivateKey,
        endpoint: Option<SocketAddr>,
        tunnel_ip: Ipv4Addr,
    ) -> Engine {
        let mut engine = Engine::new(EngineConfig::new(own.clone(), Box::new(Counter(1))));
        let allowed = vec![IpNet::from(IpAddr::V4(tunnel_ip))];
        let keepalive = endpoint.map(|_| Duration::from_secs(25));
        let config = PeerConfig::fixed(peer.public_key(), endpoint, allowed, keepalive);
        engine.add_peer(config, Instant::now()).unwrap();
        engine
    }

    /// An empty UDP packet from `src` to `dst`, as read from the TUN.
    fn packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
        p
    }

    /// A static peer (no disco) is answered from the address its packets
    /// reach us at, as a disco peer is, and from the route's choice again
    /// once it roams to where the socket cannot tell.
    #[test]
    fn a_static_peer_is_sent_to_from_where_it_reaches_us() {
        let (a_key, b_key) = (
            NodePrivateKey::from_bytes([5; 32]),
            NodePrivateKey::from_bytes([6; 32]),
        );
        let (a_ip, b_ip) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
        let now = Instant::now();
        let mut a = static_engine(&a_key, &b_key, Some(B_SECOND), b_ip);
        let mut b = static_engine(&b_key, &a_key, None, a_ip);
        let init = a.poll_transmit().unwrap();
        // Nothing from B has reached A yet: the routing table picks.
        assert_eq!((init.to, init.src_ip), (Via::Udp(B_SECOND), None));

        let mut out = vec![0; 65_536];
        let b_local = Some(B_SECOND.ip());
        let action = b
            .handle_network_packet(A_ADDR, b_local, &init.payload, &mut out, now)
            .unwrap();
        let NetworkAction::Reply { to, len } = action else {
            panic!("a handshake response, not {action:?}");
        };
        assert_eq!(to, Via::Udp(A_ADDR));
        let response = out[..len].to_vec();
        let a_local = Some(A_ADDR.ip());
        a.handle_network_packet(B_SECOND, a_local, &response, &mut out, now)
            .unwrap();

        let mut scratch = vec![0; 65_536];
        let send = a
            .handle_tun_packet(&mut packet(a_ip, b_ip), &mut scratch, now)
            .unwrap()
            .unwrap();
        assert_eq!((send.to, send.src_ip), (Via::Udp(B_SECOND), a_local));
        let data = scratch[..send.len].to_vec();
        let action = b
            .handle_network_packet(A_ADDR, b_local, &data, &mut out, now)
            .unwrap();
        assert!(matches!(action, NetworkAction::Tunnel { .. }));
        let send = b
            .handle_tun_packet(&mut packet(b_ip, a_ip), &mut scratch, now)
            .unwrap()
            .unwrap();
        assert_eq!((send.to, send.src_ip), (Via::Udp(A_ADDR), b_local));

        // A roams; where its packets now arrive is unknown here.
        let a_moved = SocketAddr::from(([203, 0, 113, 9], 40_000));
        let send = a
            .handle_tun_packet(&mut packet(a_ip, b_ip), &mut scratch, now)
            .unwrap()
            .unwrap();
        let data = scratch[..send.len].to_vec();
        b.handle_network_packet(a_moved, None, &data, &mut out, now)
            .unwrap();
        let send = b
            .handle_tun_packet(&mut packet(b_ip, a_ip), &mut scratch, now)
            .unwrap()
            .unwrap();
        assert_eq!((send.to, send.src_ip), (Via::Udp(a_moved), None));
    }
}
