//! Tests of route approval, primaries and what netmaps carry.
use super::*;
use warren_proto::NodePrivateKey;

fn net() -> NetworkId {
    "8056c2e21c000001".parse().unwrap()
}

fn prefix(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn member(seed: u8, online: bool, last_seen: &str) -> Member {
    let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
    let node_id = NodeId::from_key(&key);
    Member {
        network_id: net(),
        node_id,
        name: Some(format!("n{seed}")),
        requested_name: String::new(),
        public_key: key,
        ipv4: Some(std::net::Ipv4Addr::new(10, 147, 0, seed)),
        ipv6: Some(net().ula_address(&node_id)),
        authorized: true,
        state: MemberState::Authorized,
        online,
        last_seen: Some(last_seen.to_owned()),
        endpoints: vec![format!("198.51.100.{seed}:41641").parse().unwrap()],
        agent_version: String::new(),
        created_at: String::new(),
        owner: None,
        owner_groups: Vec::new(),
        expires_at: None,
        expired: false,
    }
}

fn route(m: &Member, p: &str, advertised: bool, approved: bool) -> Route {
    Route {
        network_id: net(),
        node_id: m.node_id,
        prefix: prefix(p),
        site: None,
        advertised,
        approved,
        approved_by: None,
        approved_at: None,
        created_at: String::new(),
    }
}

fn network() -> Network {
    Network {
        id: net(),
        name: "prod".into(),
        pool: "10.147.0.0/16".parse().unwrap(),
        ipv6_prefix: net().ula_prefix(),
        zone: "prod.warren.internal".into(),
        mtu: 1420,
        netmap_version: 1,
        device_expiry_secs: 0,
        created_at: String::new(),
    }
}

fn snapshot(members: Vec<Member>, routes: Vec<Route>) -> NetworkSnapshot {
    NetworkSnapshot {
        network: network(),
        members,
        services: Vec::new(),
        routes,
        policy: Default::default(),
        sites: Default::default(),
    }
}

const T1: &str = "2026-01-01T10:00:00Z";
const T2: &str = "2026-01-01T11:00:00Z";

#[test]
fn overlay_pool_and_bad_prefixes_are_refused() {
    let n = network();
    assert!(check_advertised(&prefix("10.96.0.0/12"), &n).is_ok());
    assert!(check_advertised(&prefix("0.0.0.0/0"), &n).is_ok());
    for bad in ["10.0.0.0/8", "10.147.3.0/24", "10.147.0.0/16"] {
        let err = check_advertised(&prefix(bad), &n).unwrap_err();
        assert!(
            matches!(err, RouteRefusal::OverlayPool { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("overlay prefix 10.147.0.0/16"));
    }
    let ula = IpNet::V6(net().ula_prefix());
    assert!(matches!(
        check_advertised(&ula, &n),
        Err(RouteRefusal::OverlayPool { .. })
    ));
    assert!(matches!(
        check_advertised(&prefix("10.96.0.1/12"), &n),
        Err(RouteRefusal::Prefix(PrefixError::HostBits { .. }))
    ));
}

#[test]
fn overlaps_are_refused_but_identical_prefixes_stand_by() {
    let a = member(1, true, T1);
    let b = member(2, true, T1);
    let members = vec![a.clone(), b.clone()];
    let routes = vec![route(&a, "10.96.0.0/12", true, true)];
    let checks = RouteChecks::default();
    let n = network();
    // The same prefix from another router: fail-over pair.
    assert!(check_approval(
        b.node_id,
        &prefix("10.96.0.0/12"),
        &n,
        &members,
        &routes,
        &checks
    )
    .is_ok());
    // Inside it, or around it: refused, naming the other route.
    for p in ["10.96.0.0/16", "10.64.0.0/10"] {
        let err =
            check_approval(b.node_id, &prefix(p), &n, &members, &routes, &checks).unwrap_err();
        assert!(matches!(err, RouteRefusal::Overlap { .. }), "{p}: {err}");
        assert!(err.to_string().contains("10.96.0.0/12"), "{err}");
        assert!(err.to_string().contains("n1"), "{err}");
    }
    // Also for the same node's own routes.
    assert!(check_approval(
        a.node_id,
        &prefix("10.96.1.0/24"),
        &n,
        &members,
        &routes,
        &checks
    )
    .is_err());
    // Not approved yet: no conflict.
    let pending = vec![route(&a, "10.96.0.0/12", true, false)];
    assert!(check_approval(
        b.node_id,
        &prefix("10.96.0.0/16"),
        &n,
        &members,
        &pending,
        &checks
    )
    .is_ok());
    // Exit routes overlap everything and conflict with nothing.
    assert!(check_approval(
        b.node_id,
        &prefix("0.0.0.0/0"),
        &n,
        &members,
        &routes,
        &checks
    )
    .is_ok());
}

#[test]
fn routes_capturing_the_controller_or_a_peer_endpoint_are_refused() {
    let a = member(1, true, T1);
    let b = member(2, true, T1);
    let members = vec![a.clone(), b.clone()];
    let n = network();
    let checks = RouteChecks {
        controller_ips: vec!["192.0.2.10".parse().unwrap()],
        ..RouteChecks::default()
    };
    let err = check_approval(
        a.node_id,
        &prefix("192.0.2.0/24"),
        &n,
        &members,
        &[],
        &checks,
    )
    .unwrap_err();
    assert!(
        matches!(err, RouteRefusal::ControllerAddress { .. }),
        "{err}"
    );
    // b is reached at 198.51.100.2: a may not route it...
    let err = check_approval(
        a.node_id,
        &prefix("198.51.100.0/24"),
        &n,
        &members,
        &[],
        &checks,
    )
    .unwrap_err();
    assert!(
        matches!(&err, RouteRefusal::PeerEndpoint { node, .. } if *node == b.node_id),
        "{err}"
    );
    // ...but its own endpoint inside its own route is fine (with no
    // other member there).
    let alone = vec![a.clone()];
    assert!(check_approval(
        a.node_id,
        &prefix("198.51.100.0/24"),
        &n,
        &alone,
        &[],
        &checks
    )
    .is_ok());
    // A default route captures everything by design.
    assert!(check_approval(a.node_id, &prefix("0.0.0.0/0"), &n, &members, &[], &checks).is_ok());
}

#[test]
fn one_primary_per_prefix_and_site() {
    let a = member(1, true, T1);
    let b = member(2, true, T2);
    let c = member(3, true, T2);
    let sited = |m: &Member, site: &str| Route {
        site: Some(site.into()),
        ..route(m, "10.96.0.0/12", true, true)
    };
    // a and b for site m (a pair), c for site w (another destination).
    let routes = vec![sited(&a, "m"), sited(&b, "m"), sited(&c, "w")];
    let p = primaries(&snapshot(
        vec![a.clone(), b.clone(), c.clone()],
        routes.clone(),
    ));
    assert!(
        p.contains_key(&a.node_id) && p.contains_key(&c.node_id),
        "{p:?}"
    );
    assert!(!p.contains_key(&b.node_id), "{p:?}");
    // m's primary goes: b takes over; w's is untouched.
    let a_off = member(1, false, "2026-01-01T12:00:00Z");
    let p = primaries(&snapshot(vec![a_off, b.clone(), c.clone()], routes.clone()));
    assert!(
        p.contains_key(&b.node_id) && p.contains_key(&c.node_id),
        "{p:?}"
    );
    // Approval: another site may overlap (IPv4), the same site may not.
    let n = network();
    let members = vec![a.clone(), b.clone(), c.clone()];
    let checks = RouteChecks::default();
    let only_c = vec![sited(&c, "w")];
    let pending_a = Route {
        approved: false,
        ..sited(&a, "m")
    };
    let with_a = vec![pending_a, sited(&c, "w")];
    assert!(check_approval(
        a.node_id,
        &prefix("10.96.0.0/16"),
        &n,
        &members,
        &with_a,
        &checks
    )
    .is_ok());
    let err = check_approval(
        b.node_id,
        &prefix("10.96.0.0/16"),
        &n,
        &members,
        &only_c,
        &checks,
    )
    .unwrap_err();
    assert!(matches!(err, RouteRefusal::SiteAndNoSite { .. }), "{err}");
    let b_rows = vec![
        sited(&a, "m"),
        Route {
            approved: false,
            ..sited(&b, "m")
        },
    ];
    assert!(check_approval(
        b.node_id,
        &prefix("10.96.0.0/12"),
        &n,
        &members,
        &b_rows,
        &checks
    )
    .is_ok());
    let err = check_approval(
        b.node_id,
        &prefix("10.96.0.0/16"),
        &n,
        &members,
        &b_rows,
        &checks,
    )
    .unwrap_err();
    assert!(matches!(err, RouteRefusal::Overlap { .. }), "{err}");
}

#[test]
fn one_primary_per_prefix_sticky_and_failing_over() {
    let a = member(1, true, T1);
    let b = member(2, true, T2);
    let routes = vec![
        route(&a, "10.96.0.0/12", true, true),
        route(&b, "10.96.0.0/12", true, true),
    ];
    // Both online: the one online longest (a) is primary.
    let p = primaries(&snapshot(vec![a.clone(), b.clone()], routes.clone()));
    assert_eq!(p.get(&a.node_id).map(|s| s.len()), Some(1));
    assert!(!p.contains_key(&b.node_id));
    // a goes offline: b takes over.
    let a_off = member(1, false, "2026-01-01T12:00:00Z");
    let p = primaries(&snapshot(vec![a_off.clone(), b.clone()], routes.clone()));
    assert!(p.contains_key(&b.node_id) && !p.contains_key(&a.node_id));
    // a comes back (online since later than b): b stays primary.
    let a_back = member(1, true, "2026-01-01T12:05:00Z");
    let p = primaries(&snapshot(vec![a_back, b.clone()], routes.clone()));
    assert!(p.contains_key(&b.node_id) && !p.contains_key(&a.node_id));
    // Nobody online: the one seen last keeps it, so maps never empty.
    let b_off = member(2, false, "2026-01-01T12:01:00Z");
    let p = primaries(&snapshot(vec![a_off, b_off], routes));
    assert!(
        p.contains_key(&b.node_id) && !p.contains_key(&a.node_id),
        "{p:?}"
    );
}

#[test]
fn only_served_routes_reach_netmaps() {
    let a = member(1, true, T1);
    let b = member(2, true, T1);
    let mut revoked = member(3, true, T1);
    revoked.state = MemberState::Revoked;
    let routes = vec![
        route(&a, "10.96.0.0/12", true, true),
        route(&a, "10.112.0.0/12", true, false),
        route(&a, "0.0.0.0/0", true, true),
        route(&b, "172.16.0.0/16", false, true),
        route(&revoked, "192.168.0.0/16", true, true),
    ];
    let snap = snapshot(vec![a.clone(), b.clone(), revoked], routes);
    let map = crate::netmaps::build(&snap, b.node_id, &[]).unwrap();
    let a_peer = map.peers.iter().find(|p| p.node_id == a.node_id).unwrap();
    assert_eq!(
        a_peer.routes,
        vec![prefix("0.0.0.0/0"), prefix("10.96.0.0/12")]
    );
    // b approved but not advertised: nothing in its own map either.
    assert!(map.self_node.routes.is_empty());
    let a_map = crate::netmaps::build(&snap, a.node_id, &[]).unwrap();
    assert_eq!(
        a_map.self_node.routes,
        vec![
            SelfRoute {
                prefix: prefix("0.0.0.0/0"),
                approved: true,
                primary: true
            },
            SelfRoute {
                prefix: prefix("10.96.0.0/12"),
                approved: true,
                primary: true
            },
            SelfRoute {
                prefix: prefix("10.112.0.0/12"),
                approved: false,
                primary: false
            },
        ]
    );
}

#[test]
fn controller_addresses_skip_wildcards_and_unmap_v4() {
    let c = ControllerAddresses::default();
    c.note(Some("::ffff:192.0.2.10".parse().unwrap()));
    c.note(Some("0.0.0.0".parse().unwrap()));
    c.note(None);
    assert_eq!(
        c.checks().controller_ips,
        vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
}
