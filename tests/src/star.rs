//! A routed star: one "internet" namespace in the middle and one host per
//! link around it, on documentation prefixes, with plain routing (no NAT).
//!
//! ```text
//!            [spoke 0] 192.0.2.10/26     --.1  --+
//!            [spoke 1] 198.51.100.10/24  --.1  --+
//!            [spoke 2] 203.0.113.10/24   --.1  --+-- [internet]
//!            [spoke 3] 192.0.2.74/26     --.65 --+
//!            [spoke 4] 192.0.2.138/26    --.129--+
//!            [spoke 5] 192.0.2.202/26    --.193--+
//!            [spoke 6] 198.18.0.10/24    --.1  --+
//!            [spoke 7] 198.19.0.10/24    --.1  --+
//! ```
//! Every host can reach every other host at its own address, which is what
//! agents without NAT traversal need.

use std::net::Ipv4Addr;

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::link;
use crate::netns::Netns;

/// (host address, hub address, prefix length) of each possible spoke.
const SUBNETS: [(Ipv4Addr, Ipv4Addr, u8); 8] = [
    (
        Ipv4Addr::new(192, 0, 2, 10),
        Ipv4Addr::new(192, 0, 2, 1),
        26,
    ),
    (
        Ipv4Addr::new(198, 51, 100, 10),
        Ipv4Addr::new(198, 51, 100, 1),
        24,
    ),
    (
        Ipv4Addr::new(203, 0, 113, 10),
        Ipv4Addr::new(203, 0, 113, 1),
        24,
    ),
    (
        Ipv4Addr::new(192, 0, 2, 74),
        Ipv4Addr::new(192, 0, 2, 65),
        26,
    ),
    (
        Ipv4Addr::new(192, 0, 2, 138),
        Ipv4Addr::new(192, 0, 2, 129),
        26,
    ),
    (
        Ipv4Addr::new(192, 0, 2, 202),
        Ipv4Addr::new(192, 0, 2, 193),
        26,
    ),
    // The benchmarking range (RFC 2544), for labs with more hosts.
    (
        Ipv4Addr::new(198, 18, 0, 10),
        Ipv4Addr::new(198, 18, 0, 1),
        24,
    ),
    (
        Ipv4Addr::new(198, 19, 0, 10),
        Ipv4Addr::new(198, 19, 0, 1),
        24,
    ),
];

/// The most hosts a star can have.
pub const MAX_SPOKES: usize = SUBNETS.len();

/// One host of the star.
#[derive(Debug)]
pub struct Spoke {
    /// The role it was built for ("ctl", "a", ...).
    pub role: String,
    pub ns: Netns,
    /// Its interface towards the hub.
    pub ifname: String,
    /// Its address on that interface.
    pub addr: Ipv4Addr,
    /// The hub's address on the same link (its default gateway).
    pub gateway: Ipv4Addr,
}

/// The hub and its hosts. Spokes are dropped (and their processes ended)
/// before the hub.
#[derive(Debug)]
pub struct Star {
    pub spokes: Vec<Spoke>,
    pub hub: Netns,
}

impl Star {
    /// Builds a hub and one spoke per role, in order (spoke 0 first).
    /// Roles must be short: they become parts of interface names.
    pub fn build(lab: &Lab, roles: &[&str]) -> Result<Star> {
        if roles.len() > MAX_SPOKES {
            return Err(LabError::Invalid(format!(
                "a star has at most {MAX_SPOKES} spokes, asked for {}",
                roles.len()
            )));
        }
        let hub = lab.netns("hub")?;
        link::enable_forwarding(&hub)?;
        let mut spokes = Vec::with_capacity(roles.len());
        for (i, (role, (addr, gateway, len))) in roles.iter().zip(SUBNETS).enumerate() {
            let ns = lab.netns(&format!("s{role}"))?;
            let ifname = lab.ifname(&format!("s{role}0"))?;
            let hub_if = lab.ifname(&format!("h{i}"))?;
            link::veth(&ns, &ifname, &hub, &hub_if)?;
            link::add_addr(&ns, &ifname, &format!("{addr}/{len}"))?;
            link::add_addr(&hub, &hub_if, &format!("{gateway}/{len}"))?;
            link::add_route(&ns, "default", gateway.into())?;
            spokes.push(Spoke {
                role: (*role).to_owned(),
                ns,
                ifname,
                addr,
                gateway,
            });
        }
        Ok(Star { spokes, hub })
    }

    /// The spoke built for `role`.
    pub fn spoke(&self, role: &str) -> Result<&Spoke> {
        self.spokes
            .iter()
            .find(|s| s.role == role)
            .ok_or_else(|| LabError::Invalid(format!("no spoke {role:?} in this star")))
    }
}
