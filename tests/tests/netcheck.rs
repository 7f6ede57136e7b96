//! `warren netcheck --controller` before any network is joined: the CLI
//! probes the controller (a QUIC handshake, nothing more), its two STUN
//! ports and the default gateway itself. Behind a port-restricted NAT it
//! sees one mapping for both STUN ports; behind a symmetric NAT, two (with
//! the daemon stopped: the CLI needs none). Both see their router's public
//! address and the controller's pinned certificate; a wrong fingerprint
//! is a mismatch and exit status 11. Behind a gateway that answers PCP it
//! reports the mapping it was granted and deleted again.

use std::process::Command;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::nat_controller::QUIC;
use warren_lab::natpair::{NatKind, NatPair, Side};
use warren_lab::portmap_gateway::{external_addr, Miniupnpd};
use warren_lab::topology::NatLab;

/// `warren netcheck --controller ... --fingerprint FP --json` on `side`:
/// its exit code and JSON report.
fn netcheck(pair: &NatPair, side: Side, fingerprint: &str) -> anyhow::Result<(i32, Value)> {
    let controller = QUIC.to_string();
    let mut cmd: Command = pair.agent(side).command([
        "netcheck",
        "--controller",
        &controller,
        "--fingerprint",
        fingerprint,
        "--json",
    ]);
    let out = command::output(&mut cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "netcheck on {side:?} printed no JSON ({}): {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let code = out.status.code().context("netcheck killed by a signal")?;
    Ok((code, report))
}

/// The report of a reachable controller with a matching fingerprint, both
/// STUN ports answering with `public` as the mapped address, `mapping` as
/// the NAT's behaviour and `path` as the verdict.
fn check_report(
    report: &Value,
    fingerprint: &str,
    public: std::net::Ipv4Addr,
    mapping: &str,
    path: &str,
) -> anyhow::Result<()> {
    let quic = &report["quic"];
    ensure!(
        quic["reach"] == "connected"
            && quic["fingerprint"] == fingerprint
            && quic["fingerprint_matches"] == true
            && quic["rtt_ms"].is_f64(),
        "quic: {report}"
    );
    let stun = report["udp"]["stun"].as_array().context("udp.stun")?;
    ensure!(stun.len() == 2, "two STUN ports asked: {report}");
    for s in stun {
        let mapped = s["mapped"].as_str().unwrap_or_default();
        ensure!(
            mapped.starts_with(&format!("{public}:")),
            "STUN {} saw {mapped}, not the router's {public}: {report}",
            s["server"]
        );
    }
    ensure!(report["udp"]["mapping"] == mapping, "mapping: {report}");
    ensure!(report["path"] == path, "path: {report}");
    Ok(())
}

#[test]
fn netcheck_before_joining_sees_each_nat_and_the_controller() {
    e2e("netcheck::nats", |lab| {
        let mut pair = NatPair::build(lab, NatKind::PortRestricted, NatKind::Symmetric)?;
        let fp = pair.controller.fingerprint().to_owned();
        let statuses = pair.a.status()?;
        ensure!(
            statuses.json["networks"]
                .as_array()
                .is_some_and(Vec::is_empty),
            "a has joined a network: {}",
            statuses.json
        );

        let (code, report) = netcheck(&pair, Side::A, &fp)?;
        ensure!(code == 0, "exit {code}: {report}");
        check_report(
            &report,
            &fp,
            NatLab::ROUTER_A_WAN,
            "endpoint_independent",
            "direct_to_most_peers",
        )?;
        // The router answers no port mapping: asked, and said so.
        let pm = &report["port_mapping"];
        ensure!(
            pm["gateway"] == NatLab::ROUTER_A_LAN.to_string()
                && pm["granted"].is_null()
                && pm["error"].is_string(),
            "port mapping: {report}"
        );

        // No daemon at all on b: the CLI probes by itself.
        pair.b.stop()?;
        let (code, report) = netcheck(&pair, Side::B, &fp)?;
        ensure!(code == 0, "exit {code}: {report}");
        check_report(
            &report,
            &fp,
            NatLab::ROUTER_B_WAN,
            "varies_by_destination",
            "direct_to_easy_nats_only",
        )?;

        // A fingerprint that is not the controller's: refused, shown, 11.
        let wrong = "00".repeat(32);
        let (code, report) = netcheck(&pair, Side::A, &wrong)?;
        ensure!(code == 11, "exit {code} for a wrong fingerprint: {report}");
        let quic = &report["quic"];
        ensure!(
            quic["reach"] == "fingerprint_mismatch"
                && quic["fingerprint"] == fp.as_str()
                && quic["fingerprint_matches"] == false
                && report["path"] == "fingerprint_mismatch",
            "wrong fingerprint: {report}"
        );
        Ok(())
    });
}

#[test]
fn netcheck_before_joining_reports_a_gateways_port_mapping() {
    e2e("netcheck::pcp", |lab| {
        let pair = NatPair::build(lab, NatKind::Symmetric, NatKind::Symmetric)?;
        let net = &pair.net;
        let gateway = Miniupnpd::start(
            lab,
            &net.router_a,
            &net.internet,
            &net.router_a_cfg,
            external_addr(true),
            NatLab::ROUTER_A_LAN,
        )?;
        let fp = pair.controller.fingerprint().to_owned();
        let (code, report) = netcheck(&pair, Side::A, &fp)?;
        ensure!(code == 0, "exit {code}: {report}");
        // Symmetric, yet a mapped port makes peers' way in: direct.
        check_report(
            &report,
            &fp,
            NatLab::ROUTER_A_WAN,
            "varies_by_destination",
            "direct_to_most_peers",
        )?;
        let pm = &report["port_mapping"];
        let granted = &pm["granted"];
        ensure!(
            granted["protocol"] == "pcp"
                && granted["gateway"] == NatLab::ROUTER_A_LAN.to_string()
                && granted["external"]
                    .as_str()
                    .is_some_and(|e| e.starts_with(&format!("{}:", external_addr(true))))
                && pm["deleted"] == true,
            "port mapping: {report}\nminiupnpd: {}",
            gateway.log()
        );
        // Deleted at once: the gateway holds no lease for it.
        ensure!(
            gateway.leases().trim().is_empty(),
            "a lease is left: {}",
            gateway.leases()
        );
        Ok(())
    });
}
