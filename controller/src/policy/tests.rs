//! Unit tests of the policy document, compiler, explain and tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use warren_proto::service::{ServiceProto, ServiceSpec};
use warren_proto::{NodeId, NodePrivateKey};

use super::document::{Source, Target};
use super::*;

const ISSUE_EXAMPLE: &str = r#"
[groups]
ops = ["laptop-ana", "tag:ci"]        # member names and tags
dev = ["laptop-bo"]

[[allow]]
from = ["group:ops"]
to = ["10.96.0.0/12"]                 # a subnet route, or part of one
ports = ["tcp:6379"]

[[allow]]
from = ["group:dev"]
to = ["master"]                       # a member name
ports = ["tcp:3000", "icmp"]

[[test]]
from = "laptop-bo"
to = "10.96.0.10"
port = "tcp:6379"
expect = "deny"
"#;

struct Lab {
    view: NetworkView,
}

impl Lab {
    fn new() -> Self {
        Lab {
            view: NetworkView::default(),
        }
    }

    fn member(mut self, name: &str, tags: &[&str]) -> Self {
        let n = self.view.members.len() as u8 + 2;
        self.view.members.push(PolicyMember {
            node_id: NodeId::from_key(&NodePrivateKey::generate().public_key()),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ipv4: Ipv4Addr::new(10, 147, 0, n),
            ipv6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(n)),
            authorized: true,
            owner: None,
            owner_groups: BTreeSet::new(),
        });
        self
    }

    /// A member `owner` signed in, who is in `groups` at the provider.
    fn owned(mut self, name: &str, owner: &str, groups: &[&str]) -> Self {
        self = self.member(name, &[]);
        if let Some(m) = self.view.members.last_mut() {
            m.owner = Some(owner.into());
            m.owner_groups = groups.iter().map(|g| g.to_string()).collect();
        }
        self
    }

    fn pending(mut self, name: &str) -> Self {
        self = self.member(name, &[]);
        if let Some(m) = self.view.members.last_mut() {
            m.authorized = false;
        }
        self
    }

    fn route(mut self, name: &str, prefix: &str) -> Self {
        let node = self.node(name);
        self.view
            .routes
            .entry(node)
            .or_default()
            .insert(prefix.parse().unwrap());
        self
    }

    fn service(mut self, name: &str, service: &str, proto: ServiceProto, port: u16) -> Self {
        let node = self.node(name);
        self.view.services.push((
            node,
            ServiceSpec {
                name: service.into(),
                proto,
                port,
                txt: vec![],
            },
        ));
        self
    }

    fn node(&self, name: &str) -> NodeId {
        self.view.member_named(name).unwrap().node_id
    }

    fn v4(&self, name: &str) -> IpNet {
        IpNet::from(std::net::IpAddr::V4(
            self.view.member_named(name).unwrap().ipv4,
        ))
    }

    fn names(&self, nodes: &BTreeSet<NodeId>) -> Vec<String> {
        nodes
            .iter()
            .map(|n| {
                self.view
                    .members
                    .iter()
                    .find(|m| m.node_id == *n)
                    .unwrap()
                    .name
                    .clone()
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn explain(&self, compiled: &Compiled, from: &str, to: &str, port: &str) -> Decision {
        let to = match to.parse() {
            Ok(ip) => TestTarget::Ip(ip),
            Err(_) => TestTarget::Member(to.into()),
        };
        explain(compiled, &self.view, from, &to, port.parse().unwrap()).unwrap()
    }
}

fn cluster() -> Lab {
    Lab::new()
        .member("laptop-ana", &[])
        .member("ci-runner", &["ci"])
        .member("laptop-bo", &[])
        .member("master", &[])
        .route("master", "10.96.0.0/12")
}

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn issue_example_splits_the_service_range_by_port_and_group() {
    let lab = cluster();
    let checked = check(ISSUE_EXAMPLE, &lab.view, 7, &[]).unwrap();
    let c = &checked.compiled;
    assert_eq!(checked.tests.len(), 1);
    assert!(checked.tests[0].passed);

    let ana = c.member(&lab.node("laptop-ana"));
    assert_eq!(ana.filter.policy_version, 7);
    assert_eq!(ana.filter.outbound.len(), 1);
    assert_eq!(ana.filter.outbound[0].rule, "allow[0]");
    assert_eq!(ana.filter.outbound[0].dst, vec![p("10.96.0.0/12")]);
    assert_eq!(
        ana.filter.outbound[0].ports,
        vec!["tcp:6379".parse().unwrap()]
    );
    assert!(ana.filter.inbound.is_empty());
    assert_eq!(lab.names(&ana.peers), vec!["master"]);

    let master = c.member(&lab.node("master"));
    assert_eq!(
        lab.names(&master.peers),
        vec!["ci-runner", "laptop-ana", "laptop-bo"]
    );
    let redis = &master.filter.inbound[0];
    assert_eq!(redis.rule, "allow[0]");
    assert!(redis.src.contains(&lab.v4("laptop-ana")));
    assert!(redis.src.contains(&lab.v4("ci-runner")));
    assert!(!redis.src.contains(&lab.v4("laptop-bo")));
    let web = &master.filter.inbound[1];
    assert_eq!(web.rule, "allow[1]");
    assert_eq!(web.src.len(), 2, "laptop-bo's IPv4 and IPv6");
    assert!(web.dst.contains(&lab.v4("master")));
    assert!(!web.dst.contains(&p("10.96.0.0/12")));

    let bo = c.member(&lab.node("laptop-bo"));
    assert_eq!(lab.names(&bo.peers), vec!["master"]);

    let yes = lab.explain(c, "laptop-ana", "10.96.0.10", "tcp:6379");
    assert!(yes.allowed);
    assert_eq!(yes.rule.as_deref(), Some("allow[0]"));
    let no = lab.explain(c, "laptop-ana", "10.96.0.20", "tcp:443");
    assert!(!no.allowed, "{no:?}");
    assert_eq!(no.rule, None);
    assert!(no.reason.contains("no rule allows"), "{}", no.reason);
    let web = lab.explain(c, "laptop-bo", "master", "tcp:3000");
    assert_eq!(web.rule.as_deref(), Some("allow[1]"));
    assert!(lab.explain(c, "laptop-bo", "master", "icmp").allowed);
    assert!(!lab.explain(c, "laptop-bo", "master", "tcp:22").allowed);
    assert!(
        !lab.explain(c, "laptop-bo", "10.96.0.10", "tcp:6379")
            .allowed
    );
    assert!(!lab.explain(c, "laptop-ana", "laptop-bo", "icmp").allowed);
    let bo_v6 = lab.view.member_named("laptop-bo").unwrap().ipv6.to_string();
    assert!(!lab.explain(c, "laptop-ana", &bo_v6, "icmp").allowed);
    let master_v6 = lab.view.member_named("master").unwrap().ipv6.to_string();
    assert!(lab.explain(c, "laptop-bo", &master_v6, "tcp:3000").allowed);
    assert!(!lab.explain(c, "master", "laptop-ana", "tcp:6379").allowed);
}

#[test]
fn the_default_lets_everyone_reach_everyone_and_every_route() {
    let lab = cluster().pending("waiting");
    let checked = check(DEFAULT_POLICY, &lab.view, 1, &[]).unwrap();
    let c = &checked.compiled;
    assert_eq!(c.members.len(), 4, "the pending member gets nothing");
    let ana = c.member(&lab.node("laptop-ana"));
    assert_eq!(
        lab.names(&ana.peers),
        vec!["ci-runner", "laptop-bo", "master"]
    );
    assert!(ana
        .filter
        .outbound
        .iter()
        .any(|r| r.dst.contains(&p("10.96.0.0/12"))));
    let d = lab.explain(c, "laptop-ana", "10.96.0.10", "tcp:443");
    assert_eq!(d.rule.as_deref(), Some("allow[0]"));
    assert!(lab.explain(c, "laptop-bo", "laptop-ana", "udp:53").allowed);
    let ana_v6 = lab
        .view
        .member_named("laptop-ana")
        .unwrap()
        .ipv6
        .to_string();
    assert!(
        lab.explain(c, "laptop-bo", &ana_v6, "tcp:22").allowed,
        "IPv6 too"
    );
    let pending = lab.explain(c, "laptop-ana", "waiting", "tcp:22");
    assert!(!pending.allowed);
    assert!(
        pending.reason.contains("not an authorized member"),
        "{}",
        pending.reason
    );
    assert!(c.member(&lab.node("waiting")).peers.is_empty());
    let master = c.member(&lab.node("master"));
    assert!(!master.peers.contains(&lab.node("waiting")));
}

#[test]
fn a_member_policy_gives_nothing_to_sees_no_peers() {
    let lab = cluster();
    let doc = r#"
[[allow]]
from = ["laptop-ana"]
to = ["master"]
ports = ["tcp:22"]
"#;
    let c = check(doc, &lab.view, 2, &[]).unwrap().compiled;
    let bo = c.member(&lab.node("laptop-bo"));
    assert!(bo.peers.is_empty());
    assert!(bo.filter.inbound.is_empty() && bo.filter.outbound.is_empty());
    assert_eq!(
        lab.names(&c.member(&lab.node("master")).peers),
        vec!["laptop-ana"]
    );
}

#[test]
fn a_service_target_admits_only_the_published_port() {
    let lab = cluster()
        .member("db", &[])
        .service("db", "postgres", ServiceProto::Tcp, 5432);
    let doc = r#"
[[allow]]
from = ["laptop-ana"]
to = ["service:postgres"]
ports = ["*"]
"#;
    let c = check(doc, &lab.view, 2, &[]).unwrap().compiled;
    assert!(lab.explain(&c, "laptop-ana", "db", "tcp:5432").allowed);
    assert!(!lab.explain(&c, "laptop-ana", "db", "tcp:22").allowed);
    let narrower = doc.replace("\"*\"", "\"udp:53\"");
    let c = check(&narrower, &lab.view, 3, &[]).unwrap().compiled;
    assert!(!lab.explain(&c, "laptop-ana", "db", "tcp:5432").allowed);
}

#[test]
fn a_cidr_may_name_part_of_a_route_or_overlay_addresses() {
    let lab = cluster();
    let doc = r#"
[[allow]]
from = ["laptop-ana"]
to = ["10.96.0.10", "10.147.0.0/16"]
ports = ["tcp:443"]
"#;
    let c = check(doc, &lab.view, 2, &[]).unwrap().compiled;
    assert!(
        lab.explain(&c, "laptop-ana", "10.96.0.10", "tcp:443")
            .allowed
    );
    assert!(
        !lab.explain(&c, "laptop-ana", "10.96.0.11", "tcp:443")
            .allowed
    );
    assert!(
        lab.explain(&c, "laptop-ana", "laptop-bo", "tcp:443")
            .allowed
    );
    let master = c.member(&lab.node("master"));
    let inbound: Vec<_> = master
        .filter
        .inbound
        .iter()
        .flat_map(|r| r.dst.clone())
        .collect();
    assert!(inbound.contains(&p("10.96.0.10/32")));
    assert!(!inbound.contains(&p("10.96.0.0/12")));
}

#[test]
fn extra_rules_such_as_grants_keep_their_names() {
    let lab = cluster();
    let doc = "[[allow]]\nfrom = [\"laptop-ana\"]\nto = [\"master\"]\nports = [\"tcp:22\"]\n";
    let policy = Policy::parse(doc).unwrap();
    let grant = Rule {
        name: "grant:abc".into(),
        from: vec![(
            Source::Member("laptop-bo".into()),
            Location { line: 0, column: 0 },
        )],
        to: vec![(
            Target::Member("master".into()),
            Location { line: 0, column: 0 },
        )],
        ports: vec!["tcp:3000".parse().unwrap()],
    };
    let c = compile(&policy, &[grant], &lab.view, 4);
    let d = lab.explain(&c, "laptop-bo", "master", "tcp:3000");
    assert_eq!(d.rule.as_deref(), Some("grant:abc"));
    let c = compile(&policy, &[], &lab.view, 4);
    assert!(!lab.explain(&c, "laptop-bo", "master", "tcp:3000").allowed);
}

#[test]
fn a_failing_test_is_named_with_its_index_and_text() {
    let lab = cluster();
    let doc = ISSUE_EXAMPLE.replace("expect = \"deny\"", "expect = \"allow\"");
    let err = check(&doc, &lab.view, 2, &[]).unwrap_err();
    assert_eq!(err.code(), "policy_test_failed");
    let text = err.to_string();
    assert!(text.contains("test[0]"), "{text}");
    assert!(
        text.contains("laptop-bo") && text.contains("10.96.0.10"),
        "{text}"
    );
    assert!(text.contains("line 17"), "{text}");
}

#[test]
fn syntax_errors_say_where_and_what() {
    let err =
        Policy::parse("[[allow]]\nfrom = [\"*\"]\nto = [\"*\"]\nports = [\"*\"]\ncolour = 1\n")
            .unwrap_err();
    assert_eq!(err.code(), "policy_syntax");
    let text = err.to_string();
    assert!(text.starts_with("line 5"), "{text}");
    assert!(text.contains("colour"), "{text}");

    let err = Policy::parse("[[allow]]\nfrom = [\"*\"]\nto = [\"*\"]\nports = [\"tcp:99999\"]\n")
        .unwrap_err();
    assert!(err.to_string().starts_with("line 4"), "{err}");

    let err = Policy::parse("[[allow]]\nfrom = [\"group:nope\"]\nto = [\"*\"]\nports = [\"*\"]\n")
        .unwrap_err();
    assert_eq!(err.code(), "policy_unknown_name");
    assert!(err.to_string().contains("group:nope"), "{err}");

    let err = Policy::parse("[[allow]]\nfrom = [\"10.0.0.0/8\"]\nto = [\"*\"]\nports = [\"*\"]\n")
        .unwrap_err();
    assert_eq!(err.code(), "policy_invalid");

    let err = Policy::parse(
        "[[test]]\nfrom = \"a\"\nto = \"b\"\nport = \"tcp:1-9\"\nexpect = \"deny\"\n",
    )
    .unwrap_err();
    assert_eq!(err.code(), "policy_invalid");
    let err =
        Policy::parse("[[test]]\nfrom = \"a\"\nto = \"b\"\nport = \"tcp:1\"\nexpect = \"maybe\"\n")
            .unwrap_err();
    assert_eq!(err.code(), "policy_syntax");
}

#[test]
fn locations_count_characters_not_bytes_and_never_split_one() {
    // The bad group name is reported at its first entry, after "é" = [.
    let text = "# é ü\n[groups]\n\"é\" = [\"ö\"]\n";
    let err = Policy::parse(text).unwrap_err();
    assert!(err.to_string().starts_with("line 3, column 8"), "{err}");
    assert_eq!(Location::of("é", 1), Location { line: 1, column: 1 });
    assert_eq!(Location::of("aé\nb", 99), Location { line: 2, column: 2 });
}

#[test]
fn hostile_documents_are_refused_without_panicking() {
    let huge = format!("# {}\n", "x".repeat(MAX_POLICY_BYTES));
    assert!(matches!(
        Policy::parse(&huge),
        Err(PolicyError::TooLarge { .. })
    ));
    let deep = format!("x = {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(Policy::parse(&deep).unwrap_err().code(), "policy_syntax");
    let deep_tables = format!("x = {}1{}", "{a = ".repeat(5_000), "}".repeat(5_000));
    assert_eq!(
        Policy::parse(&deep_tables).unwrap_err().code(),
        "policy_syntax"
    );
    for junk in [
        "\u{0}",
        "[[allow]",
        "= =",
        "[groups]\nops = 3",
        "\u{feff}[x",
    ] {
        assert!(Policy::parse(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn names_the_network_lacks_are_refused() {
    let lab = cluster()
        .member("db", &[])
        .service("db", "postgres", ServiceProto::Tcp, 5432);
    let rule = |from: &str, to: &str| {
        format!("[[allow]]\nfrom = [\"{from}\"]\nto = [\"{to}\"]\nports = [\"*\"]\n")
    };
    for (from, to, bad) in [
        ("laptop-zed", "*", "laptop-zed"),
        ("*", "tag:db", "tag:db"),
        ("*", "service:redis", "service:redis"),
    ] {
        let err = check(&rule(from, to), &lab.view, 2, &[]).unwrap_err();
        assert_eq!(err.code(), "policy_unknown_name", "{err}");
        assert!(err.to_string().contains(bad), "{err}");
        assert!(err.to_string().starts_with("line "), "{err}");
    }
    assert!(check(&rule("tag:ci", "service:postgres"), &lab.view, 2, &[]).is_ok());
    let declared = format!("tags = [\"tag:db\"]\n{}", rule("*", "tag:db"));
    assert!(check(&declared, &lab.view, 2, &[]).is_ok());
    let group = "[groups]\nops = [\"laptop-zed\"]\n";
    assert_eq!(
        check(group, &lab.view, 2, &[]).unwrap_err().code(),
        "policy_unknown_name"
    );
    let test =
        "[[test]]\nfrom = \"laptop-zed\"\nto = \"master\"\nport = \"icmp\"\nexpect = \"deny\"\n";
    assert_eq!(
        check(test, &lab.view, 2, &[]).unwrap_err().code(),
        "policy_unknown_name"
    );
}

#[test]
fn compilation_is_deterministic() {
    let lab = cluster();
    let a = check(ISSUE_EXAMPLE, &lab.view, 2, &[]).unwrap().compiled;
    let mut shuffled = lab.view.clone();
    shuffled.members.reverse();
    let b = check(ISSUE_EXAMPLE, &shuffled, 2, &[]).unwrap().compiled;
    assert_eq!(a, b);
}

#[test]
fn every_member_to_every_member_compiles_to_the_pools_not_the_membership() {
    let mut lab = cluster().pending("waiting");
    lab.view.pools = vec![p("10.147.0.0/16"), p("fd00::/64")];
    let c = check(DEFAULT_POLICY, &lab.view, 1, &[]).unwrap().compiled;
    assert!(c.all_peers);
    let ana = lab.node("laptop-ana");
    let master = lab.node("master");
    assert!(c.sees(&ana, &master) && c.sees(&master, &ana));
    assert!(!c.sees(&ana, &ana), "never its own peer");
    assert!(
        !c.sees(&ana, &lab.node("waiting")),
        "a pending member is nobody's peer"
    );
    let peers = c.peers_of(&ana);
    assert_eq!(
        peers.len(),
        lab.view.members.iter().filter(|m| m.authorized).count() - 1
    );
    // The master's inbound rule: from the pools and the routes members serve,
    // to its own addresses and its route; a few prefixes, whatever the size.
    let inbound = &c.member(&master).filter.inbound;
    assert_eq!(inbound.len(), 1);
    assert_eq!(
        inbound[0].src,
        vec![p("10.96.0.0/12"), p("10.147.0.0/16"), p("fd00::/64")]
    );
    assert!(inbound[0].dst.contains(&p("10.96.0.0/12")));
    // Ana's way out: to the pools and the route.
    let outbound = &c.member(&ana).filter.outbound;
    assert_eq!(outbound.len(), 1);
    assert_eq!(
        outbound[0].dst,
        vec![p("10.96.0.0/12"), p("10.147.0.0/16"), p("fd00::/64")]
    );
    // And explain still reads it the same.
    assert!(lab.explain(&c, "laptop-ana", "master", "tcp:22").allowed);
    assert!(
        lab.explain(&c, "laptop-ana", "10.96.0.10", "udp:53")
            .allowed
    );
}

fn people() -> Lab {
    Lab::new()
        .owned("ana-laptop", "ana@example.com", &["ops"])
        .owned("ana-phone", "ana@example.com", &["ops"])
        .owned("bo-laptop", "bo@example.com", &["data-team"])
        .member("master", &["k8s"])
        .member("redis", &[])
}

#[test]
fn users_and_provider_groups_name_the_devices_people_signed_in() {
    let lab = people();
    let doc = r#"
provider-groups = ["ops", "group:data-team"]
[groups]
data-team = ["tag:k8s"]

[[allow]]
from = ["group:ops"]
to = ["master"]
ports = ["tcp:6443"]

[[allow]]
from = ["user:Bo@Example.com"]
to = ["redis"]
ports = ["tcp:6379"]

[[allow]]
from = ["group:data-team"]
to = ["user:ana@example.com"]
ports = ["tcp:22"]
"#;
    let c = check(doc, &lab.view, 3, &[]).unwrap().compiled;
    assert!(lab.explain(&c, "ana-laptop", "master", "tcp:6443").allowed);
    assert!(lab.explain(&c, "ana-phone", "master", "tcp:6443").allowed);
    assert!(!lab.explain(&c, "bo-laptop", "master", "tcp:6443").allowed);
    assert!(lab.explain(&c, "bo-laptop", "redis", "tcp:6379").allowed);
    assert!(!lab.explain(&c, "ana-laptop", "redis", "tcp:6379").allowed);
    // group:data-team holds bo's devices (provider) and tag:k8s (document).
    assert!(lab.explain(&c, "bo-laptop", "ana-phone", "tcp:22").allowed);
    assert!(lab.explain(&c, "master", "ana-laptop", "tcp:22").allowed);
    assert!(!lab.explain(&c, "redis", "ana-laptop", "tcp:22").allowed);
    assert_eq!(
        lab.names(&c.member(&lab.node("bo-laptop")).peers),
        vec!["ana-laptop", "ana-phone", "redis"]
    );
}

#[test]
fn a_group_the_provider_fills_is_not_the_document_s_unless_declared() {
    let lab = people();
    let doc = "[[allow]]\nfrom = [\"group:ops\"]\nto = [\"master\"]\nports = [\"icmp\"]\n";
    let err = check(doc, &lab.view, 3, &[]).unwrap_err();
    assert!(err.to_string().contains("group:ops"), "{err}");
    for bad in [
        "user:ana",
        "user:@example.com",
        "user:a b@example.com",
        "autogroup:owner",
    ] {
        let doc = format!("[[allow]]\nfrom = [\"*\"]\nto = [\"{bad}\"]\nports = [\"icmp\"]\n");
        assert!(Policy::parse(&doc).is_err(), "{bad}");
    }
    let doc = "[[allow]]\nfrom = [\"autogroup:self\"]\nto = [\"*\"]\nports = [\"icmp\"]\n";
    assert!(Policy::parse(doc).is_err());
    let doc = "provider-groups = [\"Ops!\"]\n";
    assert!(Policy::parse(doc).is_err());
}

#[test]
fn autogroup_self_lets_people_reach_only_their_own_devices() {
    let lab = people();
    let doc = "[[allow]]\nfrom = [\"*\"]\nto = [\"autogroup:self\"]\nports = [\"tcp:22\"]\n";
    let c = check(doc, &lab.view, 3, &[]).unwrap().compiled;
    assert!(lab.explain(&c, "ana-laptop", "ana-phone", "tcp:22").allowed);
    assert!(lab.explain(&c, "ana-phone", "ana-laptop", "tcp:22").allowed);
    assert!(!lab.explain(&c, "ana-phone", "ana-laptop", "tcp:80").allowed);
    assert!(!lab.explain(&c, "bo-laptop", "ana-laptop", "tcp:22").allowed);
    assert!(!lab.explain(&c, "ana-laptop", "bo-laptop", "tcp:22").allowed);
    assert!(!lab.explain(&c, "master", "redis", "tcp:22").allowed);
    assert_eq!(
        lab.names(&c.member(&lab.node("ana-laptop")).peers),
        vec!["ana-phone"]
    );
    assert!(c.member(&lab.node("bo-laptop")).peers.is_empty());
}

#[test]
fn a_grant_may_name_a_person() {
    let lab = people();
    let policy = Policy::parse("").unwrap();
    let grant = Rule::from_selectors(
        "grant:g1".into(),
        "user:ana@example.com",
        "redis",
        vec!["tcp:6379".parse().unwrap()],
    )
    .unwrap();
    let c = compile(&policy, &[grant], &lab.view, 4);
    let d = lab.explain(&c, "ana-phone", "redis", "tcp:6379");
    assert_eq!(d.rule.as_deref(), Some("grant:g1"));
    assert!(!lab.explain(&c, "bo-laptop", "redis", "tcp:6379").allowed);
}
