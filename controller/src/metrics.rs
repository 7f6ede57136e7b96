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
}

impl Metrics {
    pub fn count_api_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(counter) = self.api_requests.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
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
}
