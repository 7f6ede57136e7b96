//! The index that finds the rules that could admit a first packet: buckets by prefix, then lists by protocol and port.
//!
//! Rules are first split by prefix, on the one of their two sides (source
//! or destination; the source on a tie) whose buckets fewer other rules
//! share: a prefix goes to the bucket of the longest of a few fixed lengths
//! ([`LEVELS_V4`], [`LEVELS_V6`]) that it is no shorter than, so
//! `10.1.2.3/32` sits in its host's bucket and `10.1.2.0/24`,
//! `10.1.2.128/25` in the bucket of `10.1.2.0/24`. Within a bucket, rules
//! are split by protocol and destination port. A packet looks at the
//! buckets of its source and its destination at each length in use, and
//! in each at the port lists of its protocol. The caller checks a
//! candidate rule in full before it admits anything, so the index only has
//! to keep every rule that could.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use warren_proto::filter::{FilterRule, PortRange, Protocol};

/// Port ranges up to this wide are indexed port by port; wider ones are
/// checked for every packet of their protocol.
const EXACT_SPAN: u32 = 64;

/// The rules of one direction by prefix, protocol and port.
#[derive(Debug, Default)]
pub(super) struct RuleIndex {
    /// By side (0 source, 1 destination) and prefix.
    buckets: BTreeMap<(u8, IpNet), Bucket>,
    /// Which levels have buckets, by side and family (IPv4, IPv6).
    used: [[[bool; 5]; 2]; 2],
}

impl RuleIndex {
    pub(super) fn new(rules: &[FilterRule]) -> Self {
        let mut this = RuleIndex::default();
        // How many rules each bucket would hold, to put each rule on the
        // side where it shares its buckets with fewer others.
        let mut load: BTreeMap<(u8, IpNet), usize> = BTreeMap::new();
        for rule in rules {
            for (side, nets) in [(0u8, &rule.src), (1u8, &rule.dst)] {
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
        this
    }

    /// The first rule, in order, among those that could admit the flow,
    /// that `admits` it.
    pub(super) fn first_match(
        &self,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
        admits: impl Fn(&u32) -> bool + Copy,
    ) -> Option<u32> {
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
