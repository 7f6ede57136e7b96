//! Text from the network on its way to a terminal: a hostile controller
//! names a peer with escape sequences (clear the screen, retitle the
//! window, rewrite the line). `warren status` shows the peer with every
//! control character as `?`, and its JSON carries them escaped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::ensure;
use warren_lab::controller::QUIC_PORT;
use warren_lab::e2e;
use warren_lab::hostile_controller::{Attack, HostileController, OWN_ZONE};
use warren_lab::mesh::{Mesh, CONTROLLER_ROLE};
use warren_lab::wait::Poll;
use warren_proto::control::ControllerMessage;
use warren_proto::netmap::{DnsConfig, Netmap, NetmapPeer, NetworkSettings, SelfNode};
use warren_proto::{NodeId, NodePrivateKey, NodePublicKey};

const SETTLE: Duration = Duration::from_secs(10);
const EVIL_NAME: &str = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\rok";

#[test]
fn a_peer_named_with_escape_sequences_prints_harmlessly() {
    e2e("hostile_strings::status", |lab| {
        let mut mesh = Mesh::build(lab, &["a"])?;
        let ctl_addr = mesh.host(CONTROLLER_ROLE)?.addr;
        let evil = HostileController::start(
            mesh.ns(CONTROLLER_ROLE)?,
            SocketAddr::new(ctl_addr.into(), QUIC_PORT + 1),
        )?;
        let net = evil.network();
        let me: NodePublicKey = mesh.agent("a")?.public_key().parse()?;
        mesh.agent("a")?
            .join_at(evil.addr(), evil.fingerprint(), &net.to_string(), None, &[])?;
        evil.wait_joined(SETTLE)?;
        let peer = NodePrivateKey::generate().public_key();
        let map = Netmap {
            network_id: net,
            network_name: "hostile".into(),
            version: 10,
            self_node: SelfNode {
                node_id: NodeId::from_key(&me),
                name: "a".into(),
                fqdn: format!("a.{OWN_ZONE}"),
                addresses: vec!["10.201.0.2/24".parse()?],
                authorized: true,
                owner: None,
                expires_at: None,
                expired: false,
                routes: Vec::new(),
            },
            peers: vec![NetmapPeer {
                node_id: NodeId::from_key(&peer),
                name: EVIL_NAME.into(),
                public_key: peer,
                addresses: vec!["10.201.0.3/32".parse()?],
                routes: Vec::new(),
                endpoints: Vec::new(),
                online: true,
            }],
            dns: DnsConfig {
                zone: OWN_ZONE.into(),
                services: Vec::new(),
            },
            settings: NetworkSettings {
                mtu: 1420,
                stun_ports: Vec::new(),
                sites: Vec::new(),
            },
            filter: None,
        };
        evil.push(Attack::Raw(Box::new(ControllerMessage::Netmap(map))))?;
        let key = peer.to_base64();
        mesh.agent_mut("a")?
            .wait_status("the peer with the hostile name", SETTLE, |s| {
                Ok(
                    if s.peers_in(&net.to_string())
                        .iter()
                        .any(|p| p.public_key() == Some(key.as_str()))
                    {
                        Poll::Ready(())
                    } else {
                        Poll::Pending("not yet".into())
                    },
                )
            })?;
        let human = mesh.agent("a")?.status_human()?;
        println!("{human}");
        ensure!(
            !human.contains('\u{1b}') && !human.contains('\u{7}') && !human.contains('\r'),
            "`warren status` printed a control character: {human:?}"
        );
        ensure!(
            human.contains("evil?[2J?]0;owned??ok"),
            "`warren status` should show the name with ? for each control character: {human:?}"
        );
        let json = mesh.agent("a")?.status()?;
        ensure!(
            json.json.to_string().contains("evil\\u001b[2J"),
            "the JSON should carry the name escaped: {}",
            json.json
        );
        Ok(())
    });
}
