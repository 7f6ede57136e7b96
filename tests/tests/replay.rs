//! Captured WireGuard messages sent again must not be accepted: replayed
//! data must not reach the TUN (nor draw replies), replayed handshakes must
//! not start a new session, and the tunnel must keep working.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Pair, PairOptions};
use warren_lab::pcap::{Capture, UdpDatagram};
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::status::Status;
use warren_lab::topology::TwoHosts;
use warren_lab::wg_message::{is_data, message_type};
use warren_lab::{e2e, Lab};

const PORT: u16 = 51820;

fn b_addr() -> SocketAddr {
    SocketAddr::new(TwoHosts::B_V4.into(), PORT)
}

fn capture_on_a(lab: &Lab, pair: &Pair, label: &str) -> anyhow::Result<Capture> {
    let port = PORT.to_string();
    Ok(Capture::start(
        lab,
        &pair.hosts.a,
        &pair.hosts.a_if,
        label,
        &["udp", "port", &port],
    )?)
}

/// Datagrams a sent to b's daemon.
fn a_to_b(captured: Vec<UdpDatagram>) -> Vec<UdpDatagram> {
    captured
        .into_iter()
        .filter(|d| d.src.ip() == TwoHosts::A_V4 && d.dst == b_addr())
        .collect()
}

/// Sends `payloads` to b's daemon from a fresh socket in a's namespace and
/// returns that socket, to see whether b answers the replay.
fn replay(pair: &Pair, payloads: &[&[u8]]) -> anyhow::Result<UdpSocket> {
    let sock = pair.hosts.a.run(|| UdpSocket::bind("0.0.0.0:0"))??;
    for p in payloads {
        sock.send_to(p, b_addr())?;
    }
    Ok(sock)
}

/// Errors if anything arrives on `sock` within `within`.
fn expect_silence(sock: &UdpSocket, within: Duration) -> anyhow::Result<()> {
    sock.set_read_timeout(Some(within))?;
    let mut buf = [0u8; 2048];
    match warren_lab::eintr::restart(|| sock.recv_from(&mut buf)) {
        Ok((n, from)) => anyhow::bail!(
            "the daemon answered a replay: {n} bytes from {from}, type {:?}",
            message_type(&buf[..n])
        ),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

struct Snapshot {
    b: Status,
    a: Status,
}

impl Snapshot {
    fn take(pair: &Pair) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            a: pair.a.agent()?.status()?,
            b: pair.b.agent()?.status()?,
        })
    }
}

#[test]
fn replayed_data_packets_are_dropped() {
    e2e("replay::data", |lab| {
        let mut pair = Pair::build(lab, PairOptions::warren())?;
        wait_reachable(
            &pair.hosts.a,
            overlay::addr(2, false),
            Duration::from_secs(10),
        )?;

        let capture = capture_on_a(lab, &pair, "tcpdump-data")?;
        let report = ping(
            &pair.hosts.a,
            overlay::addr(2, false),
            10,
            Duration::from_millis(50),
            Duration::from_secs(2),
        )?;
        ensure!(report.received == 10, "{}", report.render());
        let captured = a_to_b(capture.finish()?);
        let data: Vec<&[u8]> = captured
            .iter()
            .map(|d| d.payload.as_slice())
            .filter(|p| is_data(p))
            .collect();
        ensure!(
            data.len() >= 10,
            "captured only {} data messages a -> b",
            data.len()
        );

        let before = Snapshot::take(&pair)?;
        let attacker = replay(&pair, &data)?;
        expect_silence(&attacker, Duration::from_secs(1))?;
        let after = Snapshot::take(&pair)?;

        let sent = data.len() as u64;
        let replays = after.b.counter("dropped_replay")? - before.b.counter("dropped_replay")?;
        ensure!(
            replays >= sent * 9 / 10 && replays <= sent,
            "re-sent {sent} data messages, dropped_replay grew by {replays}: {}",
            after.b.json
        );
        // Delivered replays would be echo requests that b answers.
        let key_a = &pair.key_a.public_key;
        let key_b = &pair.key_b.public_key;
        let a_rx = after.a.peer(key_b)?.rx_bytes()? - before.a.peer(key_b)?.rx_bytes()?;
        ensure!(
            a_rx == 0,
            "a received {a_rx} bytes from b after the replay: {}",
            after.a.json
        );
        // At most one keepalive from a may have arrived meanwhile.
        let b_rx = after.b.peer(key_a)?.rx_bytes()? - before.b.peer(key_a)?.rx_bytes()?;
        ensure!(
            b_rx <= 32,
            "b accounted {b_rx} bytes of replayed data: {}",
            after.b.json
        );
        // A replay from another port is not a roaming peer.
        let endpoint = after.b.peer(key_a)?.endpoint()?;
        let real = format!("{}:{PORT}", TwoHosts::A_V4);
        ensure!(
            endpoint.as_deref() == Some(real.as_str()),
            "b moved a's endpoint to {endpoint:?} because of a replay"
        );

        let report = ping(
            &pair.hosts.a,
            overlay::addr(2, false),
            3,
            Duration::from_millis(50),
            Duration::from_secs(2),
        )?;
        ensure!(
            report.received == 3,
            "tunnel broken after the replay:\n{}",
            report.render()
        );
        pair.ensure_running()?;
        Ok(())
    });
}

#[test]
fn replayed_handshake_initiation_does_not_start_a_session() {
    e2e("replay::handshake", |lab| {
        let mut pair = Pair::build(lab, PairOptions::warren())?;
        let capture = capture_on_a(lab, &pair, "tcpdump-handshake")?;
        wait_reachable(
            &pair.hosts.a,
            overlay::addr(2, false),
            Duration::from_secs(10),
        )?;
        let captured = a_to_b(capture.finish()?);
        let initiation = captured
            .iter()
            .find(|d| message_type(&d.payload) == Some(1))
            .context("no handshake initiation a -> b captured")?;

        // Let the session's clock tick so a new handshake would show.
        thread::sleep(Duration::from_millis(1100));
        let before = Snapshot::take(&pair)?;
        let attacker = replay(&pair, &[&initiation.payload])?;
        expect_silence(&attacker, Duration::from_secs(1))?;
        let after = Snapshot::take(&pair)?;

        let key_a = &pair.key_a.public_key;
        let was = before
            .b
            .peer(key_a)?
            .last_handshake_time()?
            .context("no handshake before")?;
        let now = after
            .b
            .peer(key_a)?
            .last_handshake_time()?
            .context("no handshake after")?;
        // A new session would move the time by the 1.1 s slept above; the
        // agent derives it from an elapsed duration, so allow jitter.
        let moved = now.duration_since(was).unwrap_or_else(|e| e.duration());
        ensure!(
            moved < Duration::from_millis(500),
            "replayed initiation moved b's last_handshake by {moved:?}: {} -> {}",
            before.b.json,
            after.b.json
        );
        let report = ping(
            &pair.hosts.a,
            overlay::addr(2, false),
            3,
            Duration::from_millis(50),
            Duration::from_secs(2),
        )?;
        ensure!(
            report.received == 3,
            "tunnel broken after the replay:\n{}",
            report.render()
        );
        pair.ensure_running()?;
        Ok(())
    });
}
