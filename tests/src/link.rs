//! Wiring between namespaces: veth pairs, addresses, routes, forwarding.
//! Every call names the namespace it changes (`ip -n NS ...`), so nothing
//! here can touch the host's own interfaces.

use std::net::IpAddr;

use crate::error::Result;
use crate::netns::Netns;

/// The two ends of a veth pair, each living in its own namespace.
#[derive(Debug, Clone)]
pub struct Veth {
    pub a: String,
    pub b: String,
}

/// Creates a veth pair with end `a_if` in `a` and `b_if` in `b`, both up.
/// The pair is made directly inside `a` (never in the host namespace) and
/// disappears with either namespace.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<Veth> {
    a.ip([
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    set_up(a, a_if)?;
    set_up(b, b_if)?;
    Ok(Veth {
        a: a_if.to_owned(),
        b: b_if.to_owned(),
    })
}

pub fn set_up(ns: &Netns, ifname: &str) -> Result<()> {
    ns.ip(["link", "set", ifname, "up"]).map(|_| ())
}

/// Adds `cidr` (e.g. "192.0.2.1/24") to `ifname`. IPv6 addresses skip
/// duplicate address detection so they are usable at once.
pub fn add_addr(ns: &Netns, ifname: &str, cidr: &str) -> Result<()> {
    let mut args = vec!["addr", "add", cidr, "dev", ifname];
    if cidr.contains(':') {
        args.push("nodad");
    }
    ns.ip(args).map(|_| ())
}

pub fn del_addr(ns: &Netns, ifname: &str, cidr: &str) -> Result<()> {
    ns.ip(["addr", "del", cidr, "dev", ifname]).map(|_| ())
}

/// Routes `dst` ("default" or a prefix) via `gateway`.
pub fn add_route(ns: &Netns, dst: &str, gateway: IpAddr) -> Result<()> {
    let family = if gateway.is_ipv6() { "-6" } else { "-4" };
    ns.ip([family, "route", "add", dst, "via", &gateway.to_string()])
        .map(|_| ())
}

/// Turns on IPv4 and IPv6 forwarding inside `ns`.
pub fn enable_forwarding(ns: &Netns) -> Result<()> {
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")
}

/// Addresses currently on `ifname`, as "addr/len" strings.
pub fn addrs(ns: &Netns, ifname: &str) -> Result<Vec<String>> {
    let out = ns.ip(["-o", "addr", "show", "dev", ifname])?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next().map(str::to_owned)
        })
        .collect())
}

/// Whether `ifname` exists in `ns`.
pub fn exists(ns: &Netns, ifname: &str) -> bool {
    ns.ip(["link", "show", "dev", ifname]).is_ok()
}
