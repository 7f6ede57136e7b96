//! The `[metrics]` section of the agent's config file, on its own so that
//! the config file's fuzz target builds it as it is (`fuzz/fuzz_targets/config.rs`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[metrics]`: where the Prometheus endpoint listens. Without the section
/// (and without `--metrics-listen`) nothing listens.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsSettings {
    /// `IP:PORT` of the endpoint, e.g. `127.0.0.1:9101`.
    pub listen: SocketAddr,
    /// Serve on an address that is not loopback. The page names the node's
    /// networks and peers and counts their traffic, and it has no
    /// authentication: only for a scraper on a network you trust.
    #[serde(default)]
    pub allow_remote: bool,
}

impl MetricsSettings {
    /// Refuses a listen address that cannot be what was meant.
    pub fn check(&self) -> Result<(), String> {
        let listen = self.listen;
        if listen.port() == 0 {
            return Err(format!(
                "metrics endpoint {listen}: needs a port (a scraper must know where to look)"
            ));
        }
        if !listen.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "metrics endpoint {listen}: not a loopback address; the page has no \
                 authentication and names this node's peers, so serving it beyond this \
                 machine needs `allow-remote = true` in the config file's [metrics]"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<MetricsSettings, String> {
        let s: MetricsSettings = toml::from_str(text).map_err(|e| e.to_string())?;
        s.check().map(|()| s)
    }

    #[test]
    fn loopback_is_fine_and_remote_needs_saying_so() {
        assert!(settings("listen = \"127.0.0.1:9101\"").is_ok());
        assert!(settings("listen = \"[::1]:9101\"").is_ok());
        let err = settings("listen = \"0.0.0.0:9101\"").unwrap_err();
        assert!(err.contains("allow-remote = true"), "{err}");
        let err = settings("listen = \"192.0.2.1:9101\"").unwrap_err();
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(settings("listen = \"0.0.0.0:9101\"\nallow-remote = true").is_ok());
    }

    #[test]
    fn bad_addresses_get_clear_errors() {
        let err = settings("listen = \"127.0.0.1\"").unwrap_err();
        assert!(err.contains("socket address"), "{err}");
        let err = settings("listen = \"127.0.0.1:0\"").unwrap_err();
        assert!(err.contains("needs a port"), "{err}");
        let err = settings("listen = \"127.0.0.1:9101\"\nallow_remote = true").unwrap_err();
        assert!(err.contains("allow_remote"), "{err}");
        let err = settings("").unwrap_err();
        assert!(err.contains("listen"), "{err}");
    }
}
