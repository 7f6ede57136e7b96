//! Agents behind the NAT lab's routers with a static endpoint: the plain
//! WireGuard baseline (the NATed side initiates towards a forwarded port,
//! the other side learns its mapped endpoint) before NAT traversal proper.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::e2e;
use warren_lab::nat::Nat;
use warren_lab::node_spec::{overlay, NodeSpec, PeerSpec};
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::topology::NatLab;
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::warren::{generate_key, Agent};

const PORT: u16 = 51820;

#[test]
fn masqueraded_peer_reaches_forwarded_peer() {
    e2e("nat_static::forwarded", |lab| {
        let net = NatLab::build(lab, Nat::FullCone { port: PORT }, Nat::PortRestricted)?;
        let key_a = generate_key(lab, "a")?;
        let key_b = generate_key(lab, "b")?;
        let spec_a = NodeSpec {
            name: "a".to_owned(),
            key: key_a.clone(),
            listen_port: PORT,
            addresses: overlay::addresses(1),
            peers: vec![PeerSpec {
                public_key: key_b.public_key.clone(),
                endpoint: None,
                allowed_ips: overlay::allowed_ips(2),
                persistent_keepalive: None,
            }],
        };
        let spec_b = NodeSpec {
            name: "b".to_owned(),
            key: key_b.clone(),
            listen_port: PORT,
            addresses: overlay::addresses(2),
            peers: vec![PeerSpec {
                public_key: key_a.public_key.clone(),
                endpoint: Some(SocketAddr::from((NatLab::ROUTER_A_WAN, PORT))),
                allowed_ips: overlay::allowed_ips(1),
                // Keeps b's masquerade mapping alive, as users configure it.
                persistent_keepalive: Some(5),
            }],
        };
        let mut a = Agent::start(lab, &net.host_a, &spec_a)?;
        let mut b = Agent::start(lab, &net.host_b, &spec_b)?;

        wait_reachable(
            &net.host_b,
            overlay::addr(1, false),
            Duration::from_secs(10),
        )
        .context("b -> a through both NATs")?;
        let report = ping(
            &net.host_a,
            overlay::addr(2, true),
            3,
            Duration::from_millis(50),
            Duration::from_secs(2),
        )?;
        ensure!(
            report.received == 3,
            "a -> b through both NATs:\n{}",
            report.render()
        );
        tcp_transfer(
            &net.host_a,
            &net.host_b,
            overlay::addr(2, false),
            TransferSpec::mib(4),
        )?;

        let status = a.status()?;
        let endpoint = status.peer(&key_b.public_key)?.endpoint()?;
        let mapped = format!("{}:{PORT}", NatLab::ROUTER_B_WAN);
        ensure!(
            endpoint.as_deref() == Some(mapped.as_str()),
            "a should send to b's public mapping {mapped}: {}",
            status.json
        );
        a.ensure_running()?;
        b.ensure_running()?;
        Ok(())
    });
}
