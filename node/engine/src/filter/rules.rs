//! The compiled rules of one filter: first match, explain and hit counters.

use std::collections::BTreeMap;
use std::net::IpAddr;

use warren_proto::filter::{
    Direction, Explanation, FilterRule, PacketFilter, Protocol, RuleHits, Verdict,
};

use super::index::RuleIndex;

/// The rules of one direction, in order, with their index and hit counters.
#[derive(Debug)]
struct Rules {
    rules: Vec<FilterRule>,
    hits: Vec<u64>,
    index: RuleIndex,
}

impl Rules {
    fn new(rules: Vec<FilterRule>) -> Self {
        Rules {
            hits: vec![0; rules.len()],
            index: RuleIndex::new(&rules),
            rules,
        }
    }

    /// The first rule, in order, that admits the flow.
    fn first_match(&self, src: IpAddr, dst: IpAddr, protocol: Protocol, port: u16) -> Option<u32> {
        let admits = |i: &u32| {
            self.rules
                .get(*i as usize)
                .is_some_and(|r| r.admits(src, dst, protocol, port))
        };
        self.index.first_match(src, dst, protocol, port, admits)
    }
}

/// A compiled [`PacketFilter`]: both directions, indexed, with hit counters.
#[derive(Debug)]
pub struct CompiledFilter {
    policy_version: u64,
    inbound: Rules,
    outbound: Rules,
}

impl CompiledFilter {
    pub fn new(filter: PacketFilter) -> Self {
        CompiledFilter {
            policy_version: filter.policy_version,
            inbound: Rules::new(filter.inbound),
            outbound: Rules::new(filter.outbound),
        }
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    fn rules(&self, direction: Direction) -> &Rules {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    /// The index of the first rule that admits a new flow, if any.
    pub(crate) fn first_match(
        &self,
        direction: Direction,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Option<u32> {
        self.rules(direction).first_match(src, dst, protocol, port)
    }

    /// Counts a new flow that rule `index` admitted.
    pub(crate) fn hit(&mut self, direction: Direction, index: u32) {
        let rules = match direction {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        };
        if let Some(h) = rules.hits.get_mut(index as usize) {
            *h += 1;
        }
    }

    /// Would a new flow from `src` to `dst` of `protocol` to `port` pass,
    /// and which rule decides? `Protocol::Any` asks for a protocol other
    /// than TCP, UDP and ICMP, which only `*` admits.
    pub fn explain(
        &self,
        direction: Direction,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Explanation {
        let rules = self.rules(direction);
        match rules.first_match(src, dst, protocol, port) {
            Some(i) => Explanation {
                verdict: Verdict::Allow,
                rule: rules.rules.get(i as usize).map(|r| r.rule.clone()),
            },
            None => Explanation {
                verdict: Verdict::Deny,
                rule: None,
            },
        }
    }

    /// Takes over the hit counters of `old` for rules that kept their name,
    /// so that a policy change does not reset them.
    pub(crate) fn carry_hits(&mut self, old: &CompiledFilter) {
        for (new, old) in [
            (&mut self.inbound, &old.inbound),
            (&mut self.outbound, &old.outbound),
        ] {
            let by_name: BTreeMap<&str, u64> = old
                .rules
                .iter()
                .zip(&old.hits)
                .map(|(r, h)| (r.rule.as_str(), *h))
                .collect();
            for (rule, hits) in new.rules.iter().zip(new.hits.iter_mut()) {
                if let Some(h) = by_name.get(rule.rule.as_str()) {
                    *hits += h;
                }
            }
        }
    }

    /// The hit counters, inbound rules first, each in rule order. A name
    /// that appears twice in one direction is reported once, summed.
    pub(crate) fn hits(&self) -> Vec<RuleHits> {
        let mut out: Vec<RuleHits> = Vec::new();
        for (direction, rules) in [
            (Direction::Inbound, &self.inbound),
            (Direction::Outbound, &self.outbound),
        ] {
            let first = out.len();
            for (rule, flows) in rules.rules.iter().zip(&rules.hits) {
                match out[first..].iter_mut().find(|h| h.rule == rule.rule) {
                    Some(h) => h.flows += flows,
                    None => out.push(RuleHits {
                        rule: rule.rule.clone(),
                        direction,
                        flows: *flows,
                    }),
                }
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rule(name: &str, src: &[&str], dst: &[&str], ports: &[&str]) -> FilterRule {
        FilterRule {
            rule: name.into(),
            src: src.iter().map(|s| s.parse().unwrap()).collect(),
            dst: dst.iter().map(|s| s.parse().unwrap()).collect(),
            ports: ports.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_admitting_rule_decides_across_index_lists() {
        let filter = CompiledFilter::new(PacketFilter {
            policy_version: 1,
            inbound: vec![
                rule("wide", &["10.0.0.0/24"], &["10.0.1.0/24"], &["tcp:1-1000"]),
                rule(
                    "exact",
                    &["10.0.0.0/8"],
                    &["10.0.1.1/32"],
                    &["tcp:443", "icmp"],
                ),
                rule("all", &["10.0.0.9/32"], &["10.0.1.1/32"], &["*"]),
                rule("v6", &["fd00::/64"], &["fd00::1/128"], &["udp:53"]),
            ],
            outbound: vec![],
        });
        let explain = |src: &str, dst: &str, protocol, port| {
            filter
                .explain(Direction::Inbound, ip(src), ip(dst), protocol, port)
                .rule
        };
        assert_eq!(
            explain("10.0.0.9", "10.0.1.1", Protocol::Tcp, 443).as_deref(),
            Some("wide")
        );
        assert_eq!(
            explain("10.9.0.9", "10.0.1.1", Protocol::Tcp, 443).as_deref(),
            Some("exact")
        );
        assert_eq!(explain("10.9.0.9", "10.0.1.1", Protocol::Tcp, 444), None);
        assert_eq!(
            explain("10.0.0.9", "10.0.1.1", Protocol::Udp, 9).as_deref(),
            Some("all")
        );
        assert_eq!(
            explain("10.0.0.9", "10.0.1.1", Protocol::Any, 0).as_deref(),
            Some("all")
        );
        assert_eq!(
            explain("10.0.0.8", "10.0.1.1", Protocol::Icmp, 0).as_deref(),
            Some("exact")
        );
        assert_eq!(
            explain("fd00::5", "fd00::1", Protocol::Udp, 53).as_deref(),
            Some("v6")
        );
        assert_eq!(explain("fd00::5", "fd00::1", Protocol::Tcp, 53), None);
        let denied = filter.explain(
            Direction::Outbound,
            ip("10.0.1.1"),
            ip("10.0.0.9"),
            Protocol::Tcp,
            1,
        );
        assert_eq!(denied.verdict, Verdict::Deny);
    }

    /// A small deterministic generator, so that the comparison replays.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn the_index_agrees_with_the_reference_matcher() {
        let mut rng = Lcg(7);
        let ports = [
            "tcp:22",
            "tcp:80-90",
            "tcp:1000-9000",
            "udp:53",
            "udp:*",
            "icmp",
            "*",
        ];
        let rules: Vec<FilterRule> = (0..200)
            .map(|i| {
                // Hosts and prefixes on both sides, so that both index levels are used.
                let src = match rng.next(2) {
                    0 => format!("10.{}.0.0/16", rng.next(4)),
                    _ => format!("10.{}.0.1/32", rng.next(4)),
                };
                let dst = match rng.next(2) {
                    0 => format!("10.9.{}.0/24", rng.next(4)),
                    _ => format!("10.9.{}.1/32", rng.next(4)),
                };
                let p = [ports[rng.next(7) as usize], ports[rng.next(7) as usize]];
                rule(&format!("r{i}"), &[&src], &[&dst], &p)
            })
            .collect();
        let reference = PacketFilter {
            policy_version: 1,
            inbound: rules.clone(),
            outbound: rules,
        };
        let compiled = CompiledFilter::new(reference.clone());
        let protocols = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Any];
        for _ in 0..5000 {
            let src = ip(&format!("10.{}.0.1", rng.next(5)));
            let dst = ip(&format!("10.9.{}.1", rng.next(5)));
            let protocol = protocols[rng.next(4) as usize];
            let port = [22, 53, 85, 100, 5000, 9001][rng.next(6) as usize];
            for direction in [Direction::Inbound, Direction::Outbound] {
                assert_eq!(
                    compiled.explain(direction, src, dst, protocol, port),
                    reference.explain(direction, src, dst, protocol, port),
                    "{direction:?} {src} -> {dst} {protocol:?}:{port}"
                );
            }
        }
    }

    #[test]
    fn hits_survive_a_change_by_rule_name() {
        let web = rule("web", &["10.0.0.0/8"], &["10.0.1.1/32"], &["tcp:80"]);
        let ssh = rule("ssh", &["10.0.0.0/8"], &["10.0.1.1/32"], &["tcp:22"]);
        let mut old = CompiledFilter::new(PacketFilter {
            policy_version: 1,
            inbound: vec![web.clone(), ssh],
            outbound: vec![],
        });
        old.hit(Direction::Inbound, 0);
        old.hit(Direction::Inbound, 1);
        let mut new = CompiledFilter::new(PacketFilter {
            policy_version: 2,
            inbound: vec![web],
            outbound: vec![],
        });
        new.carry_hits(&old);
        let hits = new.hits();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].rule.as_str(), hits[0].flows), ("web", 1));
    }
}
