//! `warren netcheck --controller` before any network is joined: the CLI
//! probes the controller (a QUIC handshake, nothing more), its two STUN
//! ports and the default gateway itself. Behind a port-restricted NAT it
//! sees one mapping for both STUN ports; behind a symmetric NAT, two (with
//! the daemon stopped: the CLI needs none). Both see their router's public
//! address and the controller's pinned certificate; a wrong fingerprint
//! is a mismatch and exit status 11. Behind a gateway that answers PCP it
//! reports the mapping it was granted and deleted again. With the STUN
//! ports blocked at the router it says "relay only"; with nothing on the
//! QUIC port, "cannot reach the controller" and exit status 10.

use std::process::Command;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::command;
use warren_lab::nat_controller::QUIC;
use warren_lab::natpair::{NatKind, NatPair, Side};
use warren_lab::portmap_gateway::{external_addr, Miniupnpd, Speaks};
use warren_lab::topology::NatLab;
use warren_lab::{e2e, Lab};

/// `warren netcheck --controller ... --fingerprint FP --json` on `side`:
/// its exit code and JSON report.
fn netcheck(pair: &NatPair, side: Side, fingerprint: &str) -> anyhow::Result<(i32, Value)> {
    netcheck_at(pair, side, &QUIC.to_string(), fingerprint)
}

/// [`netcheck`] against `controller`.
fn netcheck_at(
    pair: &NatPair,
    side: Side,
    controller: &str,
    fingerprint: &str,
) -> anyhow::Result<(i32, Value)> {
    let mut cmd: Command = pair.agent(side).command([
        "netcheck",
        "--controller",
        controller,
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

/// Runs [`netcheck`] on `side` and checks for exit status 0 and the report
/// of a reachable controller with a matching fingerprint, both STUN ports
/// answering with `public` as the mapped address, `mapping` as the NAT's
/// behaviour and `path` as the verdict. Returns the report.
fn netcheck_ok(
    pair: &NatPair,
    side: Side,
    fingerprint: &str,
    public: std::net::Ipv4Addr,
    mapping: &str,
    path: &str,
) -> anyhow::Result<Value> {
    let (code, report) = netcheck(pair, side, fingerprint)?;
    ensure!(code == 0, "exit {code}: {report}");
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
    Ok(report)
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

        let report = netcheck_ok(
            &pair,
            Side::A,
            &fp,
            NatLab::ROUTER_A_WAN,
            "endpoint_independent",
            "direct_to_most_peers",
        )?;
        // The router answers no port mapping: asked by each protocol, and
        // said so.
        let pm = &report["port_mapping"];
        ensure!(
            pm["gateway"] == NatLab::ROUTER_A_LAN.to_string()
                && pm["granted"].is_null()
                && pm["error"].as_str().is_some_and(|e| {
                    ["pcp: ", "nat-pmp: ", "upnp: "]
                        .iter()
                        .all(|p| e.contains(p))
                }),
            "port mapping: {report}"
        );

        // No daemon at all on b: the CLI probes by itself.
        pair.b.stop()?;
        netcheck_ok(
            &pair,
            Side::B,
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
        gateway_mapping(lab, Speaks::PcpNatPmp, "pcp")
    });
}

#[test]
fn netcheck_before_joining_reports_a_upnp_mapping() {
    e2e("netcheck::upnp", |lab| {
        gateway_mapping(lab, Speaks::Upnp, "upnp")
    });
}

/// Pre-join netcheck behind a symmetric NAT whose gateway answers what
/// `speaks` says: mapped by `protocol`, and deleted at once.
fn gateway_mapping(lab: &Lab, speaks: Speaks, protocol: &str) -> anyhow::Result<()> {
    let pair = NatPair::build(lab, NatKind::Symmetric, NatKind::Symmetric)?;
    let gateway = Miniupnpd::start_speaking(lab, &pair, Side::A, speaks)?;
    let fp = pair.controller.fingerprint().to_owned();
    // Symmetric, yet a mapped port makes peers' way in: direct.
    let report = netcheck_ok(
        &pair,
        Side::A,
        &fp,
        NatLab::ROUTER_A_WAN,
        "varies_by_destination",
        "direct_to_most_peers",
    )?;
    let pm = &report["port_mapping"];
    let granted = &pm["granted"];
    ensure!(
        granted["protocol"] == protocol
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
}

#[test]
fn netcheck_before_joining_tells_relay_only_from_no_controller() {
    e2e("netcheck::blocked", |lab| {
        let pair = NatPair::build(lab, NatKind::PortRestricted, NatKind::PortRestricted)?;
        let fp = pair.controller.fingerprint().to_owned();
        // Router-a drops UDP to the STUN ports, and only that.
        let (ns, wan) = (&pair.net.router_a, &pair.net.router_a_cfg.wan_if);
        let text = format!(
            "table ip {p}stun {{\n    chain block {{\n        type filter hook forward priority -10; policy accept;\n        oifname \"{wan}\" udp dport {{ 3478, 3479 }} drop\n    }}\n}}\n",
            p = lab.prefix()
        );
        let path = lab.subdir("nft")?.join("block-stun.nft");
        std::fs::write(&path, text)?;
        ns.exec("nft", [std::ffi::OsStr::new("-f"), path.as_os_str()])?;
        let (code, report) = netcheck(&pair, Side::A, &fp)?;
        ensure!(code == 0, "exit {code}: {report}");
        let stun = report["udp"]["stun"].as_array().context("udp.stun")?;
        ensure!(
            report["quic"]["reach"] == "connected"
                && stun.len() == 2
                && stun.iter().all(|s| s["mapped"].is_null())
                && report["udp"]["mapping"] == "udp_blocked"
                && report["path"] == "relay_only",
            "STUN blocked: {report}"
        );
        // b's path is open, but nothing listens on this port: no handshake.
        let nowhere = format!("{}:7", NatLab::SERVER);
        let (code, report) = netcheck_at(&pair, Side::B, &nowhere, &fp)?;
        ensure!(code == 10, "exit {code} with no controller: {report}");
        ensure!(
            report["quic"]["reach"] == "unreachable"
                && report["quic"]["fingerprint"].is_null()
                && report["path"] == "controller_unreachable",
            "no controller: {report}"
        );
        Ok(())
    });
}
