//! Explain (would this packet pass, and which rule decides) and the
//! document's own `[[test]]`s, both answered from the compiled filters.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use warren_proto::filter::{PortRange, Protocol};

use super::compile::Compiled;
use super::document::{Expect, Policy, TestTarget};
use super::view::NetworkView;
use super::PolicyError;

/// The answer for one packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that admits it (`allow[i]` or `grant:<id>`), if one does.
    pub rule: Option<String>,
    /// In words, for people.
    pub reason: String,
}

impl Decision {
    fn deny(reason: String) -> Self {
        Decision {
            allowed: false,
            rule: None,
            reason,
        }
    }
}

/// Would a new flow from member `from` to `to` on `port` be admitted?
/// `port` names one port (`tcp:6379`, `udp:53`) or `icmp`.
pub fn explain(
    compiled: &Compiled,
    view: &NetworkView,
    from: &str,
    to: &TestTarget,
    port: PortRange,
) -> Result<Decision, PolicyError> {
    let (protocol, number) = single_port(port)?;
    let source = view
        .member_named(from)
        .ok_or_else(|| PolicyError::Unknown {
            at: None,
            what: "member",
            name: from.to_string(),
        })?;
    let ip: IpAddr = match to {
        TestTarget::Ip(ip) => *ip,
        TestTarget::Member(name) => {
            let member = view
                .member_named(name)
                .ok_or_else(|| PolicyError::Unknown {
                    at: None,
                    what: "member",
                    name: name.clone(),
                })?;
            if !member.authorized {
                return Ok(Decision::deny(format!(
                    "{name} is not an authorized member"
                )));
            }
            IpAddr::V4(member.ipv4)
        }
    };
    if !source.authorized {
        return Ok(Decision::deny(format!(
            "{from} is not an authorized member"
        )));
    }
    if source.addresses().iter().any(|a| a.contains(&ip)) {
        return Ok(Decision {
            allowed: true,
            rule: None,
            reason: format!("{ip} is {from}'s own address; such traffic never leaves it"),
        });
    }
    let outbound = compiled.member(&source.node_id).filter.outbound;
    let host = IpNet::from(ip);
    let admitted = outbound.iter().find(|r| {
        r.dst.iter().any(|d| d.contains(&host))
            && r.ports.iter().any(|p| p.admits(protocol, number))
    });
    let served = view
        .members
        .iter()
        .filter(|m| m.authorized)
        .any(|m| m.addresses().iter().any(|a| a.contains(&host)))
        || view.routes.values().flatten().any(|r| r.contains(&host));
    Ok(match admitted {
        Some(rule) => Decision {
            allowed: true,
            rule: Some(rule.rule.clone()),
            reason: format!("{} allows {from} to reach {ip} on {port}", rule.rule),
        },
        None if !served => {
            Decision::deny(format!("no authorized member or approved route has {ip}"))
        }
        None => Decision::deny(format!("no rule allows {from} to reach {ip} on {port}")),
    })
}

fn single_port(port: PortRange) -> Result<(Protocol, u16), PolicyError> {
    match port.protocol {
        Protocol::Icmp => Ok((Protocol::Icmp, 0)),
        Protocol::Tcp | Protocol::Udp if port.first == port.last => Ok((port.protocol, port.first)),
        _ => Err(PolicyError::TestPort {
            at: None,
            port: port.to_string(),
        }),
    }
}

/// The outcome of one `[[test]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    pub index: usize,
    /// The test as text, with its place in the document.
    pub test: String,
    pub passed: bool,
    pub decision: Decision,
}

/// Runs every test of the document; `Err` names the first that fails.
pub fn run_tests(
    policy: &Policy,
    compiled: &Compiled,
    view: &NetworkView,
) -> Result<Vec<TestOutcome>, PolicyError> {
    let mut outcomes = Vec::new();
    for test in &policy.tests {
        let decision = explain(compiled, view, &test.from, &test.to, test.port)?;
        let passed = decision.allowed == (test.expect == Expect::Allow);
        outcomes.push(TestOutcome {
            index: test.index,
            test: test.to_string(),
            passed,
            decision,
        });
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    match outcomes.iter().find(|o| !o.passed) {
        Some(first) => Err(PolicyError::TestFailed {
            test: first.test.clone(),
            got: first.decision.reason.clone(),
            failed,
        }),
        None => Ok(outcomes),
    }
}
