//! The default gateway of the main routing table, read from
//! `/proc/net/route`: the only address port-mapping requests go to.

use std::net::Ipv4Addr;

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// The IPv4 default gateway with the lowest metric, if any.
pub fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_route_table(&table)
}

/// `/proc/net/route`: a header line, then `Iface Destination Gateway Flags
/// RefCnt Use Metric Mask ...` with addresses in host-order hex.
fn parse_route_table(table: &str) -> Option<Ipv4Addr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
            let (dest, gw, flags, metric, mask) = (hex(1)?, hex(2)?, hex(3)?, hex(6)?, hex(7)?);
            let default = dest == 0 && mask == 0;
            let up = flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
            // The kernel prints the address's bytes read as a host-order u32.
            let gw = Ipv4Addr::from(gw.to_ne_bytes());
            (default && up && !gw.is_unspecified()).then_some((metric, gw))
        })
        .min()
        .map(|(_, gw)| gw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn picks_the_lowest_metric_default() {
        let t = format!(
            "{HEADER}eth0\t00000000\t0101000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth1\t00000000\t0102000A\t0003\t0\t0\t10\t00000000\t0\t0\t0\n\
             eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        );
        assert_eq!(parse_route_table(&t), Some(Ipv4Addr::new(10, 0, 2, 1)));
    }

    #[test]
    fn no_default_or_garbage_is_none() {
        let t = format!("{HEADER}eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        assert_eq!(parse_route_table(&t), None);
        assert_eq!(
            parse_route_table("x\n\n zz yy\neth0 00000000 XYZ 3 0 0 0 0"),
            None
        );
        // A default route without a gateway (a point-to-point link).
        let t = format!("{HEADER}tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n");
        assert_eq!(parse_route_table(&t), None);
    }
}
