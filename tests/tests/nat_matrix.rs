//! The NAT matrix of shared/NATLAB.md with the real binaries: for every
//! ordered pair of router behaviours (full cone, restricted cone,
//! port-restricted cone, symmetric), two agents behind their routers join
//! one network through the controller on the internet and must reach the
//! expected path (direct, or the relay), keep it, and carry pings both ways
//! and a verified TCP transfer over it.
//!
//! The 16 pairs run as one test, a few labs at a time (`NAT_MATRIX_JOBS`,
//! default 4; `NAT_MATRIX_PAIRS=pr:sym,fc:fc` runs a subset), and a table of
//! outcomes goes to stderr. `NAT_MATRIX_EXTRA=1` adds the pairs with a
//! `masquerade fully-random` router. A pair expected direct that ends
//! relayed is an agent failure; the test reports it with both agents'
//! status, netcheck and logs and both routers' conntrack tables.

use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use warren_lab::natpair::{expected_path, NatKind, NatPair, PeerPath, Side};
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::{e2e, Lab};

/// How long a pair gets to reach its final path after both joined.
const PATH_WITHIN: Duration = Duration::from_secs(20);

/// How long a direct path must then hold.
const HOLD_DIRECT: Duration = Duration::from_secs(3);

/// How long a relayed pair must stay relayed: past a few rounds of probes
/// (every 2 s) and a second call-me-maybe (every 10 s), so that a lab that
/// lets the pair through directly is caught.
const HOLD_RELAY: Duration = Duration::from_secs(8);

/// Size of the TCP transfer on each pair.
const TRANSFER_MIB: u64 = 4;

/// What one pair did.
struct Outcome {
    a: NatKind,
    b: NatKind,
    expected: PeerPath,
    result: Result<Report, String>,
    elapsed: Duration,
}

struct Report {
    join: Duration,
    to_path: Duration,
    a_view: String,
    b_view: String,
    mbit: f64,
    relay_mib: f64,
}

fn run_pair(lab: &Lab, a: NatKind, b: NatKind) -> anyhow::Result<Report> {
    let expected = expected_path(a, b);
    let mut pair = NatPair::build(lab, a, b)?;
    let join = pair.join_both()?;
    let checked = check_pair(&mut pair, expected, join);
    checked.map_err(|e| anyhow::anyhow!("{e:#}\n{}", pair.diagnostics()))
}

fn check_pair(pair: &mut NatPair, expected: PeerPath, join: Duration) -> anyhow::Result<Report> {
    let (a, b) = pair.kinds;
    let to_path = match pair.wait_path(expected, PATH_WITHIN) {
        Ok(t) => t,
        Err(e) if expected == PeerPath::Direct => {
            bail!("AGENT FAILURE: {} should go direct: {e}", pair.label())
        }
        Err(e) => bail!("{} should be relayed: {e}", pair.label()),
    };
    // The lab too: STUN must see exactly the mapping each router makes, or
    // the outcome would say nothing about the agent.
    for (side, kind) in [(Side::A, a), (Side::B, b)] {
        let varies = pair.wait_mapping_varies(side, Duration::from_secs(10))?;
        ensure!(
            varies == kind.maps_per_destination(),
            "netcheck behind {kind} says mapping_varies_by_destination = {varies}"
        );
    }
    let hold = match expected {
        PeerPath::Relay => HOLD_RELAY,
        _ => HOLD_DIRECT,
    };
    pair.hold_path(expected, hold).with_context(|| {
        if expected == PeerPath::Relay {
            "LAB BUG: a pair NATLAB.md expects relayed went direct".to_owned()
        } else {
            "the direct path did not hold".to_owned()
        }
    })?;

    pair.ping_both_ways(5, "over the overlay")?;
    let relay_before = pair.relay_counters()?;
    let dst = pair.overlay_v4(Side::B)?;
    let transfer = tcp_transfer(
        pair.host(Side::A),
        pair.host(Side::B),
        dst.into(),
        TransferSpec::mib(TRANSFER_MIB),
    )
    .context("TCP transfer a -> b over the overlay")?;
    let relay_after = pair.relay_counters()?;
    let relayed = relay_after.bytes.saturating_sub(relay_before.bytes);
    let relay_mib = relayed as f64 / f64::from(1u32 << 20);
    let size = TRANSFER_MIB << 20;
    // Status must match where the bytes went: a direct pair moves (almost)
    // nothing through the relay, a relayed pair all of it.
    match expected {
        PeerPath::Direct => ensure!(
            relayed < size / 10,
            "status says direct but the relay carried {relay_mib:.1} MiB of the transfer"
        ),
        _ => ensure!(
            relayed >= size,
            "status says relay but the relay carried only {relay_mib:.1} MiB of {TRANSFER_MIB} MiB"
        ),
    }
    let (a_view, b_view) = pair.views()?;
    ensure!(
        a_view.path == expected && b_view.path == expected,
        "path changed during the traffic: a: {a_view}; b: {b_view}"
    );
    pair.ensure_running()?;
    Ok(Report {
        join,
        to_path,
        a_view: a_view.to_string(),
        b_view: b_view.to_string(),
        mbit: transfer.mbit_per_s(),
        relay_mib,
    })
}

/// Runs one pair in a lab of its own; on failure prints that lab's logs
/// (one lab at a time, so that parallel failures do not interleave).
fn run_case(a: NatKind, b: NatKind, print: &Mutex<()>) -> Outcome {
    let start = Instant::now();
    let name = format!("nat_matrix::{}_{}", a.short(), b.short());
    let result = match Lab::new(&name) {
        Err(e) => Err(format!("cannot create the lab: {e}")),
        Ok(lab) => {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| run_pair(&lab, a, b)));
            let result = match outcome {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err("panicked".to_owned()),
            };
            if let Err(e) = &result {
                let _one_at_a_time = print.lock();
                let _ = writeln!(std::io::stderr(), "===== {name} FAILED: {e}");
                lab.print_logs();
                if std::env::var_os("WARREN_LAB_KEEP").is_some() {
                    let _ = writeln!(
                        std::io::stderr(),
                        "{name}: lab files kept in {}",
                        lab.keep_dir().display()
                    );
                }
            }
            result
        }
    };
    Outcome {
        a,
        b,
        expected: expected_path(a, b),
        result,
        elapsed: start.elapsed(),
    }
}

fn pairs() -> anyhow::Result<Vec<(NatKind, NatKind)>> {
    if let Ok(list) = std::env::var("NAT_MATRIX_PAIRS") {
        return list
            .split(',')
            .map(|p| {
                let (a, b) = p.split_once(':').context("pairs are a:b")?;
                Ok((
                    NatKind::parse(a).with_context(|| format!("unknown NAT {a}"))?,
                    NatKind::parse(b).with_context(|| format!("unknown NAT {b}"))?,
                ))
            })
            .collect();
    }
    let kinds: &[NatKind] = if std::env::var_os("NAT_MATRIX_EXTRA").is_some() {
        &NatKind::ALL
    } else {
        &NatKind::MATRIX
    };
    Ok(kinds
        .iter()
        .flat_map(|a| kinds.iter().map(move |b| (*a, *b)))
        .collect())
}

fn render(outcomes: &[Outcome], wall: Duration) -> String {
    let mut out = format!(
        "\nNAT matrix ({} pairs in {:.0} s)\n{:<16} {:<16} {:<8} {:<7} {:>6} {:>8} {:>9} {:>9}  paths\n",
        outcomes.len(),
        wall.as_secs_f64(),
        "a",
        "b",
        "expect",
        "result",
        "join s",
        "path s",
        "TCP Mb/s",
        "relay MiB"
    );
    for o in outcomes {
        match &o.result {
            Ok(r) => out.push_str(&format!(
                "{:<16} {:<16} {:<8} {:<7} {:>6.2} {:>8.2} {:>9.0} {:>9.1}  a: {}; b: {}  ({:.0} s)\n",
                o.a.name(),
                o.b.name(),
                o.expected.to_string(),
                "ok",
                r.join.as_secs_f64(),
                r.to_path.as_secs_f64(),
                r.mbit,
                r.relay_mib,
                r.a_view,
                r.b_view,
                o.elapsed.as_secs_f64()
            )),
            Err(e) => out.push_str(&format!(
                "{:<16} {:<16} {:<8} FAILED  {}\n",
                o.a.name(),
                o.b.name(),
                o.expected.to_string(),
                e.lines().next().unwrap_or("")
            )),
        }
    }
    out
}

#[test]
fn every_pair_reaches_its_expected_path_and_carries_traffic() {
    e2e("nat_matrix", |_lab| {
        let cases = pairs()?;
        let jobs: usize = std::env::var("NAT_MATRIX_JOBS")
            .ok()
            .and_then(|j| j.parse().ok())
            .unwrap_or(4)
            .max(1);
        let start = Instant::now();
        let next = AtomicUsize::new(0);
        let print = Mutex::new(());
        let results = Mutex::new(Vec::new());
        thread::scope(|s| {
            for _ in 0..jobs.min(cases.len()) {
                s.spawn(|| {
                    while let Some(&(a, b)) = cases.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let outcome = run_case(a, b, &print);
                        if let Ok(mut all) = results.lock() {
                            all.push(outcome);
                        }
                    }
                });
            }
        });
        let mut outcomes = results
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a case thread panicked"))?;
        outcomes.sort_by_key(|o| (o.a, o.b));
        let table = render(&outcomes, start.elapsed());
        let _ = writeln!(std::io::stderr(), "{table}");
        let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
        ensure!(
            failed == 0,
            "{failed} of {} pairs failed:{table}",
            outcomes.len()
        );
        ensure!(!outcomes.is_empty(), "no pairs ran");
        Ok(())
    });
}
