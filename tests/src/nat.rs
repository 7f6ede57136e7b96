//! NAT behaviours for router namespaces, as nftables rulesets (see
//! shared/NATLAB.md): full cone, restricted cone, port-restricted cone and
//! symmetric, each behind a home-router input firewall.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;

/// A NAT behaviour, in RFC 4787 terms in the comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Plain routing: private sources leak out (and die at the internet).
    None,
    /// Endpoint-independent mapping and filtering, for UDP `port` of the
    /// LAN host (mapped to the same port on the WAN address).
    FullCone { port: u16 },
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone { port: u16 },
    /// Endpoint-independent mapping, address-and-port-dependent filtering
    /// (plain masquerade, which keeps the source port when it can).
    PortRestricted,
    /// Endpoint-dependent mapping (`masquerade random`).
    Symmetric,
    /// Endpoint-dependent mapping (`masquerade fully-random`).
    SymmetricFullyRandom,
}

/// The router a NAT is installed on.
#[derive(Debug, Clone)]
pub struct Router {
    /// Interface towards the internet.
    pub wan_if: String,
    /// Address of `wan_if`, the public side of the mapping.
    pub wan_addr: Ipv4Addr,
    /// The LAN host that cone NATs forward to.
    pub host: Ipv4Addr,
}

/// The nftables ruleset for `nat` on `router`, in a table named `table`.
pub fn ruleset(table: &str, router: &Router, nat: Nat) -> String {
    let wan = &router.wan_if;
    let host = router.host;
    let mut r = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(r, "table ip {table} {{");
    if let Nat::RestrictedCone { .. } = nat {
        r.push_str(
            "    set contacted {\n        type ipv4_addr\n        flags dynamic,timeout\n        timeout 5m\n    }\n",
        );
    }
    // Home-router input firewall: without it an unanswered punch leaves an
    // UNREPLIED conntrack entry that steals the public port.
    let _ = writeln!(
        r,
        "    chain input {{\n        type filter hook input priority filter; policy accept;\n        iifname \"{wan}\" ct state established,related accept\n        iifname \"{wan}\" drop\n    }}"
    );
    if let Nat::RestrictedCone { port } = nat {
        // NAT chains see only a flow's first packet, so the per-packet set
        // update lives in a filter chain on the forward hook.
        let _ = writeln!(
            r,
            "    chain track {{\n        type filter hook forward priority filter; policy accept;\n        oifname \"{wan}\" ip saddr {host} udp sport {port} update @contacted {{ ip daddr }}\n    }}"
        );
    }
    let _ = writeln!(
        r,
        "    chain prerouting {{\n        type nat hook prerouting priority dstnat; policy accept;"
    );
    match nat {
        Nat::FullCone { port } => {
            let _ = writeln!(
                r,
                "        iifname \"{wan}\" udp dport {port} dnat to {host}:{port}"
            );
        }
        Nat::RestrictedCone { port } => {
            let _ = writeln!(
                r,
                "        iifname \"{wan}\" ip saddr @contacted udp dport {port} dnat to {host}:{port}"
            );
        }
        _ => {}
    }
    r.push_str("    }\n");
    let _ = writeln!(
        r,
        "    chain postrouting {{\n        type nat hook postrouting priority srcnat; policy accept;"
    );
    match nat {
        Nat::None => {}
        Nat::FullCone { port } | Nat::RestrictedCone { port } => {
            let wan_addr = router.wan_addr;
            let _ = writeln!(
                r,
                "        oifname \"{wan}\" ip saddr {host} udp sport {port} snat to {wan_addr}:{port}\n        oifname \"{wan}\" masquerade"
            );
        }
        Nat::PortRestricted => {
            let _ = writeln!(r, "        oifname \"{wan}\" masquerade");
        }
        Nat::Symmetric => {
            let _ = writeln!(r, "        oifname \"{wan}\" masquerade random");
        }
        Nat::SymmetricFullyRandom => {
            let _ = writeln!(r, "        oifname \"{wan}\" masquerade fully-random");
        }
    }
    r.push_str("    }\n}\n");
    r
}

/// Replaces the ruleset of `router_ns` with `nat` and flushes its conntrack
/// table, so that no mapping from an earlier behaviour survives.
pub fn apply(lab: &Lab, router_ns: &Netns, router: &Router, nat: Nat) -> Result<()> {
    let table = format!("{}nat", lab.prefix());
    let text = ruleset(&table, router, nat);
    let path = lab.subdir("nft")?.join(format!("{}.nft", router_ns.name()));
    fs::write(&path, &text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    // Both run inside the router's namespace: its ruleset, not the host's.
    router_ns.exec("nft", ["flush", "ruleset"])?;
    router_ns.exec("nft", [std::ffi::OsStr::new("-f"), path.as_os_str()])?;
    flush_conntrack(router_ns)
}

/// Forgets all connection tracking state of `ns`.
pub fn flush_conntrack(ns: &Netns) -> Result<()> {
    ns.exec("conntrack", ["-F"]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router {
            wan_if: "wan0".to_owned(),
            wan_addr: Ipv4Addr::new(203, 0, 113, 1),
            host: Ipv4Addr::new(10, 0, 1, 2),
        }
    }

    #[test]
    fn port_restricted_is_plain_masquerade_with_firewall() {
        let r = ruleset("t", &router(), Nat::PortRestricted);
        assert!(r.contains("oifname \"wan0\" masquerade\n"));
        assert!(r.contains("iifname \"wan0\" ct state established,related accept"));
        assert!(!r.contains("dnat"));
    }

    #[test]
    fn restricted_cone_filters_on_contacted_addresses() {
        let r = ruleset("t", &router(), Nat::RestrictedCone { port: 51820 });
        assert!(r.contains("update @contacted { ip daddr }"));
        assert!(r.contains("ip saddr @contacted udp dport 51820 dnat to 10.0.1.2:51820"));
        assert!(r.contains("snat to 203.0.113.1:51820"));
    }

    #[test]
    fn symmetric_randomises_ports() {
        assert!(ruleset("t", &router(), Nat::Symmetric).contains("masquerade random"));
        assert!(
            ruleset("t", &router(), Nat::SymmetricFullyRandom).contains("masquerade fully-random")
        );
    }
}
