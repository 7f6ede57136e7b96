use warren_proto::netmap::{DnsConfig, NetmapPeer, NetworkSettings, SelfNode};
use warren_proto::{NetworkId, NodeId, NodePrivateKey};

use super::*;

fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|_| unreachable!("test prefix {s}"))
}

/// A netmap that passes every check, with `zone` (also for sibling modules' tests).
pub(in crate::daemon::managed) fn map(zone: &str) -> Netmap {
    let key = NodePrivateKey::generate().public_key();
    Netmap {
        network_id: NetworkId::from_bytes([1; 8]),
        network_name: "lab".into(),
        version: 3,
        self_node: SelfNode {
            node_id: NodeId::from_key(&key),
            name: "a".into(),
            fqdn: format!("a.{zone}"),
            addresses: vec![net("10.147.0.5/16"), net("fd01:0101:0101:0101::5/64")],
            authorized: true,
            owner: None,
            expires_at: None,
            expired: false,
            routes: Vec::new(),
        },
        peers: vec![NetmapPeer {
            node_id: NodeId::from_key(&key),
            name: "b".into(),
            public_key: key,
            addresses: vec![net("10.147.0.6/32"), net("fd01:0101:0101:0101::6/128")],
            routes: Vec::new(),
            endpoints: Vec::new(),
            online: true,
        }],
        dns: DnsConfig {
            zone: zone.into(),
            services: Vec::new(),
        },
        settings: NetworkSettings {
            mtu: 1420,
            stun_ports: vec![3478],
            sites: Vec::new(),
        },
        filter: None,
    }
}

fn zone_verdict(zone: &str, allowed: &[&str]) -> Result<(), NetmapRefusal> {
    let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
    check_netmap(&map(zone), &allowed)
}

#[test]
fn zones_under_the_expected_suffixes_pass() {
    for zone in [
        "prod.warren.internal",
        "PROD.Warren.Internal.",
        "lab.internal",
        "house.home.arpa",
    ] {
        assert_eq!(zone_verdict(zone, &[]), Ok(()), "{zone}");
    }
}

#[test]
fn tlds_public_suffixes_and_unexpected_zones_are_refused() {
    assert!(matches!(
        zone_verdict("internal", &[]),
        Err(NetmapRefusal::ZoneTld(_))
    ));
    assert!(matches!(
        zone_verdict("com", &["com"]),
        Err(NetmapRefusal::ZoneTld(_))
    ));
    // Even when the user allowed them: a public suffix is never a zone.
    assert!(matches!(
        zone_verdict("co.uk", &["co.uk"]),
        Err(NetmapRefusal::ZonePublicSuffix(_))
    ));
    assert!(matches!(
        zone_verdict("github.io", &["github.io"]),
        Err(NetmapRefusal::ZonePublicSuffix(_))
    ));
    // A suffix itself is no zone a controller may take over (warren.internal
    // lies under internal, so it may).
    assert!(matches!(
        zone_verdict("home.arpa", &[]),
        Err(NetmapRefusal::ZoneUnexpected(_) | NetmapRefusal::ZonePublicSuffix(_))
    ));
    assert_eq!(zone_verdict("warren.internal", &[]), Ok(()));
    for zone in [
        "example.com",
        "bank.example.com",
        "mail.google.com",
        "xinternal.com",
    ] {
        assert!(
            matches!(
                zone_verdict(zone, &[]),
                Err(NetmapRefusal::ZoneUnexpected(_))
            ),
            "{zone}"
        );
    }
    for zone in ["", "a..b.internal", "bad zone.internal", "-x.internal"] {
        assert!(
            matches!(zone_verdict(zone, &[]), Err(NetmapRefusal::ZoneSyntax(_))),
            "{zone:?}"
        );
    }
}

#[test]
fn a_zone_the_user_allowed_passes_with_what_lies_under_it() {
    assert_eq!(
        zone_verdict("corp.example.com", &["corp.example.com"]),
        Ok(())
    );
    assert_eq!(
        zone_verdict("vpn.corp.example.com", &["Corp.Example.com."]),
        Ok(())
    );
    assert!(matches!(
        zone_verdict("example.com", &["corp.example.com"]),
        Err(NetmapRefusal::ZoneUnexpected(_))
    ));
    assert!(matches!(
        zone_verdict("xcorp.example.com", &["corp.example.com"]),
        Err(NetmapRefusal::ZoneUnexpected(_))
    ));
}

#[test]
fn mtu_must_be_sane() {
    for mtu in [0, 576, 1279, 9001, u16::MAX] {
        let mut m = map("lab.warren.internal");
        m.settings.mtu = mtu;
        assert_eq!(check_netmap(&m, &[]), Err(NetmapRefusal::Mtu(mtu)));
    }
    for mtu in [1280, 1420, 9000] {
        let mut m = map("lab.warren.internal");
        m.settings.mtu = mtu;
        assert_eq!(check_netmap(&m, &[]), Ok(()));
    }
}

#[test]
fn own_addresses_must_be_unicast_with_sane_prefixes() {
    for bad in [
        "127.0.0.5/8",
        "224.0.0.5/16",
        "169.254.3.4/16",
        "0.0.0.0/16",
        "255.255.255.255/16",
        "::1/64",
        "ff02::1/64",
        "fe80::5/64",
        "::/64",
    ] {
        let mut m = map("lab.warren.internal");
        m.self_node.addresses = vec![net(bad)];
        assert_eq!(
            check_netmap(&m, &[]),
            Err(NetmapRefusal::SelfAddress(net(bad))),
            "{bad}"
        );
    }
    for bad in [
        "10.0.0.5/7",
        "10.0.0.5/31",
        "10.0.0.5/32",
        "fd00::5/47",
        "fd00::5/121",
        "fd00::5/128",
    ] {
        let mut m = map("lab.warren.internal");
        m.self_node.addresses = vec![net(bad)];
        assert_eq!(
            check_netmap(&m, &[]),
            Err(NetmapRefusal::SelfPrefix(net(bad))),
            "{bad}"
        );
    }
    let mut pending = map("lab.warren.internal");
    pending.self_node.addresses.clear();
    assert_eq!(check_netmap(&pending, &[]), Ok(()));
}

#[test]
fn peer_addresses_must_be_host_prefixes() {
    for bad in [
        "10.147.0.0/16",
        "0.0.0.0/0",
        "::/0",
        "fd00::6/64",
        "127.0.0.1/32",
        "ff02::1/128",
    ] {
        let mut m = map("lab.warren.internal");
        m.peers[0].addresses = vec![net(bad)];
        assert!(
            matches!(
                check_netmap(&m, &[]),
                Err(NetmapRefusal::PeerAddress { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_full_map_older_than_the_one_held_is_ignored() {
    let m = map("lab.warren.internal");
    assert_eq!(
        judge(&m, true, Some(4), &[]),
        Verdict::IgnoreOlder { held: 4 }
    );
    assert_eq!(
        judge(&m, true, Some(3), &[]),
        Verdict::Apply,
        "the same version again (a resync)"
    );
    assert_eq!(judge(&m, true, Some(2), &[]), Verdict::Apply);
    assert_eq!(judge(&m, true, None, &[]), Verdict::Apply);
    // A delta result was checked against the held version by its base.
    assert_eq!(judge(&m, false, Some(4), &[]), Verdict::Apply);
    let bad = map("example.com");
    assert!(matches!(
        judge(&bad, true, Some(1), &[]),
        Verdict::Refuse(_)
    ));
}
