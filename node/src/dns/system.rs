//! Split DNS: sends only the zones to the stubs, through systemd-resolved
//! where it resolves for the system, else through a reversible edit of
//! resolv.conf. Restored on leave and on a clean stop; a backup left by a
//! crash is restored when the next agent starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use warren_proto::local_dns::SplitDnsMode;
use warren_proto::NetworkId;

use super::os::ResolverOs;
use super::resolv_conf::render;
use super::resolved;
pub use super::settings::Manage;

/// One serving stub and the interface of its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub network: NetworkId,
    pub interface: String,
    pub stub: SocketAddr,
    pub zone: String,
}

pub struct SplitDns {
    manage: Manage,
    /// resolved and resolv.conf: the host's, or a fake in tests.
    os: Arc<dyn ResolverOs>,
    /// What is in force; `Off` until the first stub serves.
    mode: SplitDnsMode,
    /// resolved: interface -> (stub, zone) as configured.
    links: BTreeMap<String, (SocketAddr, String)>,
    /// resolv-conf: what we last wrote.
    written: Option<String>,
    pub error: Option<String>,
}

impl SplitDns {
    /// Repairs what a crashed agent left (a resolv.conf backup) first.
    pub fn start(manage: Manage, os: Arc<dyn ResolverOs>) -> SplitDns {
        let mut error = None;
        if os.resolv_conf_has_backup() {
            match os.resolv_conf_restore() {
                Ok(true) => {
                    tracing::warn!(path = %os.resolv_conf_path().display(), "restored resolv.conf left edited by an agent that did not stop cleanly")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "could not restore resolv.conf from its backup");
                    error = Some(format!("restoring resolv.conf: {e:#}"));
                }
            }
        }
        SplitDns {
            manage,
            os,
            mode: SplitDnsMode::Off,
            links: BTreeMap::new(),
            written: None,
            error,
        }
    }

    pub fn manage(&self) -> Manage {
        self.manage
    }

    pub fn mode(&self) -> SplitDnsMode {
        self.mode
    }

    pub fn has_backup(&self) -> bool {
        self.os.resolv_conf_has_backup()
    }

    /// The system's resolv.conf as it was before us.
    pub fn original_text(&self) -> String {
        self.os.resolv_conf_original_text()
    }

    fn choose(&self) -> SplitDnsMode {
        match self.manage {
            Manage::Off => SplitDnsMode::Off,
            Manage::Resolved => SplitDnsMode::Resolved,
            Manage::ResolvConf => SplitDnsMode::ResolvConf,
            Manage::Auto
                if resolved::in_charge(&self.original_text(), self.os.has_resolvectl()) =>
            {
                SplitDnsMode::Resolved
            }
            Manage::Auto => SplitDnsMode::ResolvConf,
        }
    }

    /// Makes the system send each route's zone to its stub; no routes
    /// means the system as it was.
    pub async fn apply(&mut self, routes: &[Route]) {
        if routes.is_empty() {
            self.restore().await;
            return;
        }
        if self.mode == SplitDnsMode::Off {
            self.mode = self.choose();
            if self.mode != SplitDnsMode::Off {
                tracing::info!(mode = ?self.mode, "managing split DNS");
            }
        }
        let result = match self.mode {
            SplitDnsMode::Off => Ok(()),
            SplitDnsMode::Resolved => self.apply_resolved(routes).await,
            SplitDnsMode::ResolvConf => self.apply_resolv_conf(routes),
        };
        self.error = result.err().map(|e| {
            tracing::warn!(error = %format!("{e:#}"), "could not configure split DNS");
            format!("{e:#}")
        });
    }

    async fn apply_resolved(&mut self, routes: &[Route]) -> anyhow::Result<()> {
        let stale: Vec<String> = self
            .links
            .keys()
            .filter(|l| !routes.iter().any(|r| &r.interface == *l))
            .cloned()
            .collect();
        for link in stale {
            self.links.remove(&link);
            // The interface may be gone already, and its settings with it.
            if let Err(e) = self.os.resolved_revert(&link).await {
                tracing::debug!(%link, error = %format!("{e:#}"), "resolvectl revert");
            }
        }
        for r in routes {
            let want = (r.stub, r.zone.clone());
            if self.links.get(&r.interface) != Some(&want) {
                self.os
                    .resolved_configure(&r.interface, r.stub, &r.zone)
                    .await?;
                tracing::info!(interface = %r.interface, stub = %r.stub, zone = %r.zone, "systemd-resolved routes the zone to the stub");
                self.links.insert(r.interface.clone(), want);
            }
        }
        Ok(())
    }

    fn apply_resolv_conf(&mut self, routes: &[Route]) -> anyhow::Result<()> {
        let mut routes = routes.to_vec();
        routes.sort_by_key(|r| r.network);
        let first = &routes[0];
        if first.stub.port() != 53 {
            anyhow::bail!(
                "resolv.conf cannot name port {}: set [dns] stub-port = 53, or use systemd-resolved",
                first.stub.port()
            );
        }
        let zones: Vec<String> = routes.iter().map(|r| r.zone.clone()).collect();
        let text = render(&self.original_text(), first.stub.ip(), &zones);
        if self.written.as_deref() != Some(text.as_str()) {
            self.os.resolv_conf_write(&text)?;
            tracing::info!(path = %self.os.resolv_conf_path().display(), stub = %first.stub.ip(), "resolv.conf sends the zones to the stub");
            self.written = Some(text);
        }
        Ok(())
    }

    /// Puts the system back as it was.
    pub async fn restore(&mut self) {
        for (link, _) in std::mem::take(&mut self.links) {
            if let Err(e) = self.os.resolved_revert(&link).await {
                tracing::debug!(%link, error = %format!("{e:#}"), "resolvectl revert");
            }
        }
        if self.written.take().is_some() || self.os.resolv_conf_has_backup() {
            match self.os.resolv_conf_restore() {
                Ok(true) => {
                    tracing::info!(path = %self.os.resolv_conf_path().display(), "resolv.conf restored")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "could not restore resolv.conf");
                    self.error = Some(format!("restoring resolv.conf: {e:#}"));
                    return;
                }
            }
        }
        self.mode = SplitDnsMode::Off;
        self.error = None;
    }
}
