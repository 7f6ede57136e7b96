//! A realistic netmap for the seeds of the control and netmap targets,
//! built from the proto types the controller encodes.

use warren_proto::filter::{FilterRule, PacketFilter};
use warren_proto::netmap::{DnsConfig, Netmap, NetmapPeer, NetworkSettings, SelfNode};
use warren_proto::routes::SelfRoute;
use warren_proto::service::{ServiceProto, ServiceRecord, ServiceSpec};
use warren_proto::{NodeId, NodePrivateKey};

pub fn peer(seed: u8, online: bool) -> NetmapPeer {
    let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
    NetmapPeer {
        node_id: NodeId::from_key(&key),
        name: format!("n{seed}"),
        public_key: key,
        addresses: vec![
            format!("10.147.0.{seed}/32").parse().expect("v4"),
            format!("fd80:56c2:e21c:1::{seed:x}/128")
                .parse()
                .expect("v6"),
        ],
        routes: if seed == 3 {
            vec!["192.168.7.0/24".parse().expect("route")]
        } else {
            vec![]
        },
        endpoints: vec![
            format!("203.0.113.{seed}:51820").parse().expect("endpoint"),
            format!("192.168.1.{seed}:41641").parse().expect("endpoint"),
        ],
        online,
    }
}

pub fn netmap(version: u64, peers: &[u8]) -> Netmap {
    let me = peer(1, true);
    let mut peers: Vec<NetmapPeer> = peers.iter().map(|s| peer(*s, true)).collect();
    peers.sort_by_key(|p| p.node_id);
    Netmap {
        network_id: "8056c2e21c000001".parse().expect("a network ID"),
        network_name: "prod".into(),
        version,
        self_node: SelfNode {
            node_id: me.node_id,
            name: "me".into(),
            fqdn: "me.prod.warren.internal".into(),
            addresses: vec![
                "10.147.0.1/16".parse().expect("v4"),
                "fd80:56c2:e21c:1::1/64".parse().expect("v6"),
            ],
            authorized: true,
            owner: None,
            expires_at: None,
            expired: false,
            routes: vec![SelfRoute {
                prefix: "10.10.0.0/16".parse().expect("route"),
                approved: true,
                primary: true,
            }],
        },
        peers,
        dns: DnsConfig {
            zone: "prod.warren.internal".into(),
            services: vec![ServiceRecord {
                member: "n2".into(),
                node_id: peer(2, true).node_id,
                service: ServiceSpec {
                    name: "postgres".into(),
                    proto: ServiceProto::Tcp,
                    port: 5432,
                    txt: vec!["v=16".into()],
                },
            }],
        },
        settings: NetworkSettings {
            mtu: 1420,
            stun_ports: vec![3478, 3479],
            sites: Vec::new(),
        },
        filter: Some(PacketFilter {
            policy_version: version,
            inbound: vec![FilterRule {
                rule: "allow[0]".into(),
                src: vec!["10.147.0.0/16".parse().expect("src")],
                dst: vec!["10.147.0.1/32".parse().expect("dst")],
                ports: vec![
                    "tcp:22".parse().expect("ports"),
                    "icmp".parse().expect("ports"),
                ],
            }],
            outbound: vec![FilterRule {
                rule: "allow[1]".into(),
                src: vec!["10.147.0.1/32".parse().expect("src")],
                dst: vec!["0.0.0.0/0".parse().expect("dst")],
                ports: vec!["*".parse().expect("ports")],
            }],
        }),
    }
}
