//! Warren speaks WireGuard: it must interoperate with wireguard-go, the
//! reference userspace implementation, whichever side starts the handshake.

use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::e2e;
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Implementation, Pair, PairOptions};
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::topology::TwoHosts;
use warren_lab::transfer::{tcp_transfer, TransferSpec};

const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Pings and TCP both ways over both overlay families.
fn exercise(pair: &Pair) -> anyhow::Result<()> {
    for v6 in [false, true] {
        for (from, to) in [(&pair.hosts.a, 2), (&pair.hosts.b, 1)] {
            let report = ping(
                from,
                overlay::addr(to, v6),
                5,
                Duration::from_millis(50),
                Duration::from_secs(2),
            )?;
            ensure!(
                report.received == 5,
                "ping lost replies:\n{}",
                report.render()
            );
        }
    }
    for v6 in [false, true] {
        let there = tcp_transfer(
            &pair.hosts.a,
            &pair.hosts.b,
            overlay::addr(2, v6),
            TransferSpec::mib(8),
        )
        .with_context(|| format!("TCP a -> b (v6 {v6})"))?;
        let back = tcp_transfer(
            &pair.hosts.b,
            &pair.hosts.a,
            overlay::addr(1, v6),
            TransferSpec::mib(8),
        )
        .with_context(|| format!("TCP b -> a (v6 {v6})"))?;
        println!(
            "v6 {v6}: a->b {:.0} Mbit/s, b->a {:.0} Mbit/s",
            there.mbit_per_s(),
            back.mbit_per_s()
        );
    }
    Ok(())
}

#[test]
fn warren_initiates_to_wireguard_go() {
    e2e("interop::warren_initiates", |lab| {
        let options = PairOptions {
            b_knows_a: false,
            ..PairOptions::of(Implementation::Warren, Implementation::WireguardGo)
        };
        let mut pair = Pair::build(lab, options)?;
        wait_reachable(&pair.hosts.a, overlay::addr(2, false), HANDSHAKE_WITHIN)
            .context("warren -> wireguard-go first ping")?;
        exercise(&pair)?;

        let Pair {
            a,
            b,
            hosts,
            key_a,
            key_b,
            ..
        } = &pair;
        let status = a.agent()?.status()?;
        let peer = status.peer(&key_b.public_key)?;
        ensure!(
            peer.last_handshake()?.is_some(),
            "warren shows no handshake: {}",
            status.json
        );
        if let warren_lab::pair::Node::WireguardGo(wg) = b {
            ensure!(
                wg.latest_handshake(&hosts.b, &key_a.public_key)?.is_some(),
                "wireguard-go shows no handshake:\n{}",
                wg.dump(&hosts.b)?
            );
        }
        pair.ensure_running()?;
        Ok(())
    });
}

#[test]
fn wireguard_go_initiates_to_warren() {
    e2e("interop::wireguard_go_initiates", |lab| {
        let options = PairOptions {
            b_knows_a: false,
            ..PairOptions::of(Implementation::WireguardGo, Implementation::Warren)
        };
        let mut pair = Pair::build(lab, options)?;

        // Warren has no endpoint for a yet: its packets must be dropped and
        // counted, not sent anywhere.
        let report = ping(
            &pair.hosts.b,
            overlay::addr(1, false),
            2,
            Duration::ZERO,
            Duration::from_millis(300),
        )?;
        ensure!(
            report.received == 0,
            "reply without an endpoint:\n{}",
            report.render()
        );
        let status = pair.b.agent()?.status()?;
        ensure!(
            status.counter("dropped_no_endpoint")? > 0,
            "dropped_no_endpoint not counted: {}",
            status.json
        );

        wait_reachable(&pair.hosts.a, overlay::addr(2, false), HANDSHAKE_WITHIN)
            .context("wireguard-go -> warren first ping")?;
        exercise(&pair)?;

        let status = pair.b.agent()?.status()?;
        let peer = status.peer(&pair.key_a.public_key)?;
        ensure!(
            peer.last_handshake()?.is_some(),
            "warren shows no handshake: {}",
            status.json
        );
        let learned = format!("{}:51820", TwoHosts::A_V4);
        ensure!(
            peer.endpoint()?.as_deref() == Some(learned.as_str()),
            "warren did not learn wireguard-go's endpoint {learned}: {}",
            status.json
        );
        pair.ensure_running()?;
        Ok(())
    });
}
