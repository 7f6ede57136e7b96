//! QUIC over TCP, for networks that let no UDP out. Agent a's router drops
//! every UDP datagram, the controller's included; b's network is open.
//! `warren netcheck` on a says QUIC over UDP gets no answer while QUIC
//! over TLS over TCP completes, and that a would be relayed over TCP (exit
//! 0); with a wrong fingerprint the TLS handshake is a mismatch (exit 11).
//! Both agents join; a's control connection runs over TCP (its status
//! says so, b's says UDP), the pair settles on the relay, and pings and a
//! TCP transfer go through it, counted by the controller's relay. When the
//! block lifts, a's link moves back to UDP within 30 s and the pair goes
//! direct.

use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::nat_controller::QUIC;
use warren_lab::natpair::{NatKind, NatPair, PeerPath, Side};
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::wait::{until, Poll};

/// How long the pair gets to settle on the relay.
const PATH_WITHIN: Duration = Duration::from_secs(20);

/// How long a link on TCP may take to move back once UDP answers again
/// (issue 17: within 30 s).
const BACK_TO_UDP_WITHIN: Duration = Duration::from_secs(30);

const TRANSFER_MIB: u64 = 2;

/// `warren netcheck --fingerprint FINGERPRINT --json` on `side`: its exit
/// code and report.
fn netcheck(pair: &NatPair, side: Side, fingerprint: &str) -> anyhow::Result<(i32, Value)> {
    let mut cmd = pair.agent(side).command([
        "netcheck",
        "--controller",
        &QUIC.to_string(),
        "--fingerprint",
        fingerprint,
        "--json",
    ]);
    let out = command::output(&mut cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("netcheck printed no JSON ({}): {stdout}", out.status))?;
    Ok((out.status.code().context("netcheck killed")?, report))
}

/// What `side`'s control connection runs over, as its status says.
fn transport(pair: &NatPair, side: Side) -> anyhow::Result<String> {
    let status = pair.agent(side).status()?;
    let net = status.network(&pair.network)?;
    ensure!(
        net.controller_connected()?,
        "{side:?} not connected: {}",
        net.0
    );
    Ok(net.0["controller_transport"]
        .as_str()
        .with_context(|| format!("no controller_transport: {}", net.0))?
        .to_owned())
}

#[test]
fn an_agent_whose_network_blocks_udp_joins_and_relays_over_tcp() {
    e2e("tcp_fallback::udp_blocked", |lab| {
        let mut pair = NatPair::build(lab, NatKind::PortRestricted, NatKind::PortRestricted)?;
        pair.block_all(Side::A, &["udp"])?;

        let (code, report) = netcheck(&pair, Side::A, pair.controller.fingerprint())?;
        ensure!(
            code == 0
                && report["quic"]["reach"] == "unreachable"
                && report["tcp"]["reach"] == "connected"
                && report["tcp"]["fingerprint_matches"] == true
                && report["udp"]["mapping"] == "udp_blocked"
                && report["path"] == "relay_over_tcp",
            "netcheck behind a UDP block (exit {code}): {report}"
        );
        // The TLS under QUIC over TCP is pinned too: another fingerprint
        // is a mismatch, exit 11, not a connection.
        let (code, report) = netcheck(&pair, Side::A, &"ab".repeat(32))?;
        ensure!(
            code == 11
                && report["tcp"]["reach"] == "fingerprint_mismatch"
                && report["path"] == "fingerprint_mismatch",
            "netcheck over TCP with a wrong fingerprint (exit {code}): {report}"
        );

        pair.join_both()?;
        ensure!(transport(&pair, Side::A)? == "tcp", "a's control link");
        ensure!(transport(&pair, Side::B)? == "udp", "b's control link");
        let text = command::run_stdout(&mut pair.agent(Side::A).command(["status"]))?;
        ensure!(
            text.contains("connected over TCP: no UDP answer"),
            "a's status does not say TCP:\n{text}"
        );

        pair.wait_path(PeerPath::Relay, PATH_WITHIN)?;
        pair.ping_both_ways(5, "through the relay, a's side over TCP")?;
        let before = pair.relay_counters()?;
        for from in [Side::A, Side::B] {
            let to = from.other();
            tcp_transfer(
                pair.host(from),
                pair.host(to),
                pair.overlay_v4(to)?.into(),
                TransferSpec::mib(TRANSFER_MIB),
            )
            .with_context(|| format!("TCP transfer {from:?} -> {to:?} through the relay"))?;
        }
        let after = pair.relay_counters()?;
        let carried = after.bytes.saturating_sub(before.bytes);
        ensure!(
            carried >= 2 * TRANSFER_MIB * 1024 * 1024,
            "the relay carried {carried} bytes of two {TRANSFER_MIB} MiB transfers"
        );

        pair.unblock_all(Side::A)?;
        let took = std::time::Instant::now();
        // The link on UDP is made before the one on TCP is let go: status
        // never shows the controller disconnected on the way.
        let mut gap = None;
        until("a's control link back on UDP", BACK_TO_UDP_WITHIN, || {
            Ok(match transport(&pair, Side::A) {
                Ok(t) if t == "udp" => Poll::Ready(()),
                Ok(t) => Poll::Pending(t),
                Err(e) => {
                    let e = e.to_string();
                    if e.contains("not connected") {
                        gap.get_or_insert_with(|| e.clone());
                    }
                    Poll::Pending(e)
                }
            })
        })?;
        ensure!(
            gap.is_none(),
            "the controller link went down while moving back to UDP: {gap:?}"
        );
        eprintln!(
            "back on UDP {:.1} s after the block lifted",
            took.elapsed().as_secs_f64()
        );
        pair.wait_path(PeerPath::Direct, PATH_WITHIN)?;
        pair.ping_both_ways(5, "direct once UDP is back")?;
        pair.ensure_running()?;
        Ok(())
    });
}
