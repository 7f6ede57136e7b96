//! Garbage on the UDP port: 10,000 random, truncated and mis-sized
//! datagrams must be dropped and counted, never crash the agent or break the
//! tunnel, and never draw an answer.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::e2e;
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Pair, PairOptions};
use warren_lab::pcap::Capture;
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::prng::XorShift;
use warren_lab::topology::TwoHosts;
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::wg_message::{expected_len, message_type};

const PORT: u16 = 51820;
const DATAGRAMS: usize = 10_000;
const SEED: u64 = 0x00ba_d5ee_d000;

/// The fuzz corpus: a deterministic mix of three kinds of bad input.
fn corpus(real: &[Vec<u8>], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = XorShift::new(seed);
    (0..DATAGRAMS)
        .map(|_| match rng.below(10) {
            // Random bytes, 0..=1500 long.
            0..=3 => {
                let mut d = vec![0u8; rng.below(1501) as usize];
                rng.fill(&mut d);
                d
            }
            // A real message cut short.
            4..=6 => {
                let msg = &real[rng.below(real.len() as u64) as usize];
                msg[..rng.below(msg.len() as u64) as usize].to_vec()
            }
            // WireGuard framing (type 1..=4, reserved zero) with a wrong
            // length and random contents.
            _ => {
                let t = 1 + rng.below(4) as u8;
                let right = expected_len(t).unwrap_or(32);
                let len = loop {
                    let len = if t == 4 {
                        4 + rng.below(28) as usize
                    } else {
                        4 + rng.below(300) as usize
                    };
                    if len != right {
                        break len;
                    }
                };
                let mut d = vec![0u8; len];
                rng.fill(&mut d[4..]);
                d[0] = t;
                d
            }
        })
        .collect()
}

#[test]
fn corpus_is_deterministic_and_malformed() {
    let real = vec![vec![1, 0, 0, 0, 7, 7, 7, 7]; 3];
    let a = corpus(&real, SEED);
    assert_eq!(a, corpus(&real, SEED));
    assert_eq!(a.len(), DATAGRAMS);
    assert!(a.iter().any(|d| d.is_empty()));
    for d in &a {
        if let Some(t) = message_type(d) {
            if t != 4 {
                assert_ne!(Some(d.len()), expected_len(t), "{d:?}");
            }
        }
    }
}

#[test]
fn garbage_is_dropped_and_the_tunnel_survives() {
    e2e("malformed::flood", |lab| {
        let mut pair = Pair::build(lab, PairOptions::warren())?;
        let b_addr = SocketAddr::new(TwoHosts::B_V4.into(), PORT);

        // Real messages to truncate: a handshake and some data, both ways.
        let port = PORT.to_string();
        let capture = Capture::start(
            lab,
            &pair.hosts.a,
            &pair.hosts.a_if,
            "tcpdump",
            &["udp", "port", &port],
        )?;
        wait_reachable(
            &pair.hosts.a,
            overlay::addr(2, false),
            Duration::from_secs(10),
        )?;
        ping(
            &pair.hosts.a,
            overlay::addr(2, true),
            3,
            Duration::ZERO,
            Duration::from_secs(2),
        )?;
        let real: Vec<Vec<u8>> = capture.finish()?.into_iter().map(|d| d.payload).collect();
        ensure!(
            real.iter().any(|p| message_type(p) == Some(1))
                && real.iter().any(|p| message_type(p) == Some(4)),
            "capture lacks a handshake or data: {} datagrams",
            real.len()
        );

        let before = pair.b.agent()?.status()?;
        let attacker = pair.hosts.a.run(|| UdpSocket::bind("0.0.0.0:0"))??;
        let datagrams = corpus(&real, SEED);
        for (i, d) in datagrams.iter().enumerate() {
            attacker
                .send_to(d, b_addr)
                .with_context(|| format!("sending datagram {i}"))?;
            // Pace the flood so the kernel's socket buffer, not the agent,
            // is never what drops it.
            if i % 100 == 99 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        thread::sleep(Duration::from_millis(500));
        pair.b
            .ensure_running()
            .context("agent b died under malformed input")?;
        let after = pair
            .b
            .agent()?
            .status()
            .context("agent b stopped answering status")?;

        let delta = |name: &str| -> anyhow::Result<u64> {
            Ok(after.counter(name)?.saturating_sub(before.counter(name)?))
        };
        let counters = after.json.get("counters").cloned().unwrap_or_default();
        println!("sent {DATAGRAMS}; counters after: {counters}");
        let received = delta("udp_rx_datagrams")?;
        let invalid = delta("dropped_invalid")?;
        ensure!(
            received >= DATAGRAMS as u64 * 9 / 10,
            "only {received} of {DATAGRAMS} datagrams reached the agent: {}",
            after.json
        );
        ensure!(invalid > 0, "dropped_invalid did not grow: {}", after.json);
        // Every datagram that arrived must be accounted as dropped for some
        // reason (truncated copies of seen data may count as replays).
        let mut dropped = 0;
        for name in [
            "dropped_invalid",
            "dropped_replay",
            "dropped_unknown_peer",
            "dropped_spoofed",
        ] {
            dropped += delta(name)?;
        }
        ensure!(
            dropped * 100 >= received * 99,
            "{received} datagrams arrived but only {dropped} were counted as dropped: {}",
            after.json
        );

        // Garbage must never draw a reply.
        attacker.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 2048];
        match warren_lab::eintr::restart(|| attacker.recv_from(&mut buf)) {
            Ok((n, from)) => anyhow::bail!("agent answered garbage: {n} bytes from {from}"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }

        for (from, to) in [(&pair.hosts.a, 2), (&pair.hosts.b, 1)] {
            let report = ping(
                from,
                overlay::addr(to, false),
                3,
                Duration::from_millis(50),
                Duration::from_secs(2),
            )?;
            ensure!(
                report.received == 3,
                "tunnel broken after the flood:\n{}",
                report.render()
            );
        }
        tcp_transfer(
            &pair.hosts.a,
            &pair.hosts.b,
            overlay::addr(2, false),
            TransferSpec::mib(2),
        )?;
        pair.ensure_running()?;
        Ok(())
    });
}
