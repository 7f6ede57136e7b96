//! Hostile nodes against a real controller and real agents, from an address
//! of their own in the lab: a flood of joins with fresh keys, and a member
//! that reports endpoints no peer should probe and asks peers to probe
//! them. The attacker is built on `warren-proto` (`warren_lab::hostile_node`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::ensure;
use warren_lab::e2e;
use warren_lab::hostile_node;
use warren_lab::mesh::{ping_pairs, Mesh};
use warren_proto::{NetworkId, NodeId, NodePublicKey};

const POOL: &str = "10.147.0.0/16";
const SETTLE: Duration = Duration::from_secs(10);

#[test]
fn a_join_flood_from_one_address_is_slowed_and_holds_nothing() {
    e2e("hostile_node::join_flood", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b", "x"])?;
        let net = mesh.controller.network_create("flooded", POOL)?;
        let net_id: NetworkId = net.parse()?;
        let controller = mesh.controller.quic_addr();
        let outcomes = hostile_node::join_flood(mesh.ns("x")?, controller, net_id, 80)?;
        let count = |f: &dyn Fn(&str) -> bool| outcomes.iter().filter(|o| f(o)).count();
        let pending = count(&|o| o == "pending");
        let slowed = count(&|o| o.starts_with("connect") || o == "rate_limited");
        println!(
            "80 joins from x: {pending} pending, {slowed} slowed down; first answers {:?}",
            &outcomes[..5]
        );
        ensure!(pending >= 1, "no join was served at all: {outcomes:?}");
        ensure!(slowed >= 20, "the flood was not slowed: {outcomes:?}");
        ensure!(
            pending + slowed == outcomes.len(),
            "unexpected answers: {outcomes:?}"
        );

        // The pending members hold no address and no name.
        let members = mesh.controller.members(&net)?;
        ensure!(
            members.len() == pending,
            "{} members for {pending} pending joins",
            members.len()
        );
        for m in &members {
            ensure!(
                m.state == "pending" && m.addresses.is_empty() && m.json["name"].is_null(),
                "a pending member holds something: {}",
                m.json
            );
        }

        // Real nodes from other addresses are not slowed, and get the
        // first addresses of the pool.
        let key = mesh.controller.key_create(&net, true)?;
        for name in ["a", "b"] {
            mesh.join_ok(name, &net, Some(&key))?;
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        let a4 = mesh.overlay_addr("a", &net, false)?.to_string();
        let b4 = mesh.overlay_addr("b", &net, false)?.to_string();
        let mut got = [a4, b4];
        got.sort();
        ensure!(
            got == ["10.147.0.1", "10.147.0.2"],
            "addresses after the flood: {got:?}"
        );
        for r in ping_pairs(&mesh, &net, &["a", "b"], 3)? {
            ensure!(r.ok(), "{} -> {}: {}", r.from, r.to, r.report.render());
        }
        mesh.ensure_running()?;
        Ok(())
    });
}

#[test]
fn a_member_cannot_make_peers_probe_addresses_of_its_choosing() {
    e2e("hostile_node::bad_endpoints", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "x"])?;
        let net = mesh.controller.network_create("probed", POOL)?;
        let net_id: NetworkId = net.parse()?;
        let key = mesh.controller.key_create(&net, true)?;
        mesh.join_ok("a", &net, Some(&key))?;
        mesh.agent_mut("a")?
            .wait_state(&net, "authorized", SETTLE)?;
        let a_key: NodePublicKey = mesh.agent("a")?.public_key().parse()?;
        let a4 = mesh.overlay_addr("a", &net, false)?;
        let x_addr = mesh.host("x")?.addr;

        let good = SocketAddr::new(x_addr.into(), 41641);
        let mut endpoints: Vec<SocketAddr> = [
            "127.0.0.1:22",
            "0.0.0.0:53",
            "169.254.169.254:80",
            "[fe80::1]:51820",
            "224.0.0.251:5353",
            "255.255.255.255:67",
        ]
        .iter()
        .map(|e| e.parse())
        .collect::<Result<_, _>>()?;
        endpoints.push(SocketAddr::new(a4, 51820));
        endpoints.push(SocketAddr::new(x_addr.into(), 0));
        endpoints.push(good);
        let x_key = hostile_node::bad_endpoints(
            mesh.ns("x")?,
            mesh.controller.quic_addr(),
            net_id,
            &key,
            a_key,
            endpoints,
            Duration::from_secs(3),
        )?;

        let member = mesh
            .controller
            .member(&net, &NodeId::from_key(&x_key).to_string())?;
        println!("the hostile member as stored: {}", member.json);
        ensure!(
            member.json["endpoints"] == serde_json::json!([good.to_string()]),
            "stored endpoints of the hostile member: {}",
            member.json["endpoints"]
        );
        let status = mesh.agent("a")?.status()?;
        let x_b64 = x_key.to_base64();
        for peer in status.peers_in(&net) {
            if peer.public_key() == Some(x_b64.as_str()) {
                // Nowhere yet, the relay, or the one address it may be at.
                let endpoint = peer.endpoint()?;
                let good = good.to_string();
                ensure!(
                    matches!(endpoint.as_deref(), None | Some("relay"))
                        || endpoint.as_deref() == Some(good.as_str()),
                    "a sends to the hostile member at {endpoint:?}"
                );
            }
        }
        mesh.ensure_running()?;
        Ok(())
    });
}
