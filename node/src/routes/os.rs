//! The seam between the routes and the system: Warren's routing table and
//! rules (`ip`), the stateful filter (`nft`) and the kernel's switches.
//! [`HostRoutes`] is the real system; tests use `fake::FakeRoutes`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use ipnet::IpNet;
use warren_proto::routes::Forwarding;

use super::plan::Rule;
use super::{nft, system};

/// What the routes change and read in the system.
#[async_trait]
pub trait RouteOs: Send + Sync {
    /// Makes Warren's table hold exactly `wanted` (prefix -> interface).
    async fn sync_table(&self, wanted: &BTreeMap<IpNet, String>) -> anyhow::Result<()>;
    /// Makes the rules at Warren's priorities exactly `wanted`.
    async fn sync_rules(&self, wanted: &BTreeSet<Rule>) -> anyhow::Result<()>;
    /// Installs the filter ruleset `script` (table `inet warren`), replacing any.
    async fn apply_filter(&self, script: &str) -> anyhow::Result<()>;
    /// Removes the filter's table, if it is there.
    async fn delete_filter(&self) -> anyhow::Result<()>;
    /// Packets and bytes of one of the filter's counters; `None` without the table.
    async fn filter_counter(&self, name: &str) -> Option<(u64, u64)>;
    /// Whether the kernel forwards IPv4 and IPv6.
    fn forwarding(&self) -> Forwarding;
    /// Lets reverse-path filtering use the agent's socket mark.
    fn use_marks_for_reverse_path(&self);
}

/// The host itself, through `ip`, `nft` and `/proc/sys`.
pub struct HostRoutes;

#[async_trait]
impl RouteOs for HostRoutes {
    async fn sync_table(&self, wanted: &BTreeMap<IpNet, String>) -> anyhow::Result<()> {
        system::sync_table(wanted).await
    }

    async fn sync_rules(&self, wanted: &BTreeSet<Rule>) -> anyhow::Result<()> {
        system::sync_rules(wanted).await
    }

    async fn apply_filter(&self, script: &str) -> anyhow::Result<()> {
        nft::apply(script).await
    }

    async fn delete_filter(&self) -> anyhow::Result<()> {
        nft::delete().await
    }

    async fn filter_counter(&self, name: &str) -> Option<(u64, u64)> {
        nft::counter(name).await
    }

    fn forwarding(&self) -> Forwarding {
        system::forwarding()
    }

    fn use_marks_for_reverse_path(&self) {
        system::use_marks_for_reverse_path();
    }
}

/// A system in memory that records what was asked of it, for tests.
#[cfg(test)]
pub mod fake {
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::*;

    /// What the fake system holds now, and every call made to it.
    #[derive(Debug, Default)]
    pub struct FakeState {
        pub table: BTreeMap<IpNet, String>,
        pub rules: BTreeSet<Rule>,
        /// The filter ruleset installed.
        pub filter: Option<String>,
        /// One line per call, in order (`sync_table 2`, `apply_filter`, ...).
        pub calls: Vec<String>,
        /// While set, `nft` refuses every ruleset with this message.
        pub refuse_filter: Option<String>,
    }

    /// Clones share one state: keep one to look at what the routes did.
    #[derive(Debug, Clone, Default)]
    pub struct FakeRoutes(Arc<Mutex<FakeState>>);

    impl FakeRoutes {
        pub fn state(&self) -> MutexGuard<'_, FakeState> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    #[async_trait]
    impl RouteOs for FakeRoutes {
        async fn sync_table(&self, wanted: &BTreeMap<IpNet, String>) -> anyhow::Result<()> {
            let mut s = self.state();
            s.calls.push(format!("sync_table {}", wanted.len()));
            s.table = wanted.clone();
            Ok(())
        }

        async fn sync_rules(&self, wanted: &BTreeSet<Rule>) -> anyhow::Result<()> {
            let mut s = self.state();
            s.calls.push(format!("sync_rules {}", wanted.len()));
            s.rules = wanted.clone();
            Ok(())
        }

        async fn apply_filter(&self, script: &str) -> anyhow::Result<()> {
            let mut s = self.state();
            s.calls.push("apply_filter".to_owned());
            if let Some(e) = &s.refuse_filter {
                anyhow::bail!("nft refused the ruleset: {e}");
            }
            s.filter = Some(script.to_owned());
            Ok(())
        }

        async fn delete_filter(&self) -> anyhow::Result<()> {
            let mut s = self.state();
            s.calls.push("delete_filter".to_owned());
            s.filter = None;
            Ok(())
        }

        async fn filter_counter(&self, _name: &str) -> Option<(u64, u64)> {
            self.state().filter.as_ref().map(|_| (0, 0))
        }

        fn forwarding(&self) -> Forwarding {
            Forwarding {
                ipv4: true,
                ipv6: true,
            }
        }

        fn use_marks_for_reverse_path(&self) {
            self.state().calls.push("src_valid_mark".to_owned());
        }
    }
}
