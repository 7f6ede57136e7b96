//! The agent's opt-in Prometheus endpoint (`[metrics] listen`): `GET
//! /metrics` on a TCP address, loopback unless `allow-remote` says
//! otherwise. The page is drawn from what `warren status` shows (one
//! collection, through the event loop) plus the DNS stubs' query counts
//! and the routes in force; every metric is in `docs/metrics.md`.
//!
//! - [`settings`]: the `[metrics]` section of the config file.
//! - [`families`]: every metric family, with its type, labels and help.
//! - [`exposition`]: the text format.
//! - [`render`]: a [`Snapshot`] written as a page (pure).
//! - [`server`]: the listener and its one route.

pub mod exposition;
pub mod families;
pub mod render;
pub mod server;
pub mod settings;

use warren_proto::local_api::Status;
use warren_proto::NetworkId;

pub use server::Listener;
pub use settings::MetricsSettings;

/// Everything one page shows, gathered by the event loop in one go.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// What `warren status --json` shows.
    pub status: Status,
    /// Per network with a stub: answers by result.
    pub dns: Vec<(NetworkId, Vec<(&'static str, u64)>)>,
    pub routes: crate::routes::RoutesMetrics,
}
