//! The access-policy filter of one network: rules for first packets, connection tracking for the rest, and rejects for what it denies.
//!
//! Inbound, a decrypted packet from a peer passes if it belongs to a
//! tracked flow, or if an inbound rule admits it as the first packet of a
//! flow (which is then tracked, so that the replies pass). Outbound, a
//! packet from the TUN passes likewise by the outbound rules; a denied one
//! is answered on the TUN with ICMP administratively prohibited, and a
//! denied TCP segment that is not a SYN (a connection a policy change cut)
//! also with a reset to the local socket. Without a compiled filter every
//! packet passes and nothing is tracked.
//!
//! Decisions that are not obvious:
//! - Fragments after the first carry no ports: they pass, as in
//!   Tailscale's filter. Without their first fragment, which the rules
//!   saw, they cannot be reassembled.
//! - An ICMP error passes if the packet it quotes belongs to a tracked
//!   flow (so path-MTU discovery works), else only if a rule admits ICMP.
//! - A TCP segment that is not a SYN may start a tracked flow if a rule
//!   admits it, so that connections survive a restart of the agent or the
//!   expiry of an idle entry.
//!
//! # Layout
//! - `flow`: reading packets, flow keys.
//! - [`rules`]: the compiled rules, first match, `explain` and hit counters.
//! - `index`: the rules that could admit a packet, by prefix, protocol and port.
//! - `conntrack`: the bounded table of tracked flows.
//! - `timeouts`: TCP states and how long each kind of flow may stay idle.
//! - `reject`: ICMP administratively prohibited and TCP resets.
//! - `stats`: drop counters and the ring of recent drops.

mod conntrack;
mod flow;
mod index;
mod reject;
pub mod rules;
mod stats;
mod timeouts;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use rand_core::RngCore;

use warren_proto::filter::{
    Direction, DropReason, Explanation, FilterStats, PacketFilter, Protocol, Verdict,
};

pub use conntrack::FLOW_LIMIT;
pub use rules::CompiledFilter;
pub use stats::RECENT_DROPS;
pub use timeouts::{ICMP_IDLE, TCP_ESTABLISHED_IDLE, TCP_TRANSITORY_IDLE, UDP_IDLE};

use crate::error::PacketError;

use conntrack::{SeededHasher, Table};
use flow::{Parsed, Transport, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use timeouts::State;

/// Rejects waiting for the shell to write them to the TUN; beyond this
/// they are not made (the denied packets are still dropped and counted).
pub const REJECT_QUEUE: usize = 64;

/// The filter of one network on this node.
#[derive(Debug)]
pub struct Filter {
    /// What `rules` were compiled from: a netmap that brings the same
    /// filter again (every peer change does) costs nothing.
    source: Option<PacketFilter>,
    rules: Option<CompiledFilter>,
    table: Table,
    counters: stats::Counters,
    to_tun: VecDeque<Vec<u8>>,
}

impl Filter {
    /// A filter that lets everything pass until [`Filter::replace`] gives it
    /// rules. `hash_keys` key the flow table's hash: random in the agent,
    /// fixed in tests.
    pub fn new(flow_limit: usize, hash_keys: (u64, u64)) -> Self {
        Filter {
            source: None,
            rules: None,
            table: Table::new(flow_limit, SeededHasher::new(hash_keys.0, hash_keys.1)),
            counters: stats::Counters::default(),
            to_tun: VecDeque::new(),
        }
    }

    /// Takes a newly compiled filter (`None`: let everything pass). Tracked
    /// flows that the new rules would not admit are removed at once, so
    /// that their next packet is denied; the others keep going.
    pub fn replace(&mut self, filter: Option<PacketFilter>, now: Instant) {
        if self.source == filter {
            return;
        }
        self.source = filter.clone();
        let Some(filter) = filter else {
            self.rules = None;
            self.table.clear();
            return;
        };
        let mut new = CompiledFilter::new(filter);
        if let Some(old) = &self.rules {
            new.carry_hits(old);
        }
        self.table.handle_timeout(now);
        self.counters.flows_cut += self.table.retain(|f| {
            let (initiator, responder) = if f.initiator_low {
                (f.key.low, f.key.high)
            } else {
                (f.key.high, f.key.low)
            };
            new.first_match(
                f.origin,
                initiator.addr,
                responder.addr,
                flow::rule_protocol(f.key.protocol),
                responder.port,
            )
            .is_some()
        });
        self.rules = Some(new);
    }

    /// The compiled rules, if any.
    pub fn compiled(&self) -> Option<&CompiledFilter> {
        self.rules.as_ref()
    }

    /// Checks a decrypted packet from a peer before it goes to the TUN.
    pub fn handle_inbound(&mut self, packet: &[u8], now: Instant) -> Result<(), DropReason> {
        self.decide(Direction::Inbound, packet, now)
            .map_err(|(reason, _)| reason)
    }

    /// Checks a packet from the TUN before it is encrypted. A denied one may
    /// leave rejects for [`Filter::poll_tun_packet`].
    pub fn handle_outbound(&mut self, packet: &[u8], now: Instant) -> Result<(), DropReason> {
        let (reason, parsed) = match self.decide(Direction::Outbound, packet, now) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some(p) = parsed {
            let rejects = [reject::admin_prohibited(packet, &p), reject::tcp_reset(&p)];
            for r in rejects.into_iter().flatten() {
                if self.to_tun.len() < REJECT_QUEUE {
                    self.to_tun.push_back(r);
                    self.counters.rejects_sent += 1;
                }
            }
        }
        Err(reason)
    }

    /// A packet to write to the TUN: a reject for a denied outbound packet.
    pub fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        self.to_tun.pop_front()
    }

    /// When the next tracked flow times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
    }

    /// Would a new flow pass, and by which rule? Without rules everything
    /// passes, by no rule. See [`CompiledFilter::explain`].
    pub fn explain(
        &self,
        direction: Direction,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Explanation {
        match &self.rules {
            Some(rules) => rules.explain(direction, src, dst, protocol, port),
            None => Explanation {
                verdict: Verdict::Allow,
                rule: None,
            },
        }
    }

    /// Roughly the bytes the flow table holds (by capacity, so it counts
    /// what was reserved, not only what is used).
    pub fn memory(&self) -> usize {
        self.table.memory()
    }

    pub fn stats(&self, now: Instant) -> FilterStats {
        FilterStats {
            policy_version: self.rules.as_ref().map(CompiledFilter::policy_version),
            tracked_flows: self.table.len() as u64,
            flow_limit: self.table.limit() as u64,
            flow_table_bytes: self.table.memory() as u64,
            flows_evicted: self.table.removed.evicted,
            flows_expired: self.table.removed.expired,
            flows_cut: self.counters.flows_cut,
            rule_hits: self
                .rules
                .as_ref()
                .map(CompiledFilter::hits)
                .unwrap_or_default(),
            dropped_inbound: self.counters.dropped_inbound,
            dropped_outbound: self.counters.dropped_outbound,
            rejects_sent: self.counters.rejects_sent,
            recent_drops: self.counters.recent(now),
        }
    }

    /// Pass (`Ok`) or drop, counted, with the packet as read if it could be.
    fn decide(
        &mut self,
        direction: Direction,
        packet: &[u8],
        now: Instant,
    ) -> Result<(), (DropReason, Option<Parsed>)> {
        let Some(rules) = self.rules.as_mut() else {
            return Ok(());
        };
        let p = match flow::parse(packet) {
            Ok(p) => p,
            Err(flow::Malformed) => {
                let reason = DropReason::Malformed;
                self.counters.drop(direction, reason, None, now);
                return Err((reason, None));
            }
        };
        let flow = p.flow();
        if let Some((key, src_low)) = &flow {
            let flags = match p.transport {
                Transport::Tcp { flags, .. } => Some(flags),
                _ => None,
            };
            let tracked = self
                .table
                .touch(key, *src_low, now, |state, from_initiator| {
                    flags.map_or(state, |f| state.after_tcp(f, from_initiator))
                });
            if tracked {
                return Ok(());
            }
        }
        match p.transport {
            Transport::LaterFragment => return Ok(()),
            Transport::IcmpError {
                quoted: Some(inner),
            } if self.table.contains(&inner, now) => return Ok(()),
            _ => {}
        }
        let protocol = flow::rule_protocol(p.protocol);
        let Some(index) = rules.first_match(direction, p.src, p.dst, protocol, p.rule_port())
        else {
            let reason = DropReason::NoRule;
            self.counters.drop(direction, reason, Some(&p), now);
            return Err((reason, Some(p)));
        };
        rules.hit(direction, index);
        if let (Some((key, src_low)), Some(state)) = (flow, first_state(&p.transport)) {
            self.table.insert(key, direction, src_low, state, now);
        }
        Ok(())
    }
}

/// The engine's side of [`Filter::replace`]: the first policy creates the
/// filter, with hash keys from the engine's randomness.
pub(crate) fn set(
    slot: &mut Option<Filter>,
    filter: Option<PacketFilter>,
    rng: &mut dyn RngCore,
    now: Instant,
) {
    if filter.is_none() && slot.is_none() {
        return;
    }
    slot.get_or_insert_with(|| Filter::new(FLOW_LIMIT, (rng.next_u64(), rng.next_u64())))
        .replace(filter, now);
}

/// The engine's side of the checks: a packet going `direction` passes if
/// there is no filter or the filter lets it.
pub(crate) fn check(
    filter: &mut Option<Filter>,
    direction: Direction,
    packet: &[u8],
    now: Instant,
) -> Result<(), PacketError> {
    let Some(filter) = filter else {
        return Ok(());
    };
    match direction {
        Direction::Inbound => filter.handle_inbound(packet, now),
        Direction::Outbound => filter.handle_outbound(packet, now),
    }
    .map_err(|reason| PacketError::Filtered { direction, reason })
}

/// The state of a flow that this admitted packet starts; `None` for
/// packets that start nothing (a reset, an echo reply).
fn first_state(transport: &Transport) -> Option<State> {
    match *transport {
        Transport::Tcp { flags, .. } if flags & TCP_RST != 0 => None,
        Transport::Tcp { flags, .. } if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 => {
            Some(State::TcpOpening)
        }
        Transport::Tcp { flags, .. } if flags & TCP_FIN != 0 => Some(State::TcpClosing),
        Transport::Tcp { .. } => Some(State::TcpEstablished),
        Transport::Udp { .. } | Transport::Other => Some(State::Datagram),
        Transport::Echo { request: true, .. } => Some(State::IcmpEcho),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
