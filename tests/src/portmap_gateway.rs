//! A home gateway that answers port-mapping requests: miniupnpd (Debian's
//! `miniupnpd-nftables`) in a NAT router's namespace, answering on the LAN
//! side either NAT-PMP and PCP or UPnP IGD alone ([`Speaks`]), with its own
//! config, lease file and nftables table in the lab, started and stopped by
//! PID.
//!
//! miniupnpd refuses to map behind an external address in a reserved range,
//! and the lab's WAN addresses are documentation prefixes, which it counts
//! as reserved. So the router also owns a public-looking address,
//! [`external_addr`], which miniupnpd hands out and the lab's internet
//! routes to the router. It exists only inside the lab's namespaces: the
//! internet namespace has no uplink.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::link;
use crate::nat::Router;
use crate::natpair::{NatPair, Side};
use crate::netns::Netns;
use crate::process::Process;
use crate::topology::NatLab;

/// The external address a gateway gives out for mappings: router-a's
/// (`a == true`) or router-b's.
pub fn external_addr(a: bool) -> Ipv4Addr {
    if a {
        Ipv4Addr::new(100, 128, 113, 1)
    } else {
        Ipv4Addr::new(100, 128, 100, 1)
    }
}

/// Which protocols a gateway answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// PCP and NAT-PMP (one switch in miniupnpd), no UPnP.
    PcpNatPmp,
    /// UPnP IGD alone: port 5351 is closed.
    Upnp,
}

/// A running miniupnpd. Dropping it stops it by its PID.
#[derive(Debug)]
pub struct Miniupnpd {
    process: Process,
    lease_file: PathBuf,
    table: String,
}

impl Miniupnpd {
    /// Gives `router` the external address `external`, routed to it from
    /// `internet` (whose link address to the router is `router.wan_addr`'s
    /// peer), creates miniupnpd's table and starts it listening on `lan`
    /// (the router's LAN address, on a /24). Call after the router's
    /// NAT ruleset is applied: applying one flushes every table.
    pub fn start(
        lab: &Lab,
        router_ns: &Netns,
        internet: &Netns,
        router: &Router,
        external: Ipv4Addr,
        lan: Ipv4Addr,
        speaks: Speaks,
    ) -> Result<Miniupnpd> {
        link::add_addr(router_ns, &router.wan_if, &format!("{external}/32"))?;
        internet.ip([
            "route",
            "add",
            &format!("{external}/32"),
            "via",
            &router.wan_addr.to_string(),
        ])?;
        let dir = lab.subdir(&format!("miniupnpd-{}", router_ns.name()))?;
        let table = format!("{}upnp", lab.prefix());
        let nft = dir.join("init.nft");
        write(&nft, &init_ruleset(&table))?;
        router_ns.exec("nft", [std::ffi::OsStr::new("-f"), nft.as_os_str()])?;
        let lease_file = dir.join("leases");
        let conf = dir.join("miniupnpd.conf");
        write(
            &conf,
            &config(&table, router, external, lan, &lease_file, speaks),
        )?;
        let pid = dir.join("miniupnpd.pid");
        let args = [
            "-f".as_ref(),
            conf.as_os_str(),
            "-d".as_ref(),
            "-P".as_ref(),
            pid.as_os_str(),
        ];
        let label = format!("miniupnpd-{}", router_ns.name());
        let mut process = lab.spawn_in(router_ns, &label, "/usr/sbin/miniupnpd", args, &[])?;
        let ready = match speaks {
            Speaks::PcpNatPmp => "Listening for NAT-PMP/PCP traffic",
            Speaks::Upnp => "HTTP listening on port",
        };
        process.wait_for_output(ready, Duration::from_secs(10))?;
        Ok(Miniupnpd {
            process,
            lease_file,
            table,
        })
    }

    /// [`Miniupnpd::start`] in the router of `pair`'s `side`, handing out
    /// [`external_addr`] of that side on its LAN by PCP and NAT-PMP.
    pub fn start_in_pair(lab: &Lab, pair: &NatPair, side: Side) -> Result<Miniupnpd> {
        Self::start_speaking(lab, pair, side, Speaks::PcpNatPmp)
    }

    /// [`Miniupnpd::start_in_pair`], answering what `speaks` says.
    pub fn start_speaking(
        lab: &Lab,
        pair: &NatPair,
        side: Side,
        speaks: Speaks,
    ) -> Result<Miniupnpd> {
        let net = &pair.net;
        match side {
            Side::A => Self::start(
                lab,
                &net.router_a,
                &net.internet,
                &net.router_a_cfg,
                external_addr(true),
                NatLab::ROUTER_A_LAN,
                speaks,
            ),
            Side::B => Self::start(
                lab,
                &net.router_b,
                &net.internet,
                &net.router_b_cfg,
                external_addr(false),
                NatLab::ROUTER_B_LAN,
                speaks,
            ),
        }
    }

    /// The lease file: one `UDP:EXT:HOST:PORT:...` line per mapping.
    pub fn leases(&self) -> String {
        fs::read_to_string(&self.lease_file).unwrap_or_default()
    }

    /// miniupnpd's port-forwarding rules (its prerouting chain) in `router_ns`.
    pub fn rules(&self, router_ns: &Netns) -> Result<String> {
        router_ns.output(
            "nft",
            ["list", "chain", "inet", &self.table, "prerouting_miniupnpd"],
        )
    }

    /// Drops PCP requests (version 2 in the first payload byte) before
    /// miniupnpd sees them, so that only NAT-PMP answers, as on a gateway
    /// that speaks NAT-PMP alone.
    pub fn drop_pcp(&self, lab: &Lab, router_ns: &Netns) -> Result<()> {
        let path = lab
            .subdir(&format!("miniupnpd-{}", router_ns.name()))?
            .join("nopcp.nft");
        let table = format!("{}nopcp", lab.prefix());
        write(
            &path,
            &format!(
                "table ip {table} {{
    chain input {{
        type filter hook input priority filter - 1; policy accept;
        udp dport 5351 @th,64,8 2 drop
    }}
}}
"
            ),
        )?;
        router_ns
            .exec("nft", [std::ffi::OsStr::new("-f"), path.as_os_str()])
            .map(|_| ())
    }

    /// Errors if miniupnpd has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }

    /// Its log, for failure reports.
    pub fn log(&self) -> String {
        self.process.stderr() + &self.process.stdout()
    }
}

fn write(path: &std::path::Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

/// The chains miniupnpd fills (as Debian's `nft_init.sh` makes them), in
/// one table of its own. Policies accept: the router's own ruleset does
/// the filtering, and DNATed flows are new flows it lets through.
fn init_ruleset(table: &str) -> String {
    format!(
        "table inet {table} {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        jump miniupnpd
    }}
    chain miniupnpd {{
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        jump prerouting_miniupnpd
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        jump postrouting_miniupnpd
    }}
    chain prerouting_miniupnpd {{
    }}
    chain postrouting_miniupnpd {{
    }}
}}
"
    )
}

/// NAT-PMP and PCP (`enable_natpmp` serves both) or UPnP IGD (SSDP on
/// port 1900, HTTP on a port of its choosing) on the LAN address only,
/// mappings only for the asking host's own address.
fn config(
    table: &str,
    router: &Router,
    external: Ipv4Addr,
    lan: Ipv4Addr,
    lease_file: &std::path::Path,
    speaks: Speaks,
) -> String {
    let (natpmp, upnp) = match speaks {
        Speaks::PcpNatPmp => ("yes", "no"),
        Speaks::Upnp => ("no", "yes"),
    };
    format!(
        "ext_ifname={wan}
ext_ip={external}
listening_ip={lan}/24
enable_natpmp={natpmp}
enable_upnp={upnp}
http_port=0
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
secure_mode=yes
lease_file={leases}
upnp_table_name={table}
upnp_nat_table_name={table}
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 {lan}/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
",
        wan = router.wan_if,
        leases = lease_file.display(),
    )
}
