//! IPv4 address management: the lowest free host address of a pool.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Smallest and largest pool prefix lengths a network may use.
pub const MIN_PREFIX: u8 = 8;
pub const MAX_PREFIX: u8 = 30;

/// Why a pool is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("pool must be an IPv4 prefix like 10.147.0.0/16: {0}")]
    Syntax(String),
    #[error("pool prefix length must be between /{MIN_PREFIX} and /{MAX_PREFIX}, got /{0}")]
    PrefixLength(u8),
}

/// Parses a pool, normalising `10.147.3.4/16` to `10.147.0.0/16`.
pub fn parse_pool(text: &str) -> Result<Ipv4Net, PoolError> {
    let net: Ipv4Net = text
        .trim()
        .parse()
        .map_err(|_| PoolError::Syntax(text.chars().take(64).collect()))?;
    if !(MIN_PREFIX..=MAX_PREFIX).contains(&net.prefix_len()) {
        return Err(PoolError::PrefixLength(net.prefix_len()));
    }
    Ok(net.trunc())
}

/// The lowest host address in `pool` that is not in `used`, never the
/// network or broadcast address. `used` must be sorted ascending.
pub fn lowest_free(pool: Ipv4Net, used: &[u32]) -> Option<Ipv4Addr> {
    let first = u32::from(pool.network()).checked_add(1)?;
    let last = u32::from(pool.broadcast()).checked_sub(1)?;
    let mut candidate = first;
    for &taken in used.iter().filter(|&&a| a >= first && a <= last) {
        match taken.cmp(&candidate) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => candidate = candidate.checked_add(1)?,
            std::cmp::Ordering::Greater => break,
        }
    }
    (candidate <= last).then(|| Ipv4Addr::from(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn starts_after_the_network_address_and_fills_gaps() {
        let pool = parse_pool("10.147.0.0/16").unwrap();
        assert_eq!(lowest_free(pool, &[]), Some("10.147.0.1".parse().unwrap()));
        let used = [ip("10.147.0.1"), ip("10.147.0.2"), ip("10.147.0.4")];
        assert_eq!(
            lowest_free(pool, &used),
            Some("10.147.0.3".parse().unwrap())
        );
    }

    #[test]
    fn never_hands_out_the_broadcast_address() {
        let pool = parse_pool("192.168.7.0/30").unwrap();
        let used = [ip("192.168.7.1"), ip("192.168.7.2")];
        assert_eq!(lowest_free(pool, &used), None);
    }

    #[test]
    fn pools_are_validated_and_normalised() {
        assert_eq!(
            parse_pool("10.147.3.4/16").unwrap().to_string(),
            "10.147.0.0/16"
        );
        assert_eq!(parse_pool("10.0.0.0/31"), Err(PoolError::PrefixLength(31)));
        assert_eq!(parse_pool("10.0.0.0/7"), Err(PoolError::PrefixLength(7)));
        assert!(parse_pool("fd00::/64").is_err());
        assert!(parse_pool("nonsense").is_err());
    }
}
