//! The compiled rules of one filter, indexed by prefix, protocol and port, so that a first packet looks only at the rules that could admit it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use warren_proto::filter::{
    Direction, Explanation, FilterRule, PacketFilter, PortRange, Protocol, RuleHits, Verdict,
};

/// Port ranges up to this wide are indexed port by port; wider ones are
/// checked for every packet of their protocol.
const EXACT_SPAN: u32 = 64;

/// The rules of one direction, in order, with their index and hit counters.
///
/// The index has two levels. Rules are first split by prefix, on the one
/// of their two sides (source or destination; the source on a tie) whose
/// buckets fewer other rules share: a prefix goes to the bucket of the longest of a few fixed lengths
/// ([`LEVELS_V4`], [`LEVELS_V6`]) that it is no shorter than, so
/// `10.1.2.3/32` sits in its host's bucket and `10.1.2.0/24`,
/// `10.1.2.128/25` in the bucket of `10.1.2.0/24`. Within a bucket, rules
/// are split by protocol and destination port. A packet looks at the
/// buckets of its source and its destination at each length in use, and
/// in each at the port lists of its protocol. A rule is checked in full
/// before it admits anything, so the index only has to keep the rules
/// that could.
#[derive(Debug)]
struct Rules {
    rules: Vec<FilterRule>,
    hits: Vec<u64>,
    /// By side (0 source, 1 destination) and prefix.
    buckets: BTreeMap<(u8, IpNet), Bucket>,
    /// Which levels have buckets, by side and family (IPv4, IPv6).
    used: [[[bool; 5]; 2]; 2],
}

/// Where a prefix is bucketed: its family, its level (the longest level
/// length it is no shorter than) and the bucket's key.
fn bucket_of(net: &IpNet) -> Option<(usize, usize, IpNet)> {
    let (family, lengths) = levels(net.addr());
    let level = lengths.iter().position(|&l| l <= net.prefix_len())?;
    Some((family, level, bucket_key(net.addr(), lengths[level])?))
}

/// The prefix lengths rules are bucketed by.
const LEVELS_V4: [u8; 5] = [32, 24, 16, 8, 0];
const LEVELS_V6: [u8; 5] = [128, 64, 48, 32, 0];

/// The family's row in `used` and its levels.
fn levels(addr: IpAddr) -> (usize, &'static [u8; 5]) {
    match addr {
        IpAddr::V4(_) => (0, &LEVELS_V4),
        IpAddr::V6(_) => (1, &LEVELS_V6),
    }
}

/// `addr` cut to `len` bits, as a bucket key.
fn bucket_key(addr: IpAddr, len: u8) -> Option<IpNet> {
    IpNet::new(addr, len).ok().map(|n| n.trunc())
}

/// Rules by protocol and port, each list in rule order.
#[derive(Debug, Default)]
struct Bucket {
    tcp: PortIndex,
    udp: PortIndex,
    /// Rules that admit ICMP.
    icmp: Vec<u32>,
    /// Rules that admit every protocol (`*`).
    any: Vec<u32>,
}

impl Bucket {
    fn add(&mut self, rule: &FilterRule, index: u32) {
        for range in &rule.ports {
            match range.protocol {
                Protocol::Tcp => self.tcp.add(range, index),
                Protocol::Udp => self.udp.add(range, index),
                Protocol::Icmp => push(&mut self.icmp, index),
                Protocol::Any => push(&mut self.any, index),
            }
        }
    }

    /// The first rule here, in order, that `admits`.
    fn first_match(
        &self,
        protocol: Protocol,
        port: u16,
        admits: impl Fn(&u32) -> bool + Copy,
    ) -> Option<u32> {
        let index = match protocol {
            Protocol::Tcp => &self.tcp,
            Protocol::Udp => &self.udp,
            Protocol::Icmp => return merged(&self.icmp, &self.any).find(admits),
            Protocol::Any => return self.any.iter().copied().find(admits),
        };
        let exact = index.exact.get(&port).map_or(&[][..], Vec::as_slice);
        let first = merged(exact, &index.wide).find(admits);
        let any = self.any.iter().copied().find(admits);
        min(first, any)
    }
}

fn min(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// For one of TCP and UDP: rules by exact destination port, and rules with
/// wide ranges. Both lists are in rule order.
#[derive(Debug, Default)]
struct PortIndex {
    exact: BTreeMap<u16, Vec<u32>>,
    wide: Vec<u32>,
}

/// Pushes `index` unless it is already the last entry (a rule naming two
/// ranges of one protocol).
fn push(list: &mut Vec<u32>, index: u32) {
    if list.last() != Some(&index) {
        list.push(index);
    }
}

impl PortIndex {
    fn add(&mut self, range: &PortRange, index: u32) {
        if u32::from(range.last) - u32::from(range.first) < EXACT_SPAN {
            for port in range.first..=range.last {
                push(self.exact.entry(port).or_default(), index);
            }
        } else {
            push(&mut self.wide, index);
        }
    }
}

/// Yields the lower of two ascending lists' heads until both are spent.
fn merged<'a>(a: &'a [u32], b: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                if x == y {
                    j += 1;
                }
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

impl Rules {
    fn new(rules: Vec<FilterRule>) -> Self {
        let mut this = Rules {
            rules: Vec::new(),
            hits: vec![0; rules.len()],
            buckets: BTreeMap::new(),
            used: [[[false; 5]; 2]; 2],
        };
        let sides = |rule: &FilterRule| [(0u8, rule.src.clone()), (1u8, rule.dst.clone())];
        // How many rules each bucket would hold, to put each rule on the
        // side where it shares its buckets with fewer others.
        let mut load: BTreeMap<(u8, IpNet), usize> = BTreeMap::new();
        for rule in &rules {
            for (side, nets) in sides(rule) {
                for (_, _, key) in nets.iter().filter_map(bucket_of) {
                    *load.entry((side, key)).or_default() += 1;
                }
            }
        }
        for (i, rule) in rules.iter().enumerate() {
            let cost = |side: u8, nets: &[IpNet]| {
                nets.iter()
                    .filter_map(bucket_of)
                    .map(|(_, _, key)| load.get(&(side, key)).copied().unwrap_or(0))
                    .max()
            };
            let (side, nets) = match (cost(0, &rule.src), cost(1, &rule.dst)) {
                (Some(s), Some(d)) if d < s => (1u8, &rule.dst),
                (Some(_), Some(_)) => (0u8, &rule.src),
                // A rule with no source or no destination admits nothing.
                _ => continue,
            };
            for (family, level, key) in nets.iter().filter_map(bucket_of) {
                this.buckets
                    .entry((side, key))
                    .or_default()
                    .add(rule, i as u32);
                this.used[usize::from(side)][family][level] = true;
            }
        }
        this.rules = rules;
        this
    }

    /// The first rule, in order, that admits the flow.
    fn first_match(&self, src: IpAddr, dst: IpAddr, protocol: Protocol, port: u16) -> Option<u32> {
        let admits = |i: &u32| {
            self.rules
                .get(*i as usize)
                .is_some_and(|r| r.admits(src, dst, protocol, port))
        };
        let mut best = None;
        for (side, addr) in [(0u8, src), (1, dst)] {
            let (family, lengths) = levels(addr);
            for (level, &len) in lengths.iter().enumerate() {
                if !self.used[usize::from(side)][family][level] {
                    continue;
                }
                let found = bucket_key(addr, len)
                    .and_then(|key| self.buckets.get(&(side, key)))
                    .and_then(|b| b.first_match(protocol, port, admits));
                best = min(best, found);
            }
        }
        best
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
