//! Builds what one member sees of its network, from a snapshot (pure): the
//! part all members share once per snapshot ([`SharedView`]), the rest per
//! member.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use warren_proto::netmap::{DnsConfig, Netmap, NetmapDelta, NetmapPeer, NetworkSettings, SelfNode};
use warren_proto::NodeId;

use crate::store::{Member, MemberState, NetworkSnapshot};

mod view;

pub use view::{SharedView, ViewChange, Visibility};

/// The netmap of `node` in the snapshot's network, or `None` if it is not a
/// member. Members that are not authorized get themselves and nothing else:
/// no addresses and no peers, so a revoked node tears its tunnels down.
/// `stun_ports` are the controller's STUN ports (nodes pair them with the
/// controller address they connect to).
pub fn build(snapshot: &NetworkSnapshot, node: NodeId, stun_ports: &[u16]) -> Option<Netmap> {
    build_from(snapshot, &SharedView::of(snapshot), node, stun_ports)
}

/// [`build`] from a view already made of the same snapshot.
pub fn build_from(
    snapshot: &NetworkSnapshot,
    view: &SharedView,
    node: NodeId,
    stun_ports: &[u16],
) -> Option<Netmap> {
    let mut map = header(snapshot, view, node, stun_ports)?;
    map.peers = view.others_of(&map).map(|(p, _)| p.clone()).collect();
    Some(map)
}

/// Everything of `node`'s netmap but the peers (left empty), which come
/// from `view`: [`SentNetmap::diff_parts`](warren_proto::netmap::SentNetmap::diff_parts)
/// compares them by digest. An authorized member's map carries the filter
/// its policy compiles to; any other member's denies everything.
pub fn header(
    snapshot: &NetworkSnapshot,
    view: &SharedView,
    node: NodeId,
    stun_ports: &[u16],
) -> Option<Netmap> {
    let network = &snapshot.network;
    // The view is of this snapshot; a view of another finds no one.
    let me = snapshot
        .members
        .get(*view.members.get(&node)?)
        .filter(|m| m.node_id == node)?;
    let assigned = me
        .assigned()
        .filter(|_| me.state == MemberState::Authorized);
    let authorized = assigned.is_some();
    // A member that is not authorized sees itself and nothing else: no
    // addresses, no peers, no services and so no other member's name.
    let (name, fqdn, addresses, dns) = match assigned {
        Some((name, v4, v6)) => (
            name.to_string(),
            format!("{name}.{}", network.zone),
            vec![
                IpNet::V4(Ipv4Net::new(v4, network.pool.prefix_len()).unwrap_or_default()),
                IpNet::V6(Ipv6Net::new(v6, 64).unwrap_or_default()),
            ],
            view.dns.clone(),
        ),
        None => (
            me.requested_name.clone(),
            String::new(),
            Vec::new(),
            DnsConfig {
                zone: network.zone.clone(),
                services: Vec::new(),
            },
        ),
    };
    let mut map = Netmap {
        network_id: network.id,
        network_name: network.name.clone(),
        version: network.netmap_version,
        self_node: SelfNode {
            node_id: me.node_id,
            name,
            fqdn,
            addresses,
            authorized,
            routes: Vec::new(),
            owner: me.owner.clone(),
            expires_at: me.expires_at.clone(),
            expired: me.expired,
        },
        peers: Vec::new(),
        dns,
        settings: NetworkSettings {
            mtu: network.mtu,
            stun_ports: stun_ports.to_vec(),
            sites: if authorized {
                view.sites.clone()
            } else {
                Vec::new()
            },
        },
        filter: Some(view.policy.filter_of(&node)),
    };
    crate::routes::fill_self_routes(snapshot, node, view.primary_routes(node), &mut map);
    Some(map)
}

/// The peer a member is to the others; `None` for one without a name and
/// addresses (never authorized).
fn peer(member: &Member) -> Option<NetmapPeer> {
    let (name, v4, v6) = member.assigned()?;
    Some(NetmapPeer {
        node_id: member.node_id,
        name: name.to_string(),
        public_key: member.public_key,
        addresses: vec![IpNet::V4(Ipv4Net::from(v4)), IpNet::V6(Ipv6Net::from(v6))],
        routes: Vec::new(),
        endpoints: member.endpoints.clone(),
        online: member.online,
    })
}

/// True if a delta carries no change: only its version moved.
pub fn is_empty(delta: &NetmapDelta) -> bool {
    delta.self_node.is_none()
        && delta.network_name.is_none()
        && delta.dns.is_none()
        && delta.settings.is_none()
        && delta.filter.is_none()
        && delta.upsert_peers.is_empty()
        && delta.remove_peers.is_empty()
}

#[cfg(test)]
mod tests {
    use super::view::CHANGE_HISTORY;
    use super::*;
    use crate::store::Network;
    use warren_proto::{NetworkId, NodePrivateKey};

    fn member(seed: u8, last: u8, state: MemberState) -> Member {
        let net: NetworkId = "8056c2e21c000001".parse().unwrap();
        let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
        let node_id = NodeId::from_key(&key);
        Member {
            network_id: net,
            node_id,
            name: Some(format!("n{seed}")),
            requested_name: String::new(),
            public_key: key,
            ipv4: Some(std::net::Ipv4Addr::new(10, 147, 0, last)),
            ipv6: Some(net.ula_address(&node_id)),
            authorized: state == MemberState::Authorized,
            state,
            online: true,
            last_seen: None,
            endpoints: vec!["192.0.2.1:51820".parse().unwrap()],
            agent_version: String::new(),
            created_at: String::new(),
            owner: None,
            owner_groups: Vec::new(),
            expires_at: None,
            expired: false,
        }
    }

    fn snapshot(members: Vec<Member>) -> NetworkSnapshot {
        let id: NetworkId = "8056c2e21c000001".parse().unwrap();
        NetworkSnapshot {
            network: Network {
                id,
                name: "prod".into(),
                pool: "10.147.0.0/16".parse().unwrap(),
                ipv6_prefix: id.ula_prefix(),
                zone: "prod.warren.internal".into(),
                mtu: 1420,
                netmap_version: 7,
                device_expiry_secs: 0,
                created_at: String::new(),
            },
            members,
            services: Vec::new(),
            routes: Vec::new(),
            policy: Default::default(),
            sites: Default::default(),
        }
    }

    #[test]
    fn authorized_members_see_authorized_peers_only() {
        let a = member(1, 1, MemberState::Authorized);
        let b = member(2, 2, MemberState::Authorized);
        let c = member(3, 3, MemberState::Pending);
        let d = member(4, 4, MemberState::Revoked);
        let snap = snapshot(vec![a.clone(), b.clone(), c.clone(), d]);
        let map = build(&snap, a.node_id, &[3478, 3479]).unwrap();
        assert_eq!(map.version, 7);
        assert_eq!(map.settings.stun_ports, [3478, 3479]);
        assert_eq!(map.self_node.fqdn, "n1.prod.warren.internal");
        assert_eq!(map.self_node.addresses[0].to_string(), "10.147.0.1/16");
        assert_eq!(map.self_node.addresses[1].prefix_len(), 64);
        assert_eq!(map.peers.len(), 1);
        assert_eq!(map.peers[0].node_id, b.node_id);
        assert_eq!(map.peers[0].addresses[0].to_string(), "10.147.0.2/32");
        assert_eq!(map.peers[0].addresses[1].prefix_len(), 128);
        assert_eq!(map.settings.mtu, 1420);
        assert_eq!(map.dns.zone, "prod.warren.internal");

        let pending = build(&snap, c.node_id, &[]).unwrap();
        assert!(!pending.self_node.authorized);
        assert!(pending.self_node.addresses.is_empty());
        assert!(pending.peers.is_empty());
    }

    #[test]
    fn non_members_get_nothing_and_tombstones_empty_the_map() {
        let a = member(1, 1, MemberState::Authorized);
        let b = member(2, 2, MemberState::Authorized);
        let snap = snapshot(vec![a.clone(), b]);
        let stranger = member(9, 9, MemberState::Authorized);
        assert!(build(&snap, stranger.node_id, &[]).is_none());
        let map = build(&snap, a.node_id, &[]).unwrap();
        let gone = warren_proto::netmap::SentNetmap::of(&map).tombstone(0);
        assert_eq!(gone.version, 8);
        assert!(!is_empty(&gone));
        let mut applied = map.clone();
        applied.apply(&gone).unwrap();
        assert!(!applied.self_node.authorized && applied.peers.is_empty());
        assert!(is_empty(&map.diff(&map)));
    }

    #[test]
    fn deltas_from_the_shared_view_match_whole_map_diffs() {
        let a = member(1, 1, MemberState::Authorized);
        let b = member(2, 2, MemberState::Authorized);
        let c = member(3, 3, MemberState::Authorized);
        let before = snapshot(vec![a.clone(), b.clone(), c.clone()]);
        let mut b2 = b.clone();
        b2.online = false;
        let d = member(4, 4, MemberState::Authorized);
        let mut after = snapshot(vec![a.clone(), b2, d]);
        after.network.netmap_version = 8;
        for node in [a.node_id, b.node_id] {
            let old = build(&before, node, &[3478]).unwrap();
            let new = build(&after, node, &[3478]).unwrap();
            let view = SharedView::of(&after);
            let head = header(&after, &view, node, &[3478]).unwrap();
            let sent = warren_proto::netmap::SentNetmap::of(&old);
            let visible = view.visibility(&head);
            let from_view = sent.diff_parts(&head, &view.peers, |p| visible.sees(p));
            let mut whole = sent.diff(&new);
            whole.upsert_peers.sort_by_key(|p| p.node_id);
            assert_eq!(from_view, whole);
            let mut applied = old.clone();
            applied.apply(&from_view).unwrap();
            assert_eq!(applied, new);
            assert!(
                from_view.upsert_peers.iter().all(|p| p.node_id != node),
                "a member is never its own peer"
            );
        }
    }

    #[test]
    fn a_view_made_after_another_names_the_peers_that_changed() {
        let a = member(1, 1, MemberState::Authorized);
        let b = member(2, 2, MemberState::Authorized);
        let c = member(3, 3, MemberState::Authorized);
        let first = SharedView::after(&snapshot(vec![a.clone(), b.clone(), c.clone()]), None);
        assert!(first.changes.is_empty());
        let mut b_offline = b.clone();
        b_offline.online = false;
        let d = member(4, 4, MemberState::Authorized);
        // b goes offline, c is revoked, d comes; a is as it was.
        let mut c_revoked = c.clone();
        c_revoked.state = MemberState::Revoked;
        c_revoked.authorized = false;
        let next = snapshot(vec![a.clone(), b_offline, c_revoked, d.clone()]);
        let second = SharedView::after(&next, Some(&first));
        let change = second.change_from(first.id).unwrap();
        assert_eq!(change.from, first.id);
        let mut expected = vec![b.node_id, c.node_id, d.node_id];
        expected.sort();
        assert_eq!(change.peers, expected);
        assert!(change.everyone_sees_everyone, "the default policy");
        // What a's session sends from the shortcut is what the full
        // comparison sends.
        let head = header(&next, &second, a.node_id, &[]).unwrap();
        let old = build_from(
            &snapshot(vec![a.clone(), b, c, member(4, 4, MemberState::Pending)]),
            &first,
            a.node_id,
            &[],
        )
        .unwrap();
        let sent = warren_proto::netmap::SentNetmap::of(&old);
        let visible = second.visibility(&head);
        let mut fast = sent.diff_changed(&head, &second.peers, &change.peers, |p| visible.sees(p));
        let mut full = sent.diff_parts(&head, &second.peers, |p| visible.sees(p));
        for delta in [&mut fast, &mut full] {
            delta.upsert_peers.sort_by_key(|p| p.node_id);
            delta.remove_peers.sort();
        }
        assert_eq!(fast, full);
    }

    /// The peers part a view shares among its members makes, with each
    /// member's own header, the frame that member's own delta made: the
    /// same bytes, so any node decodes it as before.
    #[test]
    fn the_shared_peers_part_makes_each_members_own_frame() {
        use warren_proto::control::ControllerMessage;
        use warren_proto::control::{decode_frame, encode_delta_frame, encode_frame};
        let members: Vec<Member> = (1..=5)
            .map(|i| member(i, i, MemberState::Authorized))
            .collect();
        let before = snapshot(members.clone());
        let first = SharedView::after(&before, None);
        // n2 goes offline, n3 is revoked, n6 comes, n5 moves to a new
        // endpoint; the network is renamed, so each header changes too.
        let mut next_members = members.clone();
        next_members[1].online = false;
        next_members[2].state = MemberState::Revoked;
        next_members[4].endpoints = vec!["198.51.100.5:41641".parse().unwrap()];
        next_members.push(member(6, 6, MemberState::Authorized));
        let mut after = snapshot(next_members);
        after.network.netmap_version = 8;
        after.network.name = "production".into();
        let second = SharedView::after(&after, Some(&first));
        let change = second.change_from(first.id).unwrap();
        let shared = change.shared.as_ref().expect("everyone sees everyone");
        assert_eq!(shared.upserted.len(), 3);
        assert_eq!(shared.removed, [members[2].node_id]);
        for m in &members {
            let old = build_from(&before, &first, m.node_id, &[]).unwrap();
            let sent = warren_proto::netmap::SentNetmap::of(&old);
            let head = header(&after, &second, m.node_id, &[]).unwrap();
            let visible = second.visibility(&head);
            let own = sent.diff_changed(&head, &second.peers, &change.peers, |p| visible.sees(p));
            let Some(peers) = change.shared_for(&m.node_id) else {
                // A member that is itself among the changed peers diffs
                // its own.
                assert!(change.peers.contains(&m.node_id));
                continue;
            };
            let frame = encode_delta_frame(&sent.header_delta(&head), peers).unwrap();
            let own = ControllerMessage::NetmapDelta(own);
            assert_eq!(frame, encode_frame(&own).unwrap());
            assert_eq!(decode_frame::<ControllerMessage>(&frame[4..]).unwrap(), own);
            // What the session keeps after it is what the own delta left.
            let ControllerMessage::NetmapDelta(own) = own else {
                unreachable!()
            };
            let (mut by_own, mut by_shared) = (sent.clone(), sent.clone());
            by_own.advance(&head, &own, |p| second.digest_of(p));
            by_shared.advance_with(&head, &peers.removed, peers.upserted.iter().copied());
            assert_eq!(by_own, by_shared);
            let mut applied = old.clone();
            applied.apply(&own).unwrap();
            assert_eq!(
                applied,
                build_from(&after, &second, m.node_id, &[]).unwrap()
            );
        }
        assert_eq!(
            members
                .iter()
                .filter(|m| change.shared_for(&m.node_id).is_some())
                .count(),
            2,
            "n1 and n4 share it"
        );
        // Where policy decides who sees whom, every session diffs its own.
        let mut limited = after.clone();
        limited.policy.current = Some(crate::store::PolicyVersion {
            network_id: limited.network.id,
            version: 2,
            text: "[[allow]]\nfrom = [\"n1\"]\nto = [\"n4\"]\n".into(),
            created_by: String::new(),
            created_at: String::new(),
        });
        let third = SharedView::after(&limited, Some(&second));
        assert!(third.change_from(second.id).unwrap().shared.is_none());
    }

    /// A session that missed a view (changes came while it was busy)
    /// still diffs only what changed since its last map: a peer that
    /// changed and changed back is not among them.
    #[test]
    fn a_view_knows_what_changed_since_the_views_before_the_last() {
        let members: Vec<Member> = (1..=4)
            .map(|i| member(i, i, MemberState::Authorized))
            .collect();
        let first_snap = snapshot(members.clone());
        let first = SharedView::after(&first_snap, None);
        let mut next = members.clone();
        next[1].online = false;
        next[2].online = false;
        let second = SharedView::after(&snapshot(next.clone()), Some(&first));
        next[1].online = true;
        next.push(member(5, 5, MemberState::Authorized));
        let third_snap = snapshot(next);
        let third = SharedView::after(&third_snap, Some(&second));
        assert_eq!(third.changes.len(), 2);
        let since_first = third.change_from(first.id).unwrap();
        let mut expected = vec![
            members[2].node_id,
            member(5, 5, MemberState::Authorized).node_id,
        ];
        expected.sort();
        assert_eq!(since_first.peers, expected, "n2 went offline and came back");
        assert_eq!(third.change_from(second.id).unwrap().peers.len(), 2);
        let me = members[0].node_id;
        let old = build_from(&first_snap, &first, me, &[]).unwrap();
        let sent = warren_proto::netmap::SentNetmap::of(&old);
        let head = header(&third_snap, &third, me, &[]).unwrap();
        let visible = third.visibility(&head);
        let fast = sent.diff_changed(&head, &third.peers, &since_first.peers, |p| visible.sees(p));
        let mut full = sent.diff_parts(&head, &third.peers, |p| visible.sees(p));
        full.upsert_peers.sort_by_key(|p| p.node_id);
        assert_eq!(fast, full);
        // Views older than the history are not known: a full diff.
        let mut view = third;
        for _ in 0..CHANGE_HISTORY {
            view = SharedView::after(&third_snap, Some(&view));
        }
        assert!(view.change_from(first.id).is_none());
        assert!(view.changes.iter().all(|c| c.peers.is_empty()));
    }

    #[test]
    fn policy_decides_which_peers_a_member_sees_and_ships_its_filter() {
        let a = member(1, 1, MemberState::Authorized);
        let b = member(2, 2, MemberState::Authorized);
        let c = member(3, 3, MemberState::Authorized);
        let mut snap = snapshot(vec![a.clone(), b.clone(), c.clone()]);
        // The default document: everyone sees everyone, and may send anything.
        let map = build(&snap, a.node_id, &[]).unwrap();
        assert_eq!(map.peers.len(), 2);
        let filter = map.filter.clone().expect("a filter");
        assert_eq!(filter.policy_version, 1);
        assert_eq!(filter.inbound.len(), 1);
        // n1 may reach n2 on tcp 22; n3 has nothing to do with either.
        snap.policy.current = Some(crate::store::PolicyVersion {
            network_id: snap.network.id,
            version: 2,
            text: "[[allow]]\nfrom = [\"n1\"]\nto = [\"n2\"]\nports = [\"tcp:22\"]\n".into(),
            created_by: String::new(),
            created_at: String::new(),
        });
        let seen = |node: NodeId| -> Vec<NodeId> {
            build(&snap, node, &[])
                .unwrap()
                .peers
                .iter()
                .map(|p| p.node_id)
                .collect()
        };
        assert_eq!(seen(a.node_id), [b.node_id]);
        assert_eq!(seen(b.node_id), [a.node_id]);
        assert!(seen(c.node_id).is_empty());
        let b_map = build(&snap, b.node_id, &[]).unwrap();
        let b_filter = b_map.filter.clone().unwrap();
        assert_eq!(b_filter.policy_version, 2);
        assert_eq!(b_filter.inbound.len(), 1);
        assert!(b_filter.outbound.is_empty());
        // The change reaches b as a delta that carries the new filter.
        let old = build(
            &snapshot(vec![a.clone(), b.clone(), c.clone()]),
            b.node_id,
            &[],
        )
        .unwrap();
        let delta = old.diff(&b_map);
        assert_eq!(delta.filter.as_ref(), Some(&b_filter));
        assert_eq!(delta.remove_peers, [c.node_id]);
        let mut applied = old.clone();
        applied.apply(&delta).unwrap();
        assert_eq!(applied, b_map);
        assert!(b_map.diff(&b_map).filter.is_none());
    }
}
