//! Counters and gauges for `/metrics`, rendered in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Shared by the API and the control server; all updates are lock-free.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (network, node) pairs with an authenticated connection that joined.
    pub members_online: AtomicI64,
    /// Authenticated control connections.
    pub connected_nodes: AtomicI64,
    /// Netmaps and deltas sent.
    pub netmap_pushes: AtomicU64,
    /// API responses by status class, 1xx..5xx.
    pub api_requests: [AtomicU64; 5],
    /// STUN binding requests answered.
    pub stun_requests: AtomicU64,
    /// Datagrams on a STUN port that were not binding requests (unanswered).
    pub stun_ignored: AtomicU64,
    /// Binding requests not answered because their source prefix was over its rate.
    pub stun_limited: AtomicU64,
    /// Control connections and joins refused by the per-source and
    /// per-key limits.
    pub admission_refused: AtomicU64,
    /// QUIC Retry packets sent to make a client prove its address.
    pub quic_retries: AtomicU64,
    /// Relay frames forwarded, one per destination connection.
    pub relay_frames: AtomicU64,
    /// Payload bytes of those frames.
    pub relay_bytes: AtomicU64,
    /// Of the forwarded frames, those that went on a stream of their own.
    pub relay_stream_frames: AtomicU64,
    /// Absence notices sent to senders (relay-only instances only).
    pub relay_absence_notices: AtomicU64,
    /// Connections closed because their key opened more than
    /// [`crate::relay::LINKS_PER_KEY`].
    pub relay_links_superseded: AtomicU64,
    /// Relay frames refused, by [`RelayRefusal`].
    pub relay_refused: [AtomicU64; RelayRefusal::ALL.len()],
    /// Relay frames accepted but not delivered, by [`RelayDrop`].
    pub relay_dropped: [AtomicU64; RelayDrop::ALL.len()],
}

/// Why the relay refused a frame from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRefusal {
    /// Not a relay frame (bad version, truncated, too large, bad key), or
    /// an empty one (only relays send those).
    Malformed,
    /// Sender or destination is not an authorized member of the network,
    /// or both are the same node.
    NotAPeer,
    /// A sequence number seen before on this connection, or too old.
    Replay,
    /// The sending node is over its byte quota.
    Quota,
    /// Membership could not be checked (database error, or too many
    /// lookups of unknown networks from one connection).
    Unverified,
}

impl RelayRefusal {
    pub const ALL: [RelayRefusal; 5] = [
        RelayRefusal::Malformed,
        RelayRefusal::NotAPeer,
        RelayRefusal::Replay,
        RelayRefusal::Quota,
        RelayRefusal::Unverified,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RelayRefusal::Malformed => "malformed",
            RelayRefusal::NotAPeer => "not_a_peer",
            RelayRefusal::Replay => "replay",
            RelayRefusal::Quota => "quota",
            RelayRefusal::Unverified => "unverified",
        }
    }
}

/// Why an accepted relay frame was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayDrop {
    /// The destination has no connection to this relay.
    Offline,
    /// Too many stream sends to the destination connection in flight.
    Congested,
    /// Sending failed (the destination connection closed meanwhile).
    SendFailed,
}

impl RelayDrop {
    pub const ALL: [RelayDrop; 3] = [
        RelayDrop::Offline,
        RelayDrop::Congested,
        RelayDrop::SendFailed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RelayDrop::Offline => "offline",
            RelayDrop::Congested => "congested",
            RelayDrop::SendFailed => "send_failed",
        }
    }
}

impl Metrics {
    pub fn count_retry(&self) {
        self.quic_retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_admission_refusal(&self) {
        self.admission_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_api_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(counter) = self.api_requests.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_relay_refused(&self, reason: RelayRefusal) {
        if let Some(i) = RelayRefusal::ALL.iter().position(|r| *r == reason) {
            self.relay_refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_relay_dropped(&self, reason: RelayDrop) {
        if let Some(i) = RelayDrop::ALL.iter().position(|r| *r == reason) {
            self.relay_dropped[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn relay_refused(&self, reason: RelayRefusal) -> u64 {
        RelayRefusal::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.relay_refused[i].load(Ordering::Relaxed))
    }

    pub fn relay_dropped(&self, reason: RelayDrop) -> u64 {
        RelayDrop::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.relay_dropped[i].load(Ordering::Relaxed))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "warren_members_online",
            "Network memberships with a connected node.",
            self.members_online.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "warren_connected_nodes",
            "Authenticated control connections.",
            self.connected_nodes.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP warren_netmap_pushes_total Netmaps and deltas sent to nodes.\n\
             # TYPE warren_netmap_pushes_total counter\nwarren_netmap_pushes_total {}",
            self.netmap_pushes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP warren_api_requests_total API responses by status class.\n\
             # TYPE warren_api_requests_total counter"
        );
        for (i, counter) in self.api_requests.iter().enumerate() {
            let _ = writeln!(
                out,
                "warren_api_requests_total{{class=\"{}xx\"}} {}",
                i + 1,
                counter.load(Ordering::Relaxed)
            );
        }
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "warren_stun_requests_total",
            "STUN binding requests answered.",
            &self.stun_requests,
        );
        counter(
            &mut out,
            "warren_stun_ignored_total",
            "Datagrams on STUN ports that were not binding requests.",
            &self.stun_ignored,
        );
        counter(
            &mut out,
            "warren_stun_limited_total",
            "Binding requests not answered: their source prefix was over its rate.",
            &self.stun_limited,
        );
        counter(
            &mut out,
            "warren_control_admission_refused_total",
            "Control connections and joins refused by per-source and per-key limits.",
            &self.admission_refused,
        );
        counter(
            &mut out,
            "warren_control_quic_retries_total",
            "QUIC Retry packets sent under handshake load.",
            &self.quic_retries,
        );
        counter(
            &mut out,
            "warren_relay_frames_total",
            "Relay frames forwarded, one per destination connection.",
            &self.relay_frames,
        );
        counter(
            &mut out,
            "warren_relay_bytes_total",
            "Payload bytes of the relay frames forwarded.",
            &self.relay_bytes,
        );
        counter(
            &mut out,
            "warren_relay_stream_frames_total",
            "Relay frames forwarded on a stream because they did not fit a datagram.",
            &self.relay_stream_frames,
        );
        counter(
            &mut out,
            "warren_relay_absence_notices_total",
            "Notices to senders that a destination has no connection here (relay-only instances).",
            &self.relay_absence_notices,
        );
        counter(
            &mut out,
            "warren_relay_connections_superseded_total",
            "Connections closed because their node key opened more than the limit per key.",
            &self.relay_links_superseded,
        );
        let _ = writeln!(
            out,
            "# HELP warren_relay_refused_total Relay frames refused, by reason.\n\
             # TYPE warren_relay_refused_total counter"
        );
        for reason in RelayRefusal::ALL {
            let _ = writeln!(
                out,
                "warren_relay_refused_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.relay_refused(reason)
            );
        }
        let _ = writeln!(
            out,
            "# HELP warren_relay_dropped_total Accepted relay frames not delivered, by reason.\n\
             # TYPE warren_relay_dropped_total counter"
        );
        for reason in RelayDrop::ALL {
            let _ = writeln!(
                out,
                "warren_relay_dropped_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.relay_dropped(reason)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_status_classes() {
        let m = Metrics::default();
        m.count_api_response(201);
        m.count_api_response(404);
        m.count_api_response(404);
        let text = m.render();
        assert!(text.contains("warren_api_requests_total{class=\"2xx\"} 1"));
        assert!(text.contains("warren_api_requests_total{class=\"4xx\"} 2"));
        assert!(text.contains("warren_members_online 0"));
    }

    #[test]
    fn renders_relay_reasons() {
        let m = Metrics::default();
        m.count_relay_refused(RelayRefusal::Quota);
        m.count_relay_refused(RelayRefusal::Quota);
        m.count_relay_dropped(RelayDrop::Offline);
        m.stun_requests.fetch_add(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("warren_relay_refused_total{reason=\"quota\"} 2"));
        assert!(text.contains("warren_relay_refused_total{reason=\"not_a_peer\"} 0"));
        assert!(text.contains("warren_relay_dropped_total{reason=\"offline\"} 1"));
        assert!(text.contains("warren_stun_requests_total 3"));
        assert_eq!(m.relay_refused(RelayRefusal::Quota), 2);
    }
}
