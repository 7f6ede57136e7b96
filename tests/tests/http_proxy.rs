//! QUIC over TCP through an HTTP proxy, for networks whose only way out
//! is one. Agent a's router forwards neither UDP nor TCP; tinyproxy on the
//! router (its LAN address, Basic authentication, `CONNECT` to the
//! controller's port only) is the way out. `warren netcheck` on a cannot
//! reach the controller without `HTTPS_PROXY`; with the proxy but no
//! credentials the proxy's 407 is the error; with them QUIC over TCP
//! completes through it and the report names it, password left out. The
//! agent started with `HTTPS_PROXY` joins over TCP through the proxy, the
//! pair settles on the relay, and pings go through it both ways.

use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::http_proxy::{HttpProxy, PASSWORD};
use warren_lab::nat_controller::QUIC;
use warren_lab::natpair::{NatKind, NatPair, PeerPath, Side};
use warren_lab::topology::NatLab;

/// How long the pair gets to settle on the relay.
const PATH_WITHIN: Duration = Duration::from_secs(20);

/// `warren netcheck --json` on a, with `HTTPS_PROXY` set to `proxy`: its
/// exit code and report.
fn netcheck(pair: &NatPair, proxy: Option<&str>) -> anyhow::Result<(i32, Value)> {
    let mut cmd = pair.agent(Side::A).command([
        "netcheck",
        "--controller",
        &QUIC.to_string(),
        "--fingerprint",
        pair.controller.fingerprint(),
        "--json",
    ]);
    if let Some(proxy) = proxy {
        cmd.env("HTTPS_PROXY", proxy);
    }
    let out = command::output(&mut cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("netcheck printed no JSON ({}): {stdout}", out.status))?;
    Ok((out.status.code().context("netcheck killed")?, report))
}

#[test]
fn an_agent_behind_an_http_proxy_joins_through_it() {
    e2e("http_proxy::connect", |lab| {
        let mut pair = NatPair::build(lab, NatKind::PortRestricted, NatKind::PortRestricted)?;
        pair.block_all(Side::A, &["udp", "tcp"])?;
        let mut proxy =
            HttpProxy::start(lab, &pair.net.router_a, NatLab::ROUTER_A_LAN, QUIC.port())?;

        let (code, report) = netcheck(&pair, None)?;
        ensure!(
            code != 0 && report["tcp"]["reach"] != "connected",
            "netcheck with neither UDP nor TCP out and no proxy (exit {code}): {report}"
        );
        let (code, report) = netcheck(&pair, Some(&proxy.url(false)))?;
        let error = report["tcp"]["error"].as_str().unwrap_or_default();
        ensure!(
            code != 0 && report["tcp"]["reach"] != "connected" && error.contains("407"),
            "netcheck through the proxy without its password (exit {code}): {report}"
        );

        let url = proxy.url(true);
        let (code, report) = netcheck(&pair, Some(&url))?;
        let shown = report["tcp"]["proxy"].as_str().unwrap_or_default();
        ensure!(
            code == 0
                && report["tcp"]["reach"] == "connected"
                && report["tcp"]["fingerprint_matches"] == true
                && report["path"] == "relay_over_tcp"
                && shown.contains(&NatLab::ROUTER_A_LAN.to_string())
                && !report.to_string().contains(PASSWORD),
            "netcheck through the proxy (exit {code}): {report}"
        );
        let text = command::run_stdout(
            pair.agent(Side::A)
                .command(["netcheck", "--controller", &QUIC.to_string()])
                .env("HTTPS_PROXY", &url),
        )?;
        ensure!(
            text.contains("through the proxy") && !text.contains(PASSWORD),
            "netcheck's text does not name the proxy, or shows its password:\n{text}"
        );

        pair.a.set_daemon_env("HTTPS_PROXY", Some(&url));
        pair.a.restart(lab, &pair.net.host_a)?;
        pair.join_both()?;
        let status = pair.agent(Side::A).status()?;
        let net = status.network(&pair.network)?;
        ensure!(
            net.controller_connected()? && net.0["controller_transport"] == "tcp",
            "a's control link is not on TCP: {}",
            net.0
        );
        pair.wait_path(PeerPath::Relay, PATH_WITHIN)?;
        pair.ping_both_ways(5, "through the relay, a's side through the proxy")?;
        let connects = proxy.connects();
        ensure!(
            connects.iter().any(|c| *c == QUIC.to_string()),
            "the proxy logged no CONNECT to {QUIC}: {connects:?}\n{}",
            proxy.log()
        );
        proxy.ensure_running()?;
        pair.ensure_running()?;
        Ok(())
    });
}
