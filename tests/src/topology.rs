//! Ready-made topologies: two hosts on one link, and the NAT lab of
//! shared/NATLAB.md (host-a, router-a, internet, router-b, host-b).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Result;
use crate::lab::Lab;
use crate::link;
use crate::nat::{self, Nat, Router};
use crate::netns::Netns;

/// Two namespaces joined by one veth: 192.0.2.0/24 and 2001:db8::/64.
#[derive(Debug)]
pub struct TwoHosts {
    pub a: Netns,
    pub b: Netns,
    /// The veth end in `a`.
    pub a_if: String,
    /// The veth end in `b`.
    pub b_if: String,
}

impl TwoHosts {
    pub const A_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub const B_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    pub const A_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    pub const B_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    pub fn build(lab: &Lab) -> Result<TwoHosts> {
        let a = lab.netns("a")?;
        let b = lab.netns("b")?;
        let a_if = lab.ifname("va")?;
        let b_if = lab.ifname("vb")?;
        link::veth(&a, &a_if, &b, &b_if)?;
        link::add_addr(&a, &a_if, &format!("{}/24", Self::A_V4))?;
        link::add_addr(&b, &b_if, &format!("{}/24", Self::B_V4))?;
        link::add_addr(&a, &a_if, &format!("{}/64", Self::A_V6))?;
        link::add_addr(&b, &b_if, &format!("{}/64", Self::B_V6))?;
        Ok(TwoHosts { a, b, a_if, b_if })
    }

    pub fn a_addr(v6: bool) -> IpAddr {
        if v6 {
            Self::A_V6.into()
        } else {
            Self::A_V4.into()
        }
    }

    pub fn b_addr(v6: bool) -> IpAddr {
        if v6 {
            Self::B_V6.into()
        } else {
            Self::B_V4.into()
        }
    }
}

/// The NAT lab:
/// ```text
/// [host-a] 10.0.1.2 -- 10.0.1.1 [router-a] 203.0.113.1 -- 203.0.113.254 --+
///                                                               [internet]  192.0.2.10, 192.0.2.11
/// [host-b] 10.0.2.2 -- 10.0.2.1 [router-b] 198.51.100.1 -- 198.51.100.254 -+
/// ```
#[derive(Debug)]
pub struct NatLab {
    pub host_a: Netns,
    pub router_a: Netns,
    pub internet: Netns,
    pub router_b: Netns,
    pub host_b: Netns,
    pub router_a_cfg: Router,
    pub router_b_cfg: Router,
    /// The hosts' LAN interfaces.
    pub host_a_if: String,
    pub host_b_if: String,
}

impl NatLab {
    pub const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
    pub const ROUTER_A_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
    pub const ROUTER_A_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    pub const INTERNET_A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
    pub const HOST_B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    pub const ROUTER_B_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
    pub const ROUTER_B_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    pub const INTERNET_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
    /// Controller / STUN / relay address on the internet.
    pub const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    /// A second internet address, for address-dependent filtering checks.
    pub const SERVER2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

    pub fn build(lab: &Lab, nat_a: Nat, nat_b: Nat) -> Result<NatLab> {
        let host_a = lab.netns("ha")?;
        let router_a = lab.netns("ra")?;
        let internet = lab.netns("in")?;
        let router_b = lab.netns("rb")?;
        let host_b = lab.netns("hb")?;

        let host_a_if = lab.ifname("ha0")?;
        let ra_lan = lab.ifname("ral")?;
        let ra_wan = lab.ifname("raw")?;
        let in_a = lab.ifname("ina")?;
        let in_b = lab.ifname("inb")?;
        let rb_wan = lab.ifname("rbw")?;
        let rb_lan = lab.ifname("rbl")?;
        let host_b_if = lab.ifname("hb0")?;

        link::veth(&host_a, &host_a_if, &router_a, &ra_lan)?;
        link::veth(&router_a, &ra_wan, &internet, &in_a)?;
        link::veth(&internet, &in_b, &router_b, &rb_wan)?;
        link::veth(&router_b, &rb_lan, &host_b, &host_b_if)?;

        link::add_addr(&host_a, &host_a_if, &format!("{}/24", Self::HOST_A))?;
        link::add_addr(&router_a, &ra_lan, &format!("{}/24", Self::ROUTER_A_LAN))?;
        link::add_addr(&router_a, &ra_wan, &format!("{}/24", Self::ROUTER_A_WAN))?;
        link::add_addr(&internet, &in_a, &format!("{}/24", Self::INTERNET_A))?;
        link::add_addr(&internet, &in_b, &format!("{}/24", Self::INTERNET_B))?;
        link::add_addr(&router_b, &rb_wan, &format!("{}/24", Self::ROUTER_B_WAN))?;
        link::add_addr(&router_b, &rb_lan, &format!("{}/24", Self::ROUTER_B_LAN))?;
        link::add_addr(&host_b, &host_b_if, &format!("{}/24", Self::HOST_B))?;
        // The internet's own services live on its loopback.
        link::add_addr(&internet, "lo", &format!("{}/32", Self::SERVER))?;
        link::add_addr(&internet, "lo", &format!("{}/32", Self::SERVER2))?;

        link::add_route(&host_a, "default", Self::ROUTER_A_LAN.into())?;
        link::add_route(&router_a, "default", Self::INTERNET_A.into())?;
        link::add_route(&router_b, "default", Self::INTERNET_B.into())?;
        link::add_route(&host_b, "default", Self::ROUTER_B_LAN.into())?;
        // The internet knows only the public prefixes (connected routes), so
        // private sources that were not translated die there.
        for ns in [&router_a, &internet, &router_b] {
            link::enable_forwarding(ns)?;
        }

        let router_a_cfg = Router {
            wan_if: ra_wan,
            wan_addr: Self::ROUTER_A_WAN,
            host: Self::HOST_A,
        };
        let router_b_cfg = Router {
            wan_if: rb_wan,
            wan_addr: Self::ROUTER_B_WAN,
            host: Self::HOST_B,
        };
        nat::apply(lab, &router_a, &router_a_cfg, nat_a)?;
        nat::apply(lab, &router_b, &router_b_cfg, nat_b)?;
        Ok(NatLab {
            host_a,
            router_a,
            internet,
            router_b,
            host_b,
            router_a_cfg,
            router_b_cfg,
            host_a_if,
            host_b_if,
        })
    }

    /// Switches router-a to another behaviour (and flushes its conntrack).
    pub fn set_nat_a(&self, lab: &Lab, nat: Nat) -> Result<()> {
        nat::apply(lab, &self.router_a, &self.router_a_cfg, nat)
    }

    /// Switches router-b to another behaviour (and flushes its conntrack).
    pub fn set_nat_b(&self, lab: &Lab, nat: Nat) -> Result<()> {
        nat::apply(lab, &self.router_b, &self.router_b_cfg, nat)
    }
}
