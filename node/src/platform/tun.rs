//! The overlay's TUN device: created with kernel offloads where the kernel allows.

use std::net::IpAddr;
use std::process::Command;

use anyhow::{bail, Context};
use ipnet::IpNet;
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Packets the kernel may queue towards the agent. The default of 500
/// overflows silently at high rates without offload.
const TX_QUEUE_LEN: u32 = 5000;

pub struct Tun {
    pub device: AsyncDevice,
    pub name: String,
    /// Whether the device carries a vnet header (TSO reads, GRO-coalesced writes).
    pub offload: bool,
}

impl Tun {
    /// Creates and brings up the device with its overlay addresses.
    pub fn create(
        name: &str,
        mtu: u16,
        addresses: &[IpNet],
        offload: bool,
    ) -> anyhow::Result<Self> {
        let device = if offload {
            match build(name, mtu, addresses, true) {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(error = %e, "TUN offload refused; using plain reads and writes");
                    build(name, mtu, addresses, false)?
                }
            }
        } else {
            build(name, mtu, addresses, false)?
        };
        let offload = offload && (device.tcp_gso() || device.udp_gso());
        let name = device.name().unwrap_or_else(|_| name.to_owned());
        Ok(Self {
            device,
            name,
            offload,
        })
    }

    /// Points `prefixes` at the device, for allowed IPs outside its own subnets.
    pub fn add_routes(&self, prefixes: &[IpNet]) -> anyhow::Result<()> {
        for prefix in prefixes {
            let family = match prefix.addr() {
                IpAddr::V4(_) => "-4",
                IpAddr::V6(_) => "-6",
            };
            // `ip` is called with an argument vector, never through a shell.
            let status = Command::new("ip")
                .args([
                    family,
                    "route",
                    "replace",
                    &prefix.trunc().to_string(),
                    "dev",
                    &self.name,
                ])
                .status()
                .with_context(|| format!("running ip route for {prefix}"))?;
            if !status.success() {
                bail!(
                    "ip route replace {prefix} dev {} failed: {status}",
                    self.name
                );
            }
        }
        Ok(())
    }
}

fn build(name: &str, mtu: u16, addresses: &[IpNet], offload: bool) -> anyhow::Result<AsyncDevice> {
    let mut builder = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .offload(offload)
        .tx_queue_len(TX_QUEUE_LEN);
    if let Some(IpNet::V4(v4)) = addresses.iter().find(|a| a.addr().is_ipv4()) {
        builder = builder.ipv4(v4.addr(), v4.prefix_len(), None);
    }
    for a in addresses {
        if let IpNet::V6(v6) = a {
            builder = builder.ipv6(v6.addr(), v6.prefix_len());
        }
    }
    builder.build_async().with_context(|| {
        format!("creating TUN device {name} (needs CAP_NET_ADMIN and /dev/net/tun)")
    })
}

/// Prefixes the kernel does not already route to the device through its own addresses.
pub fn routes_needed(addresses: &[IpNet], allowed: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = allowed
        .iter()
        .filter(|net| !addresses.iter().any(|a| a.trunc().contains(*net)))
        .map(|n| n.trunc())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_prefixes_outside_own_subnets_need_routes() {
        let own: Vec<IpNet> = vec![
            "10.99.0.1/24".parse().unwrap(),
            "fd99::1/64".parse().unwrap(),
        ];
        let allowed: Vec<IpNet> = vec![
            "10.99.0.2/32".parse().unwrap(),
            "fd99::2/128".parse().unwrap(),
            "10.96.0.0/12".parse().unwrap(),
            "10.96.0.1/12".parse().unwrap(),
        ];
        assert_eq!(
            routes_needed(&own, &allowed),
            vec!["10.96.0.0/12".parse::<IpNet>().unwrap()]
        );
    }
}
