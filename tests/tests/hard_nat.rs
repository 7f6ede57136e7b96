//! Birthday probing (the agent engine's `birthday` module) with the real
//! binaries, behind the NAT lab's routers. A symmetric NAT against a
//! port-restricted one is relayed with plain probing (the NAT matrix, which
//! runs with probing off); with `--hard-nat-probing true` the pair goes
//! direct: the symmetric side pings from 256 sockets, the other sprays
//! 1,024 ports, and one meeting opens both NATs. The hard side's counter
//! proves that a try happened, and neither side's goes on once direct. Two symmetric NATs cannot meet that way: that
//! pair stays relayed and tries nothing.
//!
//! `HARD_NAT_RUNS=N` makes `symmetric_against_port_restricted_goes_direct`
//! a benchmark instead (`bench/hard-nat.sh`): for each pair one lab with
//! probing off (the anchor: plain probing's path), then N labs with it on;
//! a table of how many went direct and how fast, and it fails only if none
//! did.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use warren_lab::natpair::{NatKind, NatPair, PeerPath, Side};
use warren_lab::{e2e, Lab};

/// How long a pair gets to go direct after both joined: the first try
/// comes 3 s into the search, the next ones 15 s apart.
const DIRECT_WITHIN: Duration = Duration::from_secs(40);

/// How long the direct path must then hold: past a round of the path's
/// own checks (`warren_engine::path::PROBE_DIRECT`, 10 s, and a pong's
/// wait, 2 s), whose pongs must come back from the address each ping went
/// to, through whichever extra socket carries the path.
const HOLD_DIRECT: Duration = Duration::from_secs(13);

/// How long two symmetric NATs must stay relayed: past the first try's
/// moment and a retry's.
const HOLD_RELAY: Duration = Duration::from_secs(20);

/// The hard side first, then the easy one.
const PAIRS: [(NatKind, NatKind); 2] = [
    (NatKind::Symmetric, NatKind::PortRestricted),
    (NatKind::SymmetricFullyRandom, NatKind::PortRestricted),
];

/// What one lab run of a pair showed.
struct Run {
    /// From both joined to both direct; `None`: still relayed at the end.
    to_direct: Option<Duration>,
    /// Fan-outs the hard side made, and sprays the easy side answered.
    fan_outs: u64,
    sprays: u64,
}

fn counter(pair: &NatPair, side: Side, name: &str) -> anyhow::Result<u64> {
    Ok(pair.agent(side).status()?.counter(name)?)
}

/// One lab of `hard` (side a) against `easy` (side b), probing on.
fn run(lab: &Lab, hard: NatKind, easy: NatKind, strict: bool) -> anyhow::Result<Run> {
    let mut pair = NatPair::build_hard_nat_probing(lab, hard, easy)?;
    pair.join_both()?;
    let to_direct = match pair.wait_path(PeerPath::Direct, DIRECT_WITHIN) {
        Ok(t) => Some(t),
        Err(e) if strict => {
            return Err(anyhow::anyhow!(
                "{}: {e}\n{}",
                pair.label(),
                pair.diagnostics()
            ));
        }
        Err(_) => None,
    };
    let outcome = Run {
        to_direct,
        fan_outs: counter(&pair, Side::A, "hard_nat_fanouts")?,
        sprays: counter(&pair, Side::B, "hard_nat_sprays")?,
    };
    if to_direct.is_some() {
        pair.hold_path(PeerPath::Direct, HOLD_DIRECT)
            .context("the direct path did not hold")?;
        pair.ping_both_ways(5, "over the birthday path")?;
        // It was the birthday try that opened the way, not plain probing
        // (the anchor shows what that alone does). Usually the spray met a
        // fan-out socket; now and then the fan-out alone gets through, when
        // one of its sockets maps to a port the peer already pings (our
        // mapping towards a STUN port): then the peer is direct before its
        // spray request arrives, and rightly makes none.
        ensure!(
            outcome.fan_outs >= 1,
            "direct without a try: {} fan-outs, {} sprays",
            outcome.fan_outs,
            outcome.sprays
        );
        // Neither side sprays or fans out again once direct.
        let (a, b) = (
            counter(&pair, Side::A, "hard_nat_fanouts")?,
            counter(&pair, Side::B, "hard_nat_sprays")?,
        );
        ensure!(
            a == outcome.fan_outs && b == outcome.sprays,
            "tries went on after the path was found"
        );
    }
    pair.ensure_running()?;
    Ok(outcome)
}

/// The anchor, in the same run: the pair with probing off, as plain
/// probing (and every agent before this) leaves it. Its path once settled.
fn anchor(lab: &Lab, hard: NatKind, easy: NatKind) -> anyhow::Result<PeerPath> {
    let mut pair = NatPair::build(lab, hard, easy)?;
    pair.join_both()?;
    pair.wait_path(PeerPath::Relay, Duration::from_secs(20))?;
    // Past the moment a try would come, and a retry's.
    Ok(match pair.hold_path(PeerPath::Relay, HOLD_RELAY) {
        Ok(()) => PeerPath::Relay,
        Err(_) => pair.peer_view(Side::A)?.path,
    })
}

fn runs_wanted() -> Option<u32> {
    std::env::var("HARD_NAT_RUNS").ok()?.parse().ok()
}

#[test]
fn symmetric_against_port_restricted_goes_direct() {
    let Some(runs) = runs_wanted() else {
        for (hard, easy) in PAIRS {
            let name = format!("hard_nat::{}_{}", hard.short(), easy.short());
            e2e(&name, |lab| {
                let outcome = run(lab, hard, easy, true)?;
                let _ = writeln!(
                    std::io::stderr(),
                    "{hard} x {easy}: direct after {:.1} s ({} fan-outs, {} sprays)",
                    outcome.to_direct.unwrap_or_default().as_secs_f64(),
                    outcome.fan_outs,
                    outcome.sprays
                );
                Ok(())
            });
        }
        return;
    };
    e2e("hard_nat::bench", |_| {
        let start = Instant::now();
        let mut table = String::new();
        let mut direct_total = 0;
        for (hard, easy) in PAIRS {
            let lab = Lab::new(&format!("hard_nat::a{}", hard.short()))?;
            let plain = anchor(&lab, hard, easy);
            let plain = match plain {
                Ok(path) => path,
                Err(e) => {
                    lab.print_logs();
                    return Err(e);
                }
            };
            drop(lab);
            let mut times = Vec::new();
            let mut tries = Vec::new();
            for i in 0..runs {
                let lab = Lab::new(&format!("hard_nat::b{}{i}", hard.short()))?;
                let outcome = run(&lab, hard, easy, false);
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        lab.print_logs();
                        return Err(e);
                    }
                };
                let _ = writeln!(
                    std::io::stderr(),
                    "{hard} x {easy} run {i}: {} after {} fan-outs",
                    outcome.to_direct.map_or("relayed".to_owned(), |t| format!(
                        "direct in {:.1} s",
                        t.as_secs_f64()
                    )),
                    outcome.fan_outs
                );
                if let Some(t) = outcome.to_direct {
                    times.push(t.as_secs_f64());
                    tries.push(outcome.fan_outs);
                }
            }
            direct_total += times.len();
            times.sort_by(f64::total_cmp);
            let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
            let first_try = tries.iter().filter(|t| **t == 1).count();
            table.push_str(&format!(
                "{:<16} {:<16} probing off: {:<6} on: {:>3}/{:<3} direct  {:>3} on the first try  median {:.1} s  max {:.1} s\n",
                hard.name(),
                easy.name(),
                plain.to_string(),
                times.len(),
                runs,
                first_try,
                median,
                times.last().copied().unwrap_or(f64::NAN)
            ));
        }
        let _ = writeln!(
            std::io::stderr(),
            "\nbirthday probing, {runs} runs per pair, {:.0} s:\n{table}",
            start.elapsed().as_secs_f64()
        );
        ensure!(direct_total > 0, "no run went direct");
        Ok(())
    });
}

#[test]
fn two_symmetric_nats_stay_relayed_and_try_nothing() {
    e2e("hard_nat::sym_sym", |lab| {
        let (a, b) = (NatKind::Symmetric, NatKind::SymmetricFullyRandom);
        let mut pair = NatPair::build_hard_nat_probing(lab, a, b)?;
        pair.join_both()?;
        pair.wait_path(PeerPath::Relay, Duration::from_secs(20))?;
        pair.hold_path(PeerPath::Relay, HOLD_RELAY)?;
        pair.ping_both_ways(3, "through the relay")?;
        for side in [Side::A, Side::B] {
            let tries = counter(&pair, side, "hard_nat_fanouts")?
                + counter(&pair, side, "hard_nat_sprays")?;
            ensure!(tries == 0, "{side:?} tried {tries} times");
        }
        Ok(())
    });
}
