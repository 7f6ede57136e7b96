//! The relay with the real binaries, behind the NAT lab's routers: when
//! both networks let UDP out only to the controller, the peers talk through
//! the controller's relay (status says so, and the relay's counters carry
//! the bytes), or through the relay-only instance the controller names;
//! when the block lifts, a direct path replaces the relay while
//! a ping and a TCP stream keep running, without a new handshake, and the
//! controller's members API shows the paths the agents report, relayed
//! then direct.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use warren_lab::nat_controller::RELAY_QUIC;
use warren_lab::natpair::{NatKind, NatPair, PeerPath, Side};
use warren_lab::ping::Pinger;
use warren_lab::transfer::{tcp_transfer, Transfer, TransferSpec};
use warren_lab::{e2e, Lab};

/// How long the pair gets to settle on a path.
const PATH_WITHIN: Duration = Duration::from_secs(20);

/// How long a blocked pair must stay relayed: several probe rounds.
const HOLD_RELAY: Duration = Duration::from_secs(8);

/// How long the controller may take to show a path the agents settled on:
/// agents report at most every 5 s, and a loaded machine adds slack.
const REPORT_WITHIN: Duration = Duration::from_secs(15);

const TRANSFER_MIB: u64 = 4;

/// Which process relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The controller itself.
    Controller,
    /// A `warren-controller relay` beside it, named by `--advertise-relay`.
    Instance,
}

/// Joins both agents of a pair whose routers block UDP to anything but
/// the controller's host, and checks that they settle on the relay and
/// carry pings and a TCP transfer over it, through the relay `via` says.
fn blocked_pair_talks_through_the_relay(
    lab: &Lab,
    a: NatKind,
    b: NatKind,
    via: Via,
) -> anyhow::Result<()> {
    let mut pair = match via {
        Via::Controller => NatPair::build(lab, a, b)?,
        Via::Instance => NatPair::build_with_relay_instance(lab, a, b)?,
    };
    let relay_counters = |pair: &NatPair| match via {
        Via::Controller => pair.relay_counters(),
        Via::Instance => pair.instance_relay_counters(),
    };
    pair.block_udp()?;
    pair.join_both()?;
    let result = (|| -> anyhow::Result<()> {
        pair.wait_path(PeerPath::Relay, PATH_WITHIN)?;
        pair.hold_path(PeerPath::Relay, HOLD_RELAY)
            .context("UDP between the peers is blocked, yet the path left the relay")?;
        pair.ping_both_ways(5, "through the relay")?;
        let before = relay_counters(&pair)?;
        let controller_before = pair.relay_counters()?;
        let sent_before = pair
            .agent(Side::A)
            .status()?
            .counter("relay_tx_datagrams")?;
        let transfer = tcp_transfer(
            pair.host(Side::A),
            pair.host(Side::B),
            pair.overlay_v4(Side::B)?.into(),
            TransferSpec::mib(TRANSFER_MIB),
        )
        .context("TCP transfer a -> b through the relay")?;
        let after = relay_counters(&pair)?;
        ensure!(
            after.bytes - before.bytes >= TRANSFER_MIB << 20,
            "the relay ({via:?}) carried only {} bytes of the {TRANSFER_MIB} MiB transfer",
            after.bytes - before.bytes
        );
        if via == Via::Instance {
            let controller_after = pair.relay_counters()?;
            ensure!(
                controller_after == controller_before,
                "the controller relayed {} frames itself, though it names a relay-only instance",
                controller_after.frames - controller_before.frames
            );
            for side in [Side::A, Side::B] {
                let netcheck = pair.netcheck(side)?;
                let server = netcheck.pointer("/networks/0/relay_server");
                ensure!(
                    server.and_then(|s| s.as_str()) == Some(&RELAY_QUIC.to_string()),
                    "netcheck of {side:?} names relay server {server:?}, not {RELAY_QUIC}"
                );
            }
            instance_loss_falls_back_to_the_controller(&mut pair)?;
        }
        // The agent counts what it sent through the relay as relayed, and
        // its status names the relay rather than a candidate that never answered.
        let sent = pair
            .agent(Side::A)
            .status()?
            .counter("relay_tx_datagrams")?
            - sent_before;
        ensure!(
            sent >= (TRANSFER_MIB << 20) / 1500,
            "agent a counted only {sent} datagrams sent through the relay for {TRANSFER_MIB} MiB"
        );
        let (view_a, view_b) = pair.views()?;
        for view in [&view_a, &view_b] {
            ensure!(
                view.endpoint.as_deref() == Some("relay"),
                "a relayed peer's endpoint reads {:?}, not \"relay\"",
                view.endpoint
            );
        }
        pair.hold_path(PeerPath::Relay, Duration::from_secs(1))?;
        println!(
            "{}: relayed {TRANSFER_MIB} MiB at {:.1} Mbit/s",
            pair.label(),
            transfer.mbit_per_s()
        );
        pair.ensure_running()?;
        Ok(())
    })();
    result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", pair.diagnostics()))
}

/// How long agents get to notice a dead relay-only instance: the instance
/// link's QUIC idle timeout (3 s) and slack for a loaded machine. The
/// controller link's 8 s would not fit.
const INSTANCE_LOSS_WITHIN: Duration = Duration::from_secs(10);

/// Kills the relay-only instance; both agents go back to relaying through
/// the controller, and pings pass there.
fn instance_loss_falls_back_to_the_controller(pair: &mut NatPair) -> anyhow::Result<()> {
    pair.kill_relay_instance()?;
    let killed = Instant::now();
    for side in [Side::A, Side::B] {
        warren_lab::wait::until(
            format!("{side:?} to stop naming the dead relay-only instance"),
            INSTANCE_LOSS_WITHIN.saturating_sub(killed.elapsed()),
            || {
                let netcheck = pair.netcheck(side)?;
                Ok(match netcheck.pointer("/networks/0/relay_server") {
                    Some(serde_json::Value::Null) => warren_lab::wait::Poll::Ready(()),
                    other => warren_lab::wait::Poll::Pending(format!("relay_server {other:?}")),
                })
            },
        )?;
    }
    let noticed = killed.elapsed();
    let before = pair.relay_counters()?;
    pair.ping_both_ways(5, "through the controller after the instance died")?;
    let after = pair.relay_counters()?;
    ensure!(
        after.frames > before.frames,
        "the pings did not go through the controller's relay"
    );
    println!(
        "relay-only instance lost: both agents noticed after {:.1} s; pings passed through the controller {:.1} s after the kill",
        noticed.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn blocked_udp_relays_between_port_restricted_nats() {
    e2e("relay::blocked_pr", |lab| {
        blocked_pair_talks_through_the_relay(
            lab,
            NatKind::PortRestricted,
            NatKind::PortRestricted,
            Via::Controller,
        )
    });
}

#[test]
fn blocked_udp_relays_between_full_cone_nats() {
    e2e("relay::blocked_fc", |lab| {
        blocked_pair_talks_through_the_relay(
            lab,
            NatKind::FullCone,
            NatKind::FullCone,
            Via::Controller,
        )
    });
}

#[test]
fn blocked_udp_relays_through_the_relay_only_instance_the_controller_names() {
    e2e("relay::instance", |lab| {
        blocked_pair_talks_through_the_relay(
            lab,
            NatKind::PortRestricted,
            NatKind::Symmetric,
            Via::Instance,
        )
    });
}

/// The relay server `side`'s netcheck names (JSON null for the controller).
fn relay_server(pair: &NatPair, side: Side) -> warren_lab::Result<serde_json::Value> {
    let netcheck = pair.netcheck(side)?;
    Ok(netcheck
        .pointer("/networks/0/relay_server")
        .cloned()
        .unwrap_or_default())
}

/// One agent cannot reach the relay-only instance, the other can: the
/// instance tells the sender that the peer is not there, and the sender
/// relays its frames for that peer through the controller, which every
/// online agent is connected to. Without the notice every packet from the
/// agent on the instance would be lost.
#[test]
fn agents_on_different_relays_still_reach_each_other() {
    e2e("relay::split", |lab| {
        let mut pair = NatPair::build_with_relay_instance(
            lab,
            NatKind::PortRestricted,
            NatKind::PortRestricted,
        )?;
        pair.block_udp()?;
        pair.block_relay_instance(Side::B)?;
        pair.join_both()?;
        let result = (|| -> anyhow::Result<()> {
            warren_lab::wait::until("agent a on the relay-only instance", PATH_WITHIN, || {
                Ok(match relay_server(&pair, Side::A)? {
                    serde_json::Value::String(s) if s == RELAY_QUIC.to_string() => {
                        warren_lab::wait::Poll::Ready(())
                    }
                    other => warren_lab::wait::Poll::Pending(format!("relay_server {other}")),
                })
            })?;
            pair.wait_path(PeerPath::Relay, PATH_WITHIN)?;
            let b_server = relay_server(&pair, Side::B)?;
            ensure!(
                b_server.is_null(),
                "agent b names relay server {b_server} though the instance is blocked for it"
            );
            let controller_before = pair.relay_counters()?;
            pair.ping_both_ways(10, "with the agents on different relays")?;
            // Since it started: the handshake's first packets hit the
            // instance, and its notices sent the rest to the controller.
            let instance = pair.instance_relay_counters()?;
            let controller = pair.relay_counters()?;
            let notices = instance.absence_notices;
            ensure!(
                instance.offline > 0 && notices > 0,
                "the instance dropped {} frames for the absent agent b and sent agent a {notices} notices",
                instance.offline
            );
            ensure!(
                controller.frames - controller_before.frames >= 20,
                "the controller relayed {} frames for 20 pings and their replies",
                controller.frames - controller_before.frames
            );
            println!(
                "agents on different relays: 10 + 10 pings answered; the instance dropped {} frames for b and sent a {notices} notices; the controller relayed {} frames",
                instance.offline,
                controller.frames - controller_before.frames
            );
            Ok(())
        })();
        result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", pair.diagnostics()))
    });
}

/// What a ping every [`PING_EVERY`] saw.
#[derive(Debug, Default)]
struct PingLog {
    sent: u32,
    replies: u32,
    /// The longest time without a reply, from the first reply on.
    max_gap: Duration,
}

const PING_EVERY: Duration = Duration::from_millis(100);

fn ping_until(pinger: &Pinger, stop: &AtomicBool) -> anyhow::Result<PingLog> {
    let mut log = PingLog::default();
    let mut last_reply: Option<Instant> = None;
    let mut seq: u16 = 1;
    while !stop.load(Ordering::SeqCst) {
        let sent_at = Instant::now();
        log.sent += 1;
        if pinger.ping_once(seq, Duration::from_secs(1))?.is_some() {
            log.replies += 1;
            let now = Instant::now();
            if let Some(last) = last_reply {
                log.max_gap = log.max_gap.max(now - last);
            }
            last_reply = Some(now);
        }
        seq = seq.wrapping_add(1);
        thread::sleep(PING_EVERY.saturating_sub(sent_at.elapsed()));
    }
    if let Some(last) = last_reply {
        log.max_gap = log.max_gap.max(last.elapsed());
    }
    Ok(log)
}

/// Longest a ping every 100 ms may go unanswered across the switch.
const MAX_GAP: Duration = Duration::from_secs(1);

#[test]
fn direct_path_replaces_the_relay_without_dropping_the_session() {
    e2e("relay::upgrade", |lab| {
        let mut pair = NatPair::build(lab, NatKind::PortRestricted, NatKind::PortRestricted)?;
        pair.block_udp()?;
        pair.join_both()?;
        let result = (|| -> anyhow::Result<()> {
            pair.wait_path(PeerPath::Relay, PATH_WITHIN)?;
            // A handshake over the relay first, so that the session exists
            // before the switch.
            pair.ping(Side::A, 1, Duration::from_secs(5))?;
            let before = pair.views()?;
            ensure!(
                before.0.last_handshake.is_some() && before.1.last_handshake.is_some(),
                "no handshake over the relay: a: {:?}; b: {:?}",
                before.0.last_handshake,
                before.1.last_handshake
            );
            let shown = pair
                .wait_reported_paths("relayed", REPORT_WITHIN)
                .context("the members API and the agents disagree on the relayed path")?;
            println!(
                "the controller showed both paths relayed after {:.1} s",
                shown.as_secs_f64()
            );

            // A paced stream that spans the switch: 6 MiB at 256 KiB/s.
            let spec = TransferSpec {
                bytes: 6 << 20,
                port: 5201,
                rate: Some(256 << 10),
                timeout: Duration::from_secs(60),
                seed: 0x5eed,
            };
            let dst = pair.overlay_v4(Side::B)?;
            let transfer =
                Transfer::start(pair.host(Side::A), pair.host(Side::B), dst.into(), spec)?;
            let pinger = Pinger::open(pair.host(Side::A), dst.into())?;
            let stop = AtomicBool::new(false);
            let (pings, switched) = thread::scope(|s| {
                let pinger = s.spawn(|| ping_until(&pinger, &stop));
                let switched = (|| -> anyhow::Result<Duration> {
                    thread::sleep(Duration::from_secs(3));
                    let relayed = transfer.received();
                    ensure!(relayed > 0, "the stream carried nothing over the relay");
                    pair.unblock_udp()?;
                    let took = pair
                        .wait_path(PeerPath::Direct, PATH_WITHIN)
                        .context("AGENT FAILURE: no direct path after UDP was unblocked")?;
                    // Keep pinging a while on the new path.
                    thread::sleep(Duration::from_secs(3));
                    Ok(took)
                })();
                stop.store(true, Ordering::SeqCst);
                let pings = pinger
                    .join()
                    .map_err(|_| anyhow::anyhow!("ping thread panicked"));
                (pings, switched)
            });
            let switched = switched?;
            let pings = pings??;
            let report = transfer
                .wait()
                .context("the TCP stream across the relay -> direct switch")?;
            let after = pair.views()?;
            let same_session =
                after.0.same_handshake(&before.0) && after.1.same_handshake(&before.1);
            println!(
                "relay -> direct in {:.2} s; stream {:.2} Mbit/s; pings {}/{} answered, longest gap {:?}; same handshake: {same_session}",
                switched.as_secs_f64(),
                report.mbit_per_s(),
                pings.replies,
                pings.sent,
                pings.max_gap
            );
            ensure!(
                pings.max_gap <= MAX_GAP,
                "pings went unanswered for {:?} across the switch ({}/{} answered)",
                pings.max_gap,
                pings.replies,
                pings.sent
            );
            ensure!(
                same_session,
                "the switch made a new handshake: a {:?} -> {:?}, b {:?} -> {:?}",
                before.0.last_handshake,
                after.0.last_handshake,
                before.1.last_handshake,
                after.1.last_handshake
            );
            pair.hold_path(PeerPath::Direct, Duration::from_secs(2))?;
            let shown = pair
                .wait_reported_paths("direct", REPORT_WITHIN)
                .context("the members API and the agents disagree on the direct path")?;
            println!(
                "the controller showed both paths direct {:.1} s later",
                shown.as_secs_f64()
            );
            pair.ensure_running()?;
            Ok(())
        })();
        result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", pair.diagnostics()))
    });
}
