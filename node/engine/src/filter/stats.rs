//! The filter's counters: drops by direction and reason, rejects sent, and a short ring of the latest drops.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use warren_proto::filter::{Direction, DropCounts, DropReason, RecentDrop};

use super::flow::Parsed;

/// How many drops `warren explain` can list.
pub const RECENT_DROPS: usize = 32;

/// A drop as it happened; its age is computed when the stats are read.
#[derive(Debug, Clone, Copy)]
struct Drop {
    at: Instant,
    direction: Direction,
    reason: DropReason,
    ip_protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    port: u16,
}

/// Counters that outlive policy changes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub dropped_inbound: DropCounts,
    pub dropped_outbound: DropCounts,
    pub rejects_sent: u64,
    pub flows_cut: u64,
    recent: VecDeque<Drop>,
}

impl Counters {
    /// Counts a drop; `parsed` is `None` for a packet that could not be read.
    pub fn drop(
        &mut self,
        direction: Direction,
        reason: DropReason,
        parsed: Option<&Parsed>,
        now: Instant,
    ) {
        match direction {
            Direction::Inbound => self.dropped_inbound.count(reason),
            Direction::Outbound => self.dropped_outbound.count(reason),
        }
        if self.recent.len() == RECENT_DROPS {
            self.recent.pop_back();
        }
        let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        self.recent.push_front(Drop {
            at: now,
            direction,
            reason,
            ip_protocol: parsed.map_or(0, |p| p.protocol),
            src: parsed.map_or(unknown, |p| p.src),
            dst: parsed.map_or(unknown, |p| p.dst),
            port: parsed.map_or(0, |p| p.rule_port()),
        });
    }

    /// The latest drops, newest first, aged as of `now`.
    pub fn recent(&self, now: Instant) -> Vec<RecentDrop> {
        self.recent
            .iter()
            .map(|d| RecentDrop {
                age_ms: now.saturating_duration_since(d.at).as_millis() as u64,
                direction: d.direction,
                reason: d.reason,
                ip_protocol: d.ip_protocol,
                src: d.src,
                dst: d.dst,
                port: d.port,
            })
            .collect()
    }
}
