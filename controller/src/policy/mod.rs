//! Access policy (pure): the TOML document, its check against a network,
//! the compiler to per-member packet filters and peer sets, explain, and
//! the document's own tests. No I/O; the store and API call in here.
//!
//! # Layout
//! - [`document`]: parsing, syntax checks, the default document.
//! - [`view`]: the network facts the compiler reads; unknown-name checks.
//! - [`compile`]: per member, a [`warren_proto::filter::PacketFilter`] and peers.
//! - [`explain`]: one packet's verdict and deciding rule; `[[test]]` runs.

pub mod compile;
pub mod document;
pub mod explain;
pub mod view;

#[cfg(test)]
mod tests;

pub use compile::{compile, Compiled, MemberPolicy};
pub use document::{Location, Policy, Rule, TestTarget, DEFAULT_POLICY, MAX_POLICY_BYTES};
pub use explain::{explain, run_tests, Decision, TestOutcome};
pub use view::{NetworkView, PolicyMember};

fn at_text(at: &Option<Location>) -> String {
    at.map(|a| format!("{a}: ")).unwrap_or_default()
}

/// Why a policy document was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the policy is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("{}{message}", at_text(at))]
    Syntax {
        at: Option<Location>,
        message: String,
    },
    #[error("{}{name:?}: {why}", at_text(at))]
    BadName {
        at: Option<Location>,
        name: String,
        why: &'static str,
    },
    #[error("{}unknown {what} {name:?}", at_text(at))]
    Unknown {
        at: Option<Location>,
        what: &'static str,
        name: String,
    },
    #[error(
        "{}port {port:?}: name one port (tcp:6379, udp:53) or icmp",
        at_text(at)
    )]
    TestPort { at: Option<Location>, port: String },
    #[error("policy test failed: {test}: {got} ({failed} test(s) failed)")]
    TestFailed {
        test: String,
        got: String,
        failed: usize,
    },
}

impl PolicyError {
    /// A stable code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::TooLarge { .. } => "policy_too_large",
            PolicyError::Syntax { .. } => "policy_syntax",
            PolicyError::BadName { .. } | PolicyError::TestPort { .. } => "policy_invalid",
            PolicyError::Unknown { .. } => "policy_unknown_name",
            PolicyError::TestFailed { .. } => "policy_test_failed",
        }
    }
}

/// The policy in force in a snapshot, compiled for its members. A stored
/// document passed every check when it was set, so it parses; if it ever
/// does not (a database edited by hand), nothing is allowed: the network
/// fails closed, and says so in the log.
pub fn in_force(snapshot: &crate::store::NetworkSnapshot) -> Compiled {
    let (text, version) = snapshot.policy.text_and_version();
    let view = NetworkView::from_snapshot(snapshot, &snapshot.policy.tags);
    match Policy::parse(text) {
        Ok(policy) => compile(&policy, &snapshot.policy.grant_rules(), &view, version),
        Err(e) => {
            tracing::error!(network = %snapshot.network.id, version, error = %e,
                "the stored policy does not parse; denying everything");
            compile(&Policy::empty(), &[], &view, version)
        }
    }
}

/// A document that passed every check, with what it compiles to.
#[derive(Debug, Clone)]
pub struct Checked {
    pub policy: Policy,
    pub compiled: Compiled,
    pub tests: Vec<TestOutcome>,
}

/// Everything a document must pass before it is stored: size, syntax,
/// names that exist in the network, compilation, and its own tests.
pub fn check(
    text: &str,
    view: &NetworkView,
    version: u64,
    extra: &[Rule],
) -> Result<Checked, PolicyError> {
    let policy = Policy::parse(text)?;
    view.check_names(&policy)?;
    let compiled = compile(&policy, extra, view, version);
    let tests = run_tests(&policy, &compiled, view)?;
    Ok(Checked {
        policy,
        compiled,
        tests,
    })
}
