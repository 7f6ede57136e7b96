//! See `fuzz/checks/config.rs`: the same check runs on stable over the
//! committed inputs in warren-node's tests. The agent's own files are
//! built as they are, at the paths the check names them by.
#![no_main]

#[allow(dead_code)]
#[path = "../../node/src/config.rs"]
mod config;

#[allow(dead_code)]
#[path = "../../node/src/dns/settings.rs"]
mod settings;

#[allow(dead_code)]
#[path = "../../node/src/metrics/settings.rs"]
mod metrics_settings;

/// Where the agent has them.
mod dns {
    pub use crate::settings::DnsSettings;
}

mod metrics {
    pub use crate::metrics_settings::MetricsSettings;
}

mod daemon {
    /// The daemon's default (`daemon::NETMAP_MAX_AGE`); parsing does not depend on it.
    pub const NETMAP_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
}

#[path = "../checks/config.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
