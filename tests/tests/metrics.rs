//! The agent's Prometheus endpoint as an operator scrapes it: agent a runs
//! with `[metrics] listen = "127.0.0.1:9101"` in its config file, agent b
//! without. After a ping and a TCP transfer from a to b through the
//! overlay, a's page counts at least those bytes and packets for peer b,
//! a handshake, a direct path, and a `dig` at a's DNS stub; other paths
//! get 404, browsers 403. b listens on no metrics port; a non-loopback
//! address is refused at start and by `check-config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::controller::{self, Controller};
use warren_lab::dns::dig;
use warren_lab::http1::{self, Request};
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::{Mesh, CONTROLLER_ROLE};
use warren_lab::star::Star;
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::wait::{self, Poll};
use warren_lab::{command, e2e, Lab, Netns};

const POOL: &str = "10.168.0.0/16";
const LISTEN: &str = "127.0.0.1:9101";
const SETTLE: Duration = Duration::from_secs(10);
const PINGS: u16 = 20;
/// An ICMP echo of the lab's pinger: 56 bytes of payload, 8 of ICMP, 20 of IPv4.
const PING_PACKET: u64 = 56 + 8 + 20;
const TRANSFER_MIB: u64 = 2;

/// A scraped page: every sample's series (`name{labels}`) and value.
struct Page(BTreeMap<String, f64>);

impl Page {
    fn get(&self, series: &str) -> anyhow::Result<f64> {
        self.0
            .get(series)
            .copied()
            .with_context(|| format!("no sample {series} on the page"))
    }
}

fn scrape(ns: &Netns) -> anyhow::Result<Page> {
    let response = http1::send(
        ns.name(),
        LISTEN.parse()?,
        &Request::new("GET", "/metrics", SETTLE),
    )?;
    let text = response.text();
    ensure!(response.status == 200, "HTTP {}: {text}", response.status);
    ensure!(
        response
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "content type {:?}",
        response.header("Content-Type")
    );
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("not a sample: {line:?}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("not a number: {line:?}"))?;
        ensure!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    Ok(Page(samples))
}

/// `curl` inside `ns`: the status code of `METHOD http://LISTEN{path}` with `headers`.
fn status_code(ns: &Netns, method: &str, path: &str, headers: &[&str]) -> anyhow::Result<String> {
    let mut cmd = ns.command("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!("http://{LISTEN}{path}"));
    Ok(String::from_utf8_lossy(&command::output(&mut cmd)?.stdout).into_owned())
}

/// Sends `bytes` to the endpoint and reads what comes back until it closes.
fn raw_exchange(bytes: &[u8]) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(LISTEN)?;
    stream.set_read_timeout(Some(SETTLE))?;
    // The server may close before taking everything.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn build(lab: &Lab) -> anyhow::Result<Mesh> {
    let star = Star::build(lab, &[CONTROLLER_ROLE, "a", "b"])?;
    let ctl = star.spoke(CONTROLLER_ROLE)?;
    let controller = Controller::start(
        lab,
        &ctl.ns,
        SocketAddr::new(ctl.addr.into(), controller::QUIC_PORT),
    )?;
    let config = lab.dir().join("a.toml");
    std::fs::write(
        &config,
        format!("[node]\n\n[metrics]\nlisten = \"{LISTEN}\"\n"),
    )?;
    let config = config.to_string_lossy().into_owned();
    let a = ManagedAgent::start_with(lab, &star.spoke("a")?.ns, "a", None, &["--config", &config])?;
    let b = ManagedAgent::start(lab, &star.spoke("b")?.ns, "b", None)?;
    Ok(Mesh {
        agents: vec![a, b],
        controller,
        star,
    })
}

#[test]
fn the_agent_serves_its_counters_after_traffic() {
    e2e("metrics::after_traffic", |lab| {
        let mut mesh = build(lab)?;
        let net = mesh.network_joined_by("watched", POOL, &["a", "b"], SETTLE)?;
        let a4 = mesh.overlay_addr("a", &net, false)?;
        let b4 = mesh.overlay_addr("b", &net, false)?;
        let (ns_a, ns_b) = (mesh.ns("a")?, mesh.ns("b")?);
        warren_lab::ping::wait_reachable(ns_a, b4, SETTLE)?;

        let b_id = mesh.agent("b")?.node_id().to_owned();
        let peer = format!(r#"network="{net}",peer="{b_id}",name="b""#);
        let direct = format!(r#"warren_peer_path{{{peer},kind="direct"}}"#);
        let before = wait::until("a's page to show b direct", SETTLE, || {
            Ok(match scrape(ns_a) {
                Ok(page) if page.get(&direct).ok() == Some(1.0) => Poll::Ready(page),
                Ok(page) => Poll::Pending(format!("{direct} = {:?}", page.get(&direct).ok())),
                Err(e) => Poll::Pending(format!("{e:#}")),
            })
        })?;

        let pings = warren_lab::ping::ping(
            ns_a,
            b4,
            PINGS,
            Duration::from_millis(20),
            Duration::from_secs(1),
        )?;
        ensure!(pings.received == u32::from(PINGS), "{}", pings.render());
        let sent = tcp_transfer(ns_a, ns_b, b4, TransferSpec::mib(TRANSFER_MIB))?;
        let fqdn = mesh
            .agent("b")?
            .status()?
            .network(&net)?
            .fqdn()
            .context("b has no FQDN")?
            .to_owned();
        let answer = dig(ns_a, a4, &fqdn, "A")?;
        ensure!(
            answer.data("A") == [b4.to_string().as_str()],
            "a's stub did not answer {fqdn}: {}",
            answer.raw
        );
        let after = scrape(ns_a)?;

        let grew = |series: &str| -> anyhow::Result<f64> {
            Ok(after.get(series)? - before.get(series).unwrap_or(0.0))
        };
        let min_sent = (sent.bytes + u64::from(PINGS) * PING_PACKET) as f64;
        let sent_bytes = grew(&format!("warren_peer_sent_bytes_total{{{peer}}}"))?;
        println!(
            "{} bytes moved, {PINGS} pings; a counted {sent_bytes} bytes sent to b",
            sent.bytes
        );
        ensure!(
            sent_bytes >= min_sent,
            "bytes sent to b grew by {sent_bytes}, less than the {min_sent} sent"
        );
        let received_bytes = grew(&format!("warren_peer_received_bytes_total{{{peer}}}"))?;
        let min_received = f64::from(PINGS) * PING_PACKET as f64;
        ensure!(
            received_bytes >= min_received,
            "bytes from b grew by {received_bytes}, less than the {min_received} of the replies"
        );
        // A 1420-byte MTU: each packet carries at most 1380 bytes of TCP payload.
        let min_packets = f64::from(PINGS) + (sent.bytes / 1380) as f64;
        let sent_packets = grew(&format!("warren_peer_sent_packets_total{{{peer}}}"))?;
        ensure!(
            sent_packets >= min_packets,
            "packets to b grew by {sent_packets}, less than {min_packets}"
        );
        let received_packets = grew(&format!("warren_peer_received_packets_total{{{peer}}}"))?;
        ensure!(
            received_packets >= f64::from(PINGS),
            "packets from b grew by {received_packets}, less than the {PINGS} replies"
        );
        let handshakes = after.get(&format!("warren_peer_handshakes_total{{{peer}}}"))?;
        ensure!(handshakes >= 1.0, "{handshakes} handshakes with b");
        ensure!(after.get(&direct)? == 1.0, "b is not direct after traffic");
        for kind in ["relay", "none"] {
            let series = format!(r#"warren_peer_path{{{peer},kind="{kind}"}}"#);
            ensure!(after.get(&series)? == 0.0, "{series} is set");
        }
        let relay = after.get(&format!("warren_peer_relay_sent_bytes_total{{{peer}}}"))?;
        ensure!(
            relay == 0.0,
            "{relay} bytes to a direct peer went through the relay"
        );
        let rtt = after.get(&format!("warren_peer_rtt_seconds{{{peer}}}"))?;
        ensure!(rtt > 0.0 && rtt < 1.0, "RTT {rtt} s on a veth");
        let udp_sent = grew(&format!(
            r#"warren_sent_bytes_total{{network="{net}",via="udp"}}"#
        ))?;
        ensure!(
            udp_sent >= sent_bytes,
            "the network's UDP bytes ({udp_sent}) grew less than the peer's ({sent_bytes})"
        );
        // The netmap that brought b took a measured while to apply.
        let apply = after.get(&format!(
            r#"warren_netmap_apply_seconds{{network="{net}"}}"#
        ))?;
        ensure!(
            apply > 0.0 && apply < 10.0,
            "the latest netmap took {apply} s to apply"
        );
        let queries = format!(r#"warren_dns_queries_total{{network="{net}",result="noerror"}}"#);
        ensure!(grew(&queries)? >= 1.0, "{queries} did not grow after a dig");
        for (series, want) in [
            (
                format!(r#"warren_controller_connected{{network="{net}"}}"#),
                1.0,
            ),
            (
                format!(r#"warren_network_state{{network="{net}",state="authorized"}}"#),
                1.0,
            ),
            (
                format!(
                    r#"warren_build_info{{version="{}"}}"#,
                    env!("CARGO_PKG_VERSION")
                ),
                1.0,
            ),
        ] {
            ensure!(after.get(&series)? == want, "{series} is not {want}");
        }

        for (method, path, headers, want) in [
            ("GET", "/", &[][..], "404"),
            ("GET", "/metrics/../v1/status", &[], "404"),
            ("GET", "/v1/status", &[], "404"),
            ("POST", "/metrics", &[], "405"),
            ("GET", "/metrics", &["Host: evil.example:9101"], "403"),
            ("GET", "/metrics", &["Origin: http://evil.example"], "403"),
            ("GET", "/metrics", &["Host: localhost:9101"], "200"),
        ] {
            let got = status_code(ns_a, method, path, headers)?;
            ensure!(
                got == want,
                "{method} {path} {headers:?}: {got}, not {want}"
            );
        }

        // Hostile bytes get an error or a closed connection, and the page stays.
        for hostile in [
            b"\x00\xff\x16\x03\x01 not http at all\r\n\r\n".to_vec(),
            format!("GET /metrics HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(200_000))
                .into_bytes(),
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999\r\n\r\n"
                .to_vec(),
        ] {
            let answer = ns_a.run(|| raw_exchange(&hostile))??;
            ensure!(
                !answer.starts_with("HTTP/1.1 200"),
                "a hostile request was served: {answer}"
            );
        }
        scrape(ns_a).context("the page after hostile requests")?;

        // b has no [metrics]: its only TCP listener is its DNS stub.
        let listening = ns_b.output("ss", ["-Hltn"])?;
        println!("b listens on:\n{listening}");
        for line in listening.lines() {
            let local = line.split_whitespace().nth(3).unwrap_or_default();
            ensure!(local.ends_with(":53"), "b listens on {local}: {listening}");
        }
        ensure!(
            status_code(ns_b, "GET", "/metrics", &[])? == "000",
            "something answers on {LISTEN} in b"
        );
        mesh.ensure_running()?;
        Ok(())
    });
}

#[test]
fn a_metrics_address_beyond_loopback_is_refused_unless_allowed() {
    e2e("metrics::remote_refused", |lab| {
        let ns = lab.netns("x")?;
        let bin = warren_lab::warren::warren_bin()?;
        let refused = lab.dir().join("remote.toml");
        std::fs::write(&refused, "[node]\n[metrics]\nlisten = \"0.0.0.0:9101\"\n")?;
        let out = command::output(
            ns.command(&bin)
                .arg("check-config")
                .arg("--config")
                .arg(&refused),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1) && stderr.contains("allow-remote = true"),
            "check-config: exit {:?}: {stderr}",
            out.status.code()
        );
        // The flag is checked the same way, before the agent touches
        // anything (bounded by `timeout`, should it start after all).
        let state = lab.subdir("state")?;
        let out = command::output(
            ns.command("timeout")
                .arg("20")
                .arg(&bin)
                .args([
                    "daemon",
                    "--metrics-listen",
                    "192.0.2.1:9101",
                    "--state-dir",
                ])
                .arg(&state)
                .arg("--socket")
                .arg(state.join("warren.sock")),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1)
                && stderr.contains("metrics endpoint 192.0.2.1:9101: not a loopback address"),
            "daemon: exit {:?}: {stderr}",
            out.status.code()
        );
        ensure!(
            std::fs::read_dir(&state)?.next().is_none(),
            "the refused daemon wrote to its state folder"
        );
        let allowed = lab.dir().join("allowed.toml");
        std::fs::write(
            &allowed,
            "[node]\n[metrics]\nlisten = \"0.0.0.0:9101\"\nallow-remote = true\n",
        )?;
        let out = command::output(
            ns.command(&bin)
                .arg("check-config")
                .arg("--config")
                .arg(&allowed),
        )?;
        ensure!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("allow-remote = true"),
            "check-config of an allowed remote address: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    });
}
