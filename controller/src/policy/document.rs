//! The policy document as written: TOML read with unknown keys refused, and
//! every name in it checked for syntax and for groups it defines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use warren_proto::filter::{PortRange, Protocol};

use super::PolicyError;
use crate::names;

/// The largest document the controller reads, in bytes.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// What a new network starts with: everyone reaches everyone, visibly.
pub const DEFAULT_POLICY: &str = r#"# The access policy of this network. Anything no [[allow]] rule admits is
# denied. See docs/policy.md for the syntax.
#
# [groups]
# ops = ["laptop-ana", "tag:ci"]    # member names and tags

# Every member may reach every other member, and every approved subnet or
# exit route, on every port. Replace this rule to grant less.
[[allow]]
from = ["*"]
to = ["*"]
ports = ["*"]

# [[test]]
# from = "laptop-bo"
# to = "10.96.0.10"
# port = "tcp:6379"
# expect = "deny"
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(default)]
    groups: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    /// Groups that come from the OpenID provider: `group:NAME` then also
    /// holds the devices of the people the provider puts in NAME.
    #[serde(default, rename = "provider-groups")]
    provider_groups: Vec<Spanned<String>>,
    #[serde(default)]
    allow: Vec<RawAllow>,
    #[serde(default)]
    test: Vec<RawTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    from: Vec<Spanned<String>>,
    to: Vec<Spanned<String>>,
    ports: Vec<Spanned<PortRange>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    from: Spanned<String>,
    to: Spanned<String>,
    port: Spanned<PortRange>,
    expect: Expect,
}

/// What a `[[test]]` expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

/// Where in the document something is, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line and column (in characters) of a byte offset into `text`.
    pub(super) fn of(text: &str, offset: usize) -> Self {
        let mut end = offset.min(text.len());
        // Spans fall on character boundaries; never trust that to slice.
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Who a rule admits traffic from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Any,
    Member(String),
    Group(String),
    Tag(String),
    /// `user:EMAIL`: the devices that person signed in.
    User(String),
}

/// What a rule admits traffic to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Any,
    Member(String),
    Group(String),
    Tag(String),
    /// `user:EMAIL`: the devices that person signed in.
    User(String),
    /// `autogroup:self`: for each source a person signed in, the other
    /// devices of that person ("people reach their own devices").
    OwnDevices,
    Cidr(IpNet),
    Service(String),
    /// `site:NAME`: every prefix the site's primary routers serve (and
    /// the mapped prefixes that stand for them).
    Site(String),
}

/// A name in a group: a member or a tag (groups do not nest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEntry {
    Member(String),
    Tag(String),
}

/// One `[[allow]]` block (or a grant), named for counters and explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `allow[i]` for the document's i-th block, `grant:<id>` for a grant.
    pub name: String,
    pub from: Vec<(Source, Location)>,
    pub to: Vec<(Target, Location)>,
    pub ports: Vec<PortRange>,
}

impl Rule {
    /// A rule of one source and one target, as a grant is written; names
    /// are checked for syntax only.
    pub fn from_selectors(
        name: String,
        from: &str,
        to: &str,
        ports: Vec<PortRange>,
    ) -> Result<Rule, PolicyError> {
        let nowhere = Location { line: 0, column: 0 };
        let strip = |e: PolicyError| match e {
            PolicyError::BadName { name, why, .. } => PolicyError::BadName {
                at: None,
                name,
                why,
            },
            other => other,
        };
        Ok(Rule {
            name,
            from: vec![(source(from, nowhere).map_err(strip)?, nowhere)],
            to: vec![(target(to, nowhere).map_err(strip)?, nowhere)],
            ports,
        })
    }
}

/// Where a test sends its packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestTarget {
    Member(String),
    Ip(IpAddr),
}

impl fmt::Display for TestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestTarget::Member(m) => f.write_str(m),
            TestTarget::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// One `[[test]]` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTest {
    pub index: usize,
    pub at: Location,
    pub from: String,
    pub to: TestTarget,
    pub port: PortRange,
    pub expect: Expect,
}

impl fmt::Display for PolicyTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expect = match self.expect {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        };
        write!(
            f,
            "test[{}] ({}): from {:?} to {:?} port {} expect {expect}",
            self.index,
            self.at,
            self.from,
            self.to.to_string(),
            self.port
        )
    }
}

/// A parsed document whose names have valid syntax and whose groups exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub groups: BTreeMap<String, Vec<(GroupEntry, Location)>>,
    /// Tags declared ahead of any member holding them.
    pub declared_tags: BTreeSet<String>,
    /// Groups the OpenID provider fills (`provider-groups`); each is also
    /// in `groups`, with the members and tags the document adds, if any.
    pub provider_groups: BTreeSet<String>,
    pub rules: Vec<Rule>,
    pub tests: Vec<PolicyTest>,
}

impl Policy {
    /// A document with no rules: it allows nothing.
    pub fn empty() -> Policy {
        Policy {
            groups: BTreeMap::new(),
            declared_tags: BTreeSet::new(),
            provider_groups: BTreeSet::new(),
            rules: Vec::new(),
            tests: Vec::new(),
        }
    }

    /// Reads a document: size, TOML syntax, unknown keys, port syntax,
    /// name syntax, and groups that rules name but the document lacks.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                size: text.len(),
                limit: MAX_POLICY_BYTES,
            });
        }
        let raw: RawDocument = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            at: e.span().map(|s| Location::of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let at = |offset: usize| Location::of(text, offset);
        let mut groups = BTreeMap::new();
        for (name, entries) in &raw.groups {
            if !names::is_label(name) {
                return Err(PolicyError::BadName {
                    at: entries.first().map(|e| at(e.span().start)),
                    name: format!("group:{name}"),
                    why: "a group name is a DNS label (lowercase letters, digits, '-')",
                });
            }
            let mut parsed = Vec::new();
            for entry in entries {
                let location = at(entry.span().start);
                parsed.push((group_entry(entry.get_ref(), location)?, location));
            }
            groups.insert(name.clone(), parsed);
        }
        let mut provider_groups = BTreeSet::new();
        for group in &raw.provider_groups {
            let name = group
                .get_ref()
                .strip_prefix("group:")
                .unwrap_or(group.get_ref());
            if !names::is_label(name) {
                return Err(PolicyError::BadName {
                    at: Some(at(group.span().start)),
                    name: format!("group:{name}"),
                    why: "a group name is a DNS label (lowercase letters, digits, '-')",
                });
            }
            groups.entry(name.to_string()).or_insert_with(Vec::new);
            provider_groups.insert(name.to_string());
        }
        let mut declared_tags = BTreeSet::new();
        for tag in &raw.tags {
            let name = tag.get_ref().strip_prefix("tag:").unwrap_or(tag.get_ref());
            check_label(name, "tag", at(tag.span().start))?;
            declared_tags.insert(name.to_string());
        }
        let mut rules = Vec::new();
        for (i, allow) in raw.allow.iter().enumerate() {
            let name = format!("allow[{i}]");
            let from = allow
                .from
                .iter()
                .map(|s| source(s.get_ref(), at(s.span().start)).map(|x| (x, at(s.span().start))))
                .collect::<Result<Vec<_>, _>>()?;
            let to = allow
                .to
                .iter()
                .map(|s| target(s.get_ref(), at(s.span().start)).map(|x| (x, at(s.span().start))))
                .collect::<Result<Vec<_>, _>>()?;
            let ports = allow.ports.iter().map(|p| *p.get_ref()).collect();
            let rule = Rule {
                name,
                from,
                to,
                ports,
            };
            check_groups_defined(&rule, &groups)?;
            rules.push(rule);
        }
        let mut tests = Vec::new();
        for (index, t) in raw.test.iter().enumerate() {
            let location = at(t.from.span().start);
            let port = *t.port.get_ref();
            if port.protocol == Protocol::Any
                || (port.protocol != Protocol::Icmp && port.first != port.last)
            {
                return Err(PolicyError::TestPort {
                    at: Some(at(t.port.span().start)),
                    port: port.to_string(),
                });
            }
            check_label(t.from.get_ref(), "member", location)?;
            let to = match t.to.get_ref().parse::<IpAddr>() {
                Ok(ip) => TestTarget::Ip(ip),
                Err(_) => {
                    check_label(t.to.get_ref(), "member", at(t.to.span().start))?;
                    TestTarget::Member(t.to.get_ref().clone())
                }
            };
            tests.push(PolicyTest {
                index,
                at: location,
                from: t.from.get_ref().clone(),
                to,
                port,
                expect: t.expect,
            });
        }
        Ok(Policy {
            groups,
            declared_tags,
            provider_groups,
            rules,
            tests,
        })
    }
}

fn check_label(name: &str, what: &'static str, at: Location) -> Result<(), PolicyError> {
    if names::is_label(name) {
        Ok(())
    } else {
        Err(PolicyError::BadName {
            at: Some(at),
            name: name.to_string(),
            why: match what {
                "tag" => "a tag is tag: and a DNS label (lowercase letters, digits, '-')",
                _ => "a member name is a DNS label (lowercase letters, digits, '-')",
            },
        })
    }
}

fn group_entry(text: &str, at: Location) -> Result<GroupEntry, PolicyError> {
    if let Some(tag) = text.strip_prefix("tag:") {
        check_label(tag, "tag", at)?;
        return Ok(GroupEntry::Tag(tag.to_string()));
    }
    if text.starts_with("group:") {
        return Err(PolicyError::BadName {
            at: Some(at),
            name: text.to_string(),
            why: "groups hold member names and tags; they do not nest",
        });
    }
    check_label(text, "member", at)?;
    Ok(GroupEntry::Member(text.to_string()))
}

fn source(text: &str, at: Location) -> Result<Source, PolicyError> {
    Ok(match target(text, at)? {
        Target::Any => Source::Any,
        Target::Member(m) => Source::Member(m),
        Target::Group(g) => Source::Group(g),
        Target::Tag(t) => Source::Tag(t),
        Target::User(u) => Source::User(u),
        Target::Cidr(_) | Target::Service(_) | Target::Site(_) | Target::OwnDevices => {
            return Err(PolicyError::BadName {
                at: Some(at),
                name: text.to_string(),
                why: "`from` names members, group:NAME, tag:NAME, user:EMAIL or *",
            })
        }
    })
}

fn target(text: &str, at: Location) -> Result<Target, PolicyError> {
    if text == "*" {
        return Ok(Target::Any);
    }
    if let Some(group) = text.strip_prefix("group:") {
        if !names::is_label(group) {
            return Err(PolicyError::BadName {
                at: Some(at),
                name: text.to_string(),
                why: "a group name is a DNS label (lowercase letters, digits, '-')",
            });
        }
        return Ok(Target::Group(group.to_string()));
    }
    if let Some(tag) = text.strip_prefix("tag:") {
        check_label(tag, "tag", at)?;
        return Ok(Target::Tag(tag.to_string()));
    }
    if text == "autogroup:self" {
        return Ok(Target::OwnDevices);
    }
    if text.starts_with("autogroup:") {
        return Err(PolicyError::BadName {
            at: Some(at),
            name: text.to_string(),
            why: "the only autogroup is autogroup:self (a person's own devices)",
        });
    }
    if let Some(user) = text.strip_prefix("user:") {
        if !names::is_email(user) {
            return Err(PolicyError::BadName {
                at: Some(at),
                name: text.to_string(),
                why: "a user is user: and the e-mail address they sign in with",
            });
        }
        return Ok(Target::User(user.to_ascii_lowercase()));
    }
    if let Some(site) = text.strip_prefix("site:") {
        if warren_proto::site::check_site_name(site).is_err() {
            return Err(PolicyError::BadName {
                at: Some(at),
                name: text.to_string(),
                why: "a site is site: and the name its routers advertise for, e.g. site:m",
            });
        }
        return Ok(Target::Site(site.to_string()));
    }
    if let Some(service) = text.strip_prefix("service:") {
        if !names::is_label(service) {
            return Err(PolicyError::BadName {
                at: Some(at),
                name: text.to_string(),
                why: "a service name is the label it is published under, e.g. service:postgres",
            });
        }
        return Ok(Target::Service(service.to_string()));
    }
    if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| PolicyError::BadName {
            at: Some(at),
            name: text.to_string(),
            why: "not a CIDR prefix such as 10.96.0.0/12",
        })?;
        return Ok(Target::Cidr(net.trunc()));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Target::Cidr(IpNet::from(ip)));
    }
    check_label(text, "member", at)?;
    Ok(Target::Member(text.to_string()))
}

pub(super) fn check_groups_defined(
    rule: &Rule,
    groups: &BTreeMap<String, Vec<(GroupEntry, Location)>>,
) -> Result<(), PolicyError> {
    let named = rule
        .from
        .iter()
        .filter_map(|(s, at)| match s {
            Source::Group(g) => Some((g, *at)),
            _ => None,
        })
        .chain(rule.to.iter().filter_map(|(t, at)| match t {
            Target::Group(g) => Some((g, *at)),
            _ => None,
        }));
    for (group, at) in named {
        if !groups.contains_key(group) {
            return Err(PolicyError::Unknown {
                at: Some(at),
                what: "group",
                name: format!("group:{group}"),
            });
        }
    }
    Ok(())
}
