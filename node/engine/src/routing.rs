//! Longest-prefix-match table from overlay addresses to the peer that serves them.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Maps prefixes to values; a lookup returns the value of the longest prefix
/// that contains the address. One hash map per prefix length keeps a lookup
/// at (number of distinct lengths) hash probes, which is 2 or 3 in practice.
#[derive(Debug, Clone)]
pub struct RoutingTable<T> {
    v4: Vec<(u8, HashMap<u32, T>)>,
    v6: Vec<(u8, HashMap<u128, T>)>,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

fn mask_v4(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask_v6(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    }
}

/// Finds the map for `len`, keeping the list sorted longest first.
fn level<K, T>(levels: &mut Vec<(u8, HashMap<K, T>)>, len: u8) -> &mut HashMap<K, T> {
    let pos = match levels.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(pos) => pos,
        Err(pos) => {
            levels.insert(pos, (len, HashMap::new()));
            pos
        }
    };
    &mut levels[pos].1
}

/// Removes `key` at `len` if it maps to `value`, and the level if it empties.
fn remove_if<K: Eq + std::hash::Hash, T: PartialEq>(
    levels: &mut Vec<(u8, HashMap<K, T>)>,
    len: u8,
    key: &K,
    value: &T,
) {
    let Ok(pos) = levels.binary_search_by(|(l, _)| len.cmp(l)) else {
        return;
    };
    let map = &mut levels[pos].1;
    if map.get(key) == Some(value) {
        map.remove(key);
        if map.is_empty() {
            levels.remove(pos);
        }
    }
}

impl<T: Clone + PartialEq> RoutingTable<T> {
    /// Inserts or replaces the value for `net`; returns the value it replaced.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        match net {
            IpNet::V4(n) => {
                let key = mask_v4(n.addr().into(), n.prefix_len());
                level(&mut self.v4, n.prefix_len()).insert(key, value)
            }
            IpNet::V6(n) => {
                let key = mask_v6(n.addr().into(), n.prefix_len());
                level(&mut self.v6, n.prefix_len()).insert(key, value)
            }
        }
    }

    /// Removes those of `nets` whose value is `value` (a prefix another
    /// value has taken over stays). Costs what `nets` holds, not what the
    /// table does: a netmap of 10,000 peers updates each in place.
    pub fn remove_owned(&mut self, nets: &[IpNet], value: &T) {
        for net in nets {
            match net {
                IpNet::V4(n) => {
                    let key = mask_v4(n.addr().into(), n.prefix_len());
                    remove_if(&mut self.v4, n.prefix_len(), &key, value);
                }
                IpNet::V6(n) => {
                    let key = mask_v6(n.addr().into(), n.prefix_len());
                    remove_if(&mut self.v6, n.prefix_len(), &key, value);
                }
            }
        }
    }

    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&mask_v4(a, *len)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&mask_v6(a, *len)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RoutingTable::default();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.99.0.0/24"), 2);
        t.insert(net("10.99.0.7/32"), 3);
        t.insert(net("0.0.0.0/0"), 4);
        assert_eq!(t.lookup(ip("10.99.0.7")), Some(&3));
        assert_eq!(t.lookup(ip("10.99.0.8")), Some(&2));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&1));
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(&4));
    }

    #[test]
    fn families_are_separate() {
        let mut t = RoutingTable::default();
        t.insert(net("fd99::/64"), 1);
        t.insert(net("fd99::2/128"), 2);
        assert_eq!(t.lookup(ip("fd99::2")), Some(&2));
        assert_eq!(t.lookup(ip("fd99::3")), Some(&1));
        assert_eq!(t.lookup(ip("fd98::1")), None);
        assert_eq!(t.lookup(ip("10.0.0.1")), None);
        t.insert(net("::/0"), 3);
        assert_eq!(t.lookup(ip("2001:db8::1")), Some(&3));
    }

    #[test]
    fn host_bits_in_prefix_are_ignored() {
        let mut t = RoutingTable::default();
        t.insert(net("10.99.0.5/24"), 1);
        assert_eq!(t.lookup(ip("10.99.0.200")), Some(&1));
    }

    #[test]
    fn removing_a_values_prefixes_leaves_those_another_took_over() {
        let mut t = RoutingTable::default();
        let ones = [net("10.99.0.2/32"), net("fd99::2/128"), net("10.98.0.0/16")];
        for n in ones {
            t.insert(n, 1);
        }
        t.insert(net("10.99.0.3/32"), 2);
        // Value 2 took 10.98.0.0/16 over from 1.
        t.insert(net("10.98.0.0/16"), 2);
        t.remove_owned(&ones, &1);
        assert_eq!(t.lookup(ip("10.99.0.2")), None);
        assert_eq!(t.lookup(ip("fd99::2")), None);
        assert_eq!(t.lookup(ip("10.99.0.3")), Some(&2));
        assert_eq!(t.lookup(ip("10.98.1.1")), Some(&2));
        // The emptied IPv6 level is gone, not left to probe on every lookup.
        assert!(t.v6.is_empty());
        // Removing what is not there changes nothing.
        t.remove_owned(&[net("192.0.2.0/24")], &1);
        assert_eq!(t.lookup(ip("10.99.0.3")), Some(&2));
    }
}
