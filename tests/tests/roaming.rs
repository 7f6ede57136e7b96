//! A peer whose underlay address changes mid-transfer (a laptop moving
//! between networks): the transfer must survive and the other side must
//! follow it to the new endpoint.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use warren_lab::link;
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Pair, PairOptions};
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::topology::TwoHosts;
use warren_lab::transfer::{Transfer, TransferSpec};
use warren_lab::{e2e, Netns};

const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);
const NEW_B: &str = "192.0.2.3";

/// A transfer long enough to move in the middle of: 24 MiB at 4 MiB/s.
fn paced() -> TransferSpec {
    TransferSpec {
        rate: Some(4 << 20),
        ..TransferSpec::mib(24)
    }
}

fn wait_progress(transfer: &Transfer, bytes: u64, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while transfer.received() < bytes {
        ensure!(
            Instant::now() < deadline,
            "transfer stuck at {} bytes before the move",
            transfer.received()
        );
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Moves b from 192.0.2.2 to 192.0.2.3 on the same link, so its packets
/// leave from the new address and the old one no longer answers.
fn move_b(b: &Netns, ifname: &str) -> anyhow::Result<()> {
    // Deleting a primary address takes its secondaries with it unless
    // promotion is on; this is b's own namespace sysctl.
    b.sysctl("net.ipv4.conf.all.promote_secondaries", "1")?;
    b.sysctl(&format!("net.ipv4.conf.{ifname}.promote_secondaries"), "1")?;
    link::add_addr(b, ifname, &format!("{NEW_B}/24"))?;
    link::del_addr(b, ifname, &format!("{}/24", TwoHosts::B_V4))?;
    let addrs = link::addrs(b, ifname)?;
    ensure!(
        addrs.iter().any(|a| a == &format!("{NEW_B}/24"))
            && !addrs
                .iter()
                .any(|a| a.starts_with(&TwoHosts::B_V4.to_string())),
        "b's addresses after the move: {addrs:?}"
    );
    Ok(())
}

fn check_a_follows(pair: &Pair) -> anyhow::Result<()> {
    let status = pair.a.agent()?.status()?;
    let endpoint = status.peer(&pair.key_b.public_key)?.endpoint()?;
    let want = format!("{NEW_B}:51820");
    ensure!(
        endpoint.as_deref() == Some(want.as_str()),
        "a still sends to {endpoint:?}, b moved to {want}: {}",
        status.json
    );
    // And the tunnel keeps working both ways after the transfer.
    let report = ping(
        &pair.hosts.a,
        overlay::addr(2, false),
        3,
        Duration::from_millis(50),
        Duration::from_secs(2),
    )?;
    ensure!(report.received == 3, "{}", report.render());
    Ok(())
}

#[test]
fn uploader_roams_mid_transfer() {
    e2e("roaming::uploader", |lab| {
        let mut pair = Pair::build(lab, PairOptions::warren())?;
        wait_reachable(&pair.hosts.b, overlay::addr(1, false), HANDSHAKE_WITHIN)?;
        // b uploads to a and moves once a quarter has arrived.
        let transfer = Transfer::start(
            &pair.hosts.b,
            &pair.hosts.a,
            overlay::addr(1, false),
            paced(),
        )?;
        wait_progress(&transfer, 6 << 20, Duration::from_secs(20))?;
        move_b(&pair.hosts.b, &pair.hosts.b_if)?;
        let moved_at = transfer.received();
        let report = transfer.wait().context("upload across the move")?;
        println!(
            "moved after {moved_at} bytes; {} bytes in {:?}",
            report.bytes, report.elapsed
        );
        check_a_follows(&pair)?;
        pair.ensure_running()?;
        Ok(())
    });
}

#[test]
fn downloader_with_keepalive_roams_mid_transfer() {
    e2e("roaming::downloader", |lab| {
        // b only sends ACKs, which stop once a's data goes to the old
        // address; its 1 s keepalive is what tells a where b went.
        let options = PairOptions {
            b_keepalive: Some(1),
            ..PairOptions::warren()
        };
        let mut pair = Pair::build(lab, options)?;
        wait_reachable(&pair.hosts.a, overlay::addr(2, false), HANDSHAKE_WITHIN)?;
        let transfer = Transfer::start(
            &pair.hosts.a,
            &pair.hosts.b,
            overlay::addr(2, false),
            paced(),
        )?;
        wait_progress(&transfer, 6 << 20, Duration::from_secs(20))?;
        move_b(&pair.hosts.b, &pair.hosts.b_if)?;
        let moved_at = transfer.received();
        let report = transfer.wait().context("download across the move")?;
        println!(
            "moved after {moved_at} bytes; {} bytes in {:?}",
            report.bytes, report.elapsed
        );
        check_a_follows(&pair)?;
        pair.ensure_running()?;
        Ok(())
    });
}
