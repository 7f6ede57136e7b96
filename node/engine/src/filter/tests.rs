//! The filter as a whole: rules for first packets, replies by tracking, rejects, timeouts, bounds, policy changes and counters.

use std::time::{Duration, Instant};

use warren_proto::filter::{Direction, DropReason, PacketFilter, Protocol, Verdict};

use super::flow::{parse, Transport, TCP_ACK, TCP_SYN};
use super::reject::tests::{echo, tcp, udp};
use super::rules::tests::rule;
use super::*;

/// This node is 10.99.0.1 / fd00::1; its peer 10.99.0.2 / fd00::2 may
/// reach it on tcp:3000 and udp:53 and ping it; it may reach the peer on
/// tcp:22 only.
fn policy(version: u64) -> PacketFilter {
    PacketFilter {
        policy_version: version,
        inbound: vec![
            rule(
                "web",
                &["10.99.0.2/32", "fd00::2/128"],
                &["10.99.0.1/32", "fd00::1/128"],
                &["tcp:3000"],
            ),
            rule(
                "dns",
                &["10.99.0.2/32"],
                &["10.99.0.1/32"],
                &["udp:53", "icmp"],
            ),
        ],
        outbound: vec![rule(
            "ssh",
            &["10.99.0.1/32"],
            &["10.99.0.2/32"],
            &["tcp:22"],
        )],
    }
}

fn filter(t0: Instant) -> Filter {
    let mut f = Filter::new(FLOW_LIMIT, (1, 2));
    f.replace(Some(policy(1)), t0);
    f
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const PEER_WEB: &str = "10.99.0.2:40000";
const OWN_WEB: &str = "10.99.0.1:3000";

#[test]
fn without_rules_everything_passes_and_nothing_is_tracked() {
    let t0 = Instant::now();
    let mut f = Filter::new(FLOW_LIMIT, (1, 2));
    assert_eq!(
        f.handle_inbound(&tcp(PEER_WEB, "10.99.0.1:443", TCP_SYN, b""), t0),
        Ok(())
    );
    assert_eq!(f.handle_outbound(&[0x45, 1, 2], t0), Ok(()));
    assert_eq!(f.stats(t0).tracked_flows, 0);
    assert_eq!(f.stats(t0).policy_version, None);
    let e = f.explain(
        Direction::Inbound,
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        Protocol::Tcp,
        1,
    );
    assert_eq!((e.verdict, e.rule), (Verdict::Allow, None));
    // Back to no filter after one: everything passes again.
    f.replace(Some(policy(1)), t0);
    assert!(f
        .handle_inbound(&tcp(PEER_WEB, "10.99.0.1:443", TCP_SYN, b""), t0)
        .is_err());
    f.replace(None, t0);
    assert_eq!(
        f.handle_inbound(&tcp(PEER_WEB, "10.99.0.1:443", TCP_SYN, b""), t0),
        Ok(())
    );
}

#[test]
fn an_admitted_inbound_flow_gets_its_replies_out_and_nothing_else_passes() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    assert_eq!(
        f.handle_inbound(&tcp(PEER_WEB, OWN_WEB, TCP_SYN, b""), t0),
        Ok(())
    );
    // No outbound rule admits tcp from port 3000: only tracking lets the reply out.
    assert_eq!(
        f.handle_outbound(&tcp(OWN_WEB, PEER_WEB, TCP_SYN | TCP_ACK, b""), t0),
        Ok(())
    );
    assert_eq!(
        f.handle_inbound(&tcp(PEER_WEB, OWN_WEB, TCP_ACK, b"GET /"), t0),
        Ok(())
    );
    assert_eq!(f.poll_tun_packet(), None);
    assert_eq!(
        f.handle_inbound(&tcp(PEER_WEB, "10.99.0.1:443", TCP_SYN, b""), t0),
        Err(DropReason::NoRule)
    );
    // A third address may not use the flow's rule.
    assert_eq!(
        f.handle_inbound(&tcp("10.99.0.3:40000", OWN_WEB, TCP_SYN, b""), t0),
        Err(DropReason::NoRule)
    );
    // IPv6 by the same rule.
    assert_eq!(
        f.handle_inbound(&tcp("[fd00::2]:1", "[fd00::1]:3000", TCP_SYN, b""), t0),
        Ok(())
    );
    assert_eq!(
        f.handle_outbound(&tcp("[fd00::1]:3000", "[fd00::2]:1", TCP_ACK, b""), t0),
        Ok(())
    );
    let stats = f.stats(t0);
    assert_eq!(stats.tracked_flows, 2);
    assert_eq!(stats.dropped_inbound.no_rule, 2);
    let web = stats.rule_hits.iter().find(|h| h.rule == "web").unwrap();
    assert_eq!((web.direction, web.flows), (Direction::Inbound, 2));
}

#[test]
fn udp_and_echo_replies_pass_by_tracking_and_unsolicited_ones_do_not() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    assert_eq!(
        f.handle_inbound(&udp("10.99.0.2:5353", "10.99.0.1:53"), t0),
        Ok(())
    );
    assert_eq!(
        f.handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:5353"), t0),
        Ok(())
    );
    assert!(f
        .handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:5354"), t0)
        .is_err());
    assert_eq!(
        f.handle_inbound(&echo("10.99.0.2", "10.99.0.1", 7, true), t0),
        Ok(())
    );
    assert_eq!(
        f.handle_outbound(&echo("10.99.0.1", "10.99.0.2", 7, false), t0),
        Ok(())
    );
    // The peer may ping us; that does not let us ping it with the same identifier.
    assert_eq!(
        f.handle_outbound(&echo("10.99.0.1", "10.99.0.2", 7, true), t0),
        Err(DropReason::NoRule)
    );
    assert!(f
        .handle_outbound(&echo("10.99.0.1", "10.99.0.2", 8, false), t0)
        .is_err());
    // Another protocol: only `*` would admit it.
    let mut gre = udp("10.99.0.2:1", "10.99.0.1:53");
    gre[9] = 47;
    assert_eq!(f.handle_inbound(&gre, t0), Err(DropReason::NoRule));
}

#[test]
fn flows_time_out_and_then_their_replies_are_denied() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    f.handle_inbound(&udp("10.99.0.2:5353", "10.99.0.1:53"), t0)
        .unwrap();
    f.handle_inbound(&echo("10.99.0.2", "10.99.0.1", 7, true), t0)
        .unwrap();
    assert_eq!(f.poll_timeout(), Some(t0 + ICMP_IDLE));
    f.handle_timeout(t0 + ICMP_IDLE);
    assert!(f
        .handle_outbound(&echo("10.99.0.1", "10.99.0.2", 7, false), t0 + ICMP_IDLE)
        .is_err());
    assert_eq!(
        f.handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:5353"), t0 + secs(100)),
        Ok(())
    );
    // The reply kept the flow alive past the first 120 s.
    let later = t0 + secs(100) + UDP_IDLE - secs(1);
    assert_eq!(
        f.handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:5353"), later),
        Ok(())
    );
    let gone = later + UDP_IDLE;
    assert!(f
        .handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:5353"), gone)
        .is_err());
    assert_eq!(f.stats(gone).flows_expired, 2);
}

#[test]
fn a_denied_outbound_packet_gets_admin_prohibited_and_a_cut_connection_a_reset() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    let syn = tcp("10.99.0.1:40000", "10.99.0.2:443", TCP_SYN, b"");
    assert_eq!(f.handle_outbound(&syn, t0), Err(DropReason::NoRule));
    let icmp = f.poll_tun_packet().expect("an ICMP error for the SYN");
    assert_eq!((icmp[20], icmp[21]), (3, 13));
    assert_eq!(f.poll_tun_packet(), None, "no reset for a SYN");
    let data = tcp("[fd00::1]:40000", "[fd00::2]:443", TCP_ACK, b"x");
    assert!(f.handle_outbound(&data, t0).is_err());
    let icmp6 = f.poll_tun_packet().unwrap();
    assert_eq!((icmp6[40], icmp6[41]), (1, 1));
    let rst = parse(&f.poll_tun_packet().expect("a reset")).unwrap();
    assert!(matches!(
        rst.transport,
        Transport::Tcp {
            src_port: 443,
            dst_port: 40000,
            ..
        }
    ));
    assert_eq!(f.stats(t0).rejects_sent, 3);
    // Nothing for a malformed packet; and the queue is bounded.
    assert_eq!(
        f.handle_outbound(&[0x45, 0, 0], t0),
        Err(DropReason::Malformed)
    );
    assert_eq!(f.poll_tun_packet(), None);
    for _ in 0..REJECT_QUEUE + 10 {
        let _ = f.handle_outbound(&syn, t0);
    }
    assert_eq!(
        std::iter::from_fn(|| f.poll_tun_packet()).count(),
        REJECT_QUEUE
    );
    assert_eq!(
        f.stats(t0).dropped_outbound.no_rule,
        REJECT_QUEUE as u64 + 12
    );
}

#[test]
fn an_icmp_error_about_a_tracked_flow_passes() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    let ssh = tcp("10.99.0.1:40000", "10.99.0.2:22", TCP_SYN, b"");
    f.handle_outbound(&ssh, t0).unwrap();
    // The peer says "too big" about our segment; make it look like one by reusing a reject.
    let mut about_ssh = Filter::new(4, (1, 2));
    about_ssh.replace(Some(PacketFilter::default()), t0);
    let _ = about_ssh.handle_outbound(&ssh, t0);
    let error = about_ssh.poll_tun_packet().unwrap();
    assert_eq!(f.handle_inbound(&error, t0), Ok(()));
    // One about a flow nobody tracks is an ICMP packet like any other: the
    // `dns` rule admits ICMP from the peer, so use a stranger.
    let untracked = tcp("10.99.0.1:40001", "10.99.0.2:23", TCP_SYN, b"");
    let _ = about_ssh.handle_outbound(&untracked, t0);
    let mut other = about_ssh.poll_tun_packet().unwrap();
    other[12..16].copy_from_slice(&[10, 99, 0, 3]);
    assert_eq!(f.handle_inbound(&other, t0), Err(DropReason::NoRule));
}

#[test]
fn a_replace_cuts_the_flows_it_no_longer_allows_and_keeps_the_rest() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    f.handle_inbound(&tcp(PEER_WEB, OWN_WEB, TCP_SYN, b""), t0)
        .unwrap();
    f.handle_outbound(&tcp(OWN_WEB, PEER_WEB, TCP_SYN | TCP_ACK, b""), t0)
        .unwrap();
    f.handle_inbound(&udp("10.99.0.2:5353", "10.99.0.1:53"), t0)
        .unwrap();
    let mut withdrawn = policy(2);
    withdrawn.inbound.remove(0);
    f.replace(Some(withdrawn), t0 + secs(1));
    let stats = f.stats(t0 + secs(1));
    assert_eq!(
        (stats.flows_cut, stats.tracked_flows, stats.policy_version),
        (1, 1, Some(2))
    );
    // The open connection's next segment is refused both ways; the local socket gets a reset.
    assert!(f
        .handle_inbound(&tcp(PEER_WEB, OWN_WEB, TCP_ACK, b"more"), t0 + secs(1))
        .is_err());
    assert!(f
        .handle_outbound(&tcp(OWN_WEB, PEER_WEB, TCP_ACK, b"data"), t0 + secs(1))
        .is_err());
    let _icmp = f.poll_tun_packet().unwrap();
    let rst = parse(&f.poll_tun_packet().expect("a reset")).unwrap();
    assert!(matches!(
        rst.transport,
        Transport::Tcp { dst_port: 3000, .. }
    ));
    // The UDP flow the new policy still allows goes on.
    assert_eq!(
        f.handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:5353"), t0 + secs(1)),
        Ok(())
    );
    // The `dns` rule's hit survived the change.
    let dns = f
        .stats(t0)
        .rule_hits
        .into_iter()
        .find(|h| h.rule == "dns")
        .unwrap();
    assert_eq!(dns.flows, 1);
}

#[test]
fn a_full_table_evicts_and_counts() {
    let t0 = Instant::now();
    let mut f = Filter::new(2, (1, 2));
    f.replace(Some(policy(1)), t0);
    for port in 1..=3u16 {
        let from = format!("10.99.0.2:{port}");
        f.handle_inbound(&udp(&from, "10.99.0.1:53"), t0 + secs(u64::from(port)))
            .unwrap();
    }
    let stats = f.stats(t0 + secs(3));
    assert_eq!(
        (stats.tracked_flows, stats.flow_limit, stats.flows_evicted),
        (2, 2, 1)
    );
    assert!(f
        .handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:1"), t0 + secs(3))
        .is_err());
    assert_eq!(
        f.handle_outbound(&udp("10.99.0.1:53", "10.99.0.2:3"), t0 + secs(3)),
        Ok(())
    );
}

#[test]
fn recent_drops_are_a_bounded_ring_newest_first() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    for port in 1..=(RECENT_DROPS as u16 + 5) {
        let to = format!("10.99.0.1:{port}");
        let _ = f.handle_inbound(&tcp(PEER_WEB, &to, TCP_SYN, b""), t0);
    }
    let _ = f.handle_inbound(&[0x60, 0], t0 + secs(1));
    let recent = f.stats(t0 + secs(2)).recent_drops;
    assert_eq!(recent.len(), RECENT_DROPS);
    assert_eq!(
        (recent[0].reason, recent[0].age_ms),
        (DropReason::Malformed, 1000)
    );
    assert_eq!(
        (recent[1].port, recent[1].ip_protocol),
        (RECENT_DROPS as u16 + 5, 6)
    );
    assert_eq!(recent[1].direction, Direction::Inbound);
    assert_eq!(f.stats(t0).dropped_inbound.malformed, 1);
}

#[test]
fn no_bytes_from_a_peer_or_the_tun_can_panic_the_filter() {
    let t0 = Instant::now();
    let mut f = filter(t0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let samples = [
        tcp(PEER_WEB, OWN_WEB, TCP_SYN, b"abc"),
        tcp("[fd00::2]:1", "[fd00::1]:3000", TCP_ACK, b"abc"),
        udp("10.99.0.2:5353", "10.99.0.1:53"),
        echo("fd00::2", "fd00::1", 1, true),
    ];
    let mut error = Filter::new(4, (1, 2));
    error.replace(Some(PacketFilter::default()), t0);
    let _ = error.handle_outbound(&samples[0], t0);
    let _ = error.handle_outbound(&samples[1], t0);
    let errors: Vec<Vec<u8>> = std::iter::from_fn(|| error.poll_tun_packet()).collect();
    for round in 0..20_000u64 {
        let base = if round % 3 == 0 {
            &errors[(round as usize / 3) % errors.len()]
        } else {
            &samples[round as usize % samples.len()]
        };
        let mut p = base.clone();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % p.len();
            p[at] = next() as u8;
        }
        p.truncate((next() as usize) % (p.len() + 1));
        let now = t0 + Duration::from_millis(round);
        let _ = f.handle_inbound(&p, now);
        let _ = f.handle_outbound(&p, now);
        while f.poll_tun_packet().is_some() {}
    }
    let stats = f.stats(t0);
    assert!(stats.dropped_inbound.malformed > 0 && stats.dropped_outbound.malformed > 0);
}
