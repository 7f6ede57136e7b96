//! Hostile nodes against a real controller and real agents, from an address
//! of their own in the lab: a flood of joins with fresh keys, a member
//! that reports endpoints no peer should probe and asks peers to probe
//! them, and a member that holds many connections with one key so that the
//! relay would copy its frames to each. The attacker is built on
//! `warren-proto` (`warren_lab::hostile_node`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::ensure;
use warren_lab::controller::{self, Controller};
use warren_lab::e2e;
use warren_lab::hostile_node;
use warren_lab::mesh::{ping_pairs, Mesh, CONTROLLER_ROLE};
use warren_lab::star::Star;
use warren_proto::relay::HEADER_LEN;
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

/// The relay's limits in this lab: a burst of 70,000 bytes (room for one
/// frame of the largest size) and next to no refill, so what a sender may
/// relay is the burst alone.
const AMPLIFY_BURST: usize = 70_000;
/// Connections one key may hold at the controller (`LINKS_PER_KEY`).
const LINKS_PER_KEY: usize = 4;

#[test]
fn a_member_cannot_multiply_relay_traffic_with_many_connections_of_one_key() {
    e2e("hostile_node::amplification", |lab| {
        let star = Star::build(lab, &[CONTROLLER_ROLE, "x"])?;
        let ctl = star.spoke(CONTROLLER_ROLE)?;
        let burst = AMPLIFY_BURST.to_string();
        let mut controller = Controller::start_with(
            lab,
            &ctl.ns,
            SocketAddr::new(ctl.addr.into(), controller::QUIC_PORT),
            &["--relay-rate", "1", "--relay-burst", &burst],
        )?;
        let net = controller.network_create("amplified", POOL)?;
        let net_id: NetworkId = net.parse()?;
        let key = controller.key_create(&net, true)?;
        let (connections, frames, payload) = (6, 40, 1000);
        let got = hostile_node::relay_amplification(
            &star.spoke("x")?.ns,
            controller.quic_addr(),
            net_id,
            &key,
            connections,
            frames,
            payload,
        )?;
        println!("{connections} connections of one key, {frames} frames relayed to it: {got:?}");

        // The two oldest were closed by the newer ones, saying why; four stay.
        let superseded = connections - LINKS_PER_KEY;
        for (i, closed) in got.closed.iter().enumerate() {
            if i < superseded {
                let reason = closed.as_deref().unwrap_or("open");
                ensure!(
                    reason.starts_with("code 2: superseded"),
                    "connection {i} of the key: {reason}"
                );
            } else {
                ensure!(closed.is_none(), "connection {i} of the key: {closed:?}");
            }
        }
        // Each frame went to the four open connections and cost its sender
        // four times its length: the burst pays for 16 of them, not the
        // 66 it would if a frame cost its length once.
        let per_copy = HEADER_LEN + payload;
        let paid_for = AMPLIFY_BURST / (LINKS_PER_KEY * per_copy);
        for (i, &received) in got.received.iter().enumerate().skip(superseded) {
            ensure!(
                (1..=paid_for).contains(&received),
                "connection {i} received {received} frames; the sender paid for {paid_for} copies each"
            );
        }
        let delivered: usize = got.received.iter().sum();
        ensure!(
            delivered <= paid_for * LINKS_PER_KEY,
            "{delivered} copies delivered in all; the burst pays for {}",
            paid_for * LINKS_PER_KEY
        );
        controller.ensure_running()?;
        Ok(())
    });
}
