//! The seam between split DNS and the system: systemd-resolved's link
//! settings (`resolvectl`) and the resolv.conf file with its backup.
//! [`HostResolver`] is the real system; tests use `fake::FakeResolver`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::resolv_conf::ResolvConf;
use super::resolved;

/// What split DNS changes and reads in the system.
#[async_trait]
pub trait ResolverOs: Send + Sync {
    /// Whether `resolvectl` is there to configure systemd-resolved.
    fn has_resolvectl(&self) -> bool;
    /// Points `interface` at `stub` for `zone` only.
    async fn resolved_configure(
        &self,
        interface: &str,
        stub: SocketAddr,
        zone: &str,
    ) -> anyhow::Result<()>;
    /// Drops what [`ResolverOs::resolved_configure`] set on `interface`.
    async fn resolved_revert(&self, interface: &str) -> anyhow::Result<()>;
    /// The resolv.conf managed, for logs.
    fn resolv_conf_path(&self) -> PathBuf;
    /// Whether a backup of the original resolv.conf exists (we edited it).
    fn resolv_conf_has_backup(&self) -> bool;
    /// The original (backed up) resolv.conf's text, or the current one.
    fn resolv_conf_original_text(&self) -> String;
    /// Writes resolv.conf, backing the original up first.
    fn resolv_conf_write(&self, text: &str) -> anyhow::Result<()>;
    /// Puts the original back; false if there was nothing to put back.
    fn resolv_conf_restore(&self) -> anyhow::Result<bool>;
}

/// The host itself: `resolvectl` and a file on disk.
pub struct HostResolver {
    file: ResolvConf,
}

impl HostResolver {
    /// resolv.conf at `path`, its backup in the state directory.
    pub fn new(path: PathBuf, state_dir: &Path) -> HostResolver {
        HostResolver {
            file: ResolvConf {
                path,
                backup: state_dir.join("dns").join("resolv.conf.backup"),
            },
        }
    }
}

#[async_trait]
impl ResolverOs for HostResolver {
    fn has_resolvectl(&self) -> bool {
        resolved::installed()
    }

    async fn resolved_configure(
        &self,
        interface: &str,
        stub: SocketAddr,
        zone: &str,
    ) -> anyhow::Result<()> {
        resolved::configure(interface, stub, zone).await
    }

    async fn resolved_revert(&self, interface: &str) -> anyhow::Result<()> {
        resolved::revert(interface).await
    }

    fn resolv_conf_path(&self) -> PathBuf {
        self.file.path.clone()
    }

    fn resolv_conf_has_backup(&self) -> bool {
        self.file.has_backup()
    }

    fn resolv_conf_original_text(&self) -> String {
        self.file.original_text()
    }

    fn resolv_conf_write(&self, text: &str) -> anyhow::Result<()> {
        self.file.write(text)
    }

    fn resolv_conf_restore(&self) -> anyhow::Result<bool> {
        self.file.restore()
    }
}

/// A resolver in memory that records what was asked of it, for tests.
#[cfg(test)]
pub mod fake {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::*;

    /// What the fake system holds now, and every call made to it.
    #[derive(Debug, Default)]
    pub struct FakeState {
        /// Whether `resolvectl` is installed.
        pub resolvectl: bool,
        /// resolved's link settings: interface -> (stub, zone).
        pub links: BTreeMap<String, (SocketAddr, String)>,
        /// resolv.conf's text now.
        pub resolv_conf: String,
        /// The original text, while a backup exists.
        pub backup: Option<String>,
        /// One line per change, in order (`configure warren0 ...`, `write`, ...).
        pub calls: Vec<String>,
    }

    /// Clones share one state: keep one to look at what split DNS did.
    #[derive(Debug, Clone, Default)]
    pub struct FakeResolver(Arc<Mutex<FakeState>>);

    impl FakeResolver {
        /// A system whose resolv.conf says `text`, with or without resolvectl.
        pub fn new(resolv_conf: &str, resolvectl: bool) -> FakeResolver {
            let fake = FakeResolver::default();
            {
                let mut s = fake.state();
                s.resolv_conf = resolv_conf.to_owned();
                s.resolvectl = resolvectl;
            }
            fake
        }

        pub fn state(&self) -> MutexGuard<'_, FakeState> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    #[async_trait]
    impl ResolverOs for FakeResolver {
        fn has_resolvectl(&self) -> bool {
            self.state().resolvectl
        }

        async fn resolved_configure(
            &self,
            interface: &str,
            stub: SocketAddr,
            zone: &str,
        ) -> anyhow::Result<()> {
            let mut s = self.state();
            anyhow::ensure!(s.resolvectl, "resolvectl not found");
            s.calls.push(format!("configure {interface} {stub} {zone}"));
            s.links
                .insert(interface.to_owned(), (stub, zone.to_owned()));
            Ok(())
        }

        async fn resolved_revert(&self, interface: &str) -> anyhow::Result<()> {
            let mut s = self.state();
            s.calls.push(format!("revert {interface}"));
            s.links.remove(interface);
            Ok(())
        }

        fn resolv_conf_path(&self) -> PathBuf {
            PathBuf::from("resolv.conf")
        }

        fn resolv_conf_has_backup(&self) -> bool {
            self.state().backup.is_some()
        }

        fn resolv_conf_original_text(&self) -> String {
            let s = self.state();
            s.backup.clone().unwrap_or_else(|| s.resolv_conf.clone())
        }

        fn resolv_conf_write(&self, text: &str) -> anyhow::Result<()> {
            let mut s = self.state();
            s.calls.push("write resolv.conf".to_owned());
            if s.backup.is_none() {
                s.backup = Some(s.resolv_conf.clone());
            }
            s.resolv_conf = text.to_owned();
            Ok(())
        }

        fn resolv_conf_restore(&self) -> anyhow::Result<bool> {
            let mut s = self.state();
            let Some(original) = s.backup.take() else {
                return Ok(false);
            };
            s.calls.push("restore resolv.conf".to_owned());
            s.resolv_conf = original;
            Ok(true)
        }
    }
}
