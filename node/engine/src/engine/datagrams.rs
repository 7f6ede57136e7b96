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
    /// from (and, for a disco peer, sends from `dst_ip`, where it arrived).
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
        if peer.endpoint != Some(from) {
            peer.endpoint = Some(from);
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

