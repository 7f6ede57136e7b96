//! Ends grants when their time comes, and notes devices whose sign-in ran
//! out: records each (audit, netmap version); the store's change feed
//! tells the hub, so what a grant allowed, or an expired device, is
//! withdrawn like any other change.
//! Runs on a controller, never on a relay-only instance.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::Hub;

/// How often due grants and expiries are looked for: each reaches the hub
/// within this (plus a cheap indexed read each time).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs until the task is aborted.
pub async fn run(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match hub.store().end_due_grants().await {
            Ok(ended) => {
                for grant in &ended {
                    tracing::info!(network = %grant.network_id, grant = %grant.id, "grant ended");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ending due grants failed; retrying"),
        }
        match hub.store().expire_due_devices().await {
            Ok(expired) => {
                for member in &expired {
                    tracing::info!(network = %member.network_id, node = %member.node_id,
                        owner = member.owner.as_deref().unwrap_or(""), "device sign-in expired");
                }
            }
            Err(e) => tracing::warn!(error = %e, "noting expired devices failed; retrying"),
        }
    }
}
