//! Endpoint discovery: STUN binding requests from the data socket itself,
//! so the reflexive address learnt is the one peers can use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use warren_proto::stun::{self, StunTxId};

use crate::engine::{Engine, Event, Transmit};
use crate::error::PacketError;
use crate::path::Via;

/// Until a server answers, ask this often; then refresh at the slower pace,
/// well inside the 30 s a NAT keeps an idle UDP mapping.
const STUN_SEARCHING: Duration = Duration::from_secs(2);
const STUN_REFRESH: Duration = Duration::from_secs(20);
const STUN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the engine knows of its NAT.
#[derive(Debug, Default)]
pub(crate) struct StunState {
    servers: Vec<SocketAddr>,
    pending: BTreeMap<StunTxId, (SocketAddr, Instant)>,
    /// Server -> the address our packets to it came from.
    pub(crate) mapped: BTreeMap<SocketAddr, SocketAddr>,
    next: Option<Instant>,
}

impl Engine {
    /// The STUN servers to ask, normally the controller's STUN ports.
    pub fn set_stun_servers(&mut self, servers: Vec<SocketAddr>, now: Instant) {
        let stun = self.stun_mut();
        if stun.servers != servers {
            stun.mapped.retain(|server, _| servers.contains(server));
            stun.servers = servers;
            stun.next = Some(now);
        }
        self.schedule_tick(now);
    }

    /// Each STUN server and the reflexive address it saw.
    pub fn reflexive_addresses(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.stun().mapped.iter().map(|(s, m)| (*s, *m)).collect()
    }

    pub(crate) fn handle_stun(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), PacketError> {
        let Ok((tx, mapped)) = stun::parse_response(datagram) else {
            self.counters_mut().dropped_invalid += 1;
            return Err(PacketError::Malformed);
        };
        let stun = self.stun_mut();
        // Only an answer to our own request, from the server we asked, counts.
        match stun.pending.remove(&tx) {
            Some((server, _)) if server == from => {}
            _ => {
                self.counters_mut().dropped_invalid += 1;
                return Err(PacketError::Malformed);
            }
        }
        let before = self.nat_mapping();
        let changed = self.stun_mut().mapped.insert(from, mapped) != Some(mapped);
        if changed {
            self.push_event(Event::Reflexive {
                server: from,
                mapped,
            });
        }
        if self.nat_mapping() != before {
            self.tell_mapping();
        }
        Ok(())
    }

    pub(crate) fn handle_stun_timers(&mut self, now: Instant) {
        let mut tx_ids = Vec::new();
        {
            let stun = self.stun_mut();
            stun.pending
                .retain(|_, (_, sent)| now.saturating_duration_since(*sent) < STUN_TIMEOUT);
            if stun.servers.is_empty() || stun.next.is_none_or(|t| now < t) {
                return;
            }
            let answered = stun.servers.iter().all(|s| stun.mapped.contains_key(s));
            stun.next = Some(
                now + if answered {
                    STUN_REFRESH
                } else {
                    STUN_SEARCHING
                },
            );
            for server in stun.servers.clone() {
                tx_ids.push(server);
            }
        }
        for server in tx_ids {
            let mut tx = [0u8; 12];
            self.rng.fill_bytes(&mut tx);
            self.stun_mut().pending.insert(tx, (server, now));
            let payload = stun::binding_request(&tx);
            self.counters_mut().udp_tx_datagrams += 1;
            self.counters_mut().udp_tx_bytes += payload.len() as u64;
            self.push_transmit(Transmit {
                to: Via::Udp(server),
                src_ip: None,
                payload,
            });
        }
    }
}
