//! warren-nat-bench: how fast Warren's agents find a path through the NAT
//! lab's routers (shared/NATLAB.md), how fast they fall back to the relay,
//! and what the relay carries next to a direct path. Needs root.
//!
//! For every NAT pair, `RUNS` times, in a fresh lab: both agents join at
//! the same moment; "up" is when both `warren join`s have answered (both
//! are members with overlay addresses). Then:
//! - **first packet**: from up to the first overlay ping a -> b answered
//!   (a ping every 50 ms);
//! - **path**: from up until both agents' `warren status` show the pair's
//!   final path (direct, or relay where NATLAB.md expects relayed);
//! - **fallback** (direct pairs): UDP between the peers is blocked on both
//!   routers (everything but the controller), with a ping every 100 ms
//!   running; the time from the block to the first answered ping. The
//!   agent re-probes a direct path every 10 s, so where the block falls in
//!   that cycle matters: run i blocks (37 i mod 100) / 10 s after the path
//!   went direct, which spreads the blocks evenly over the cycle;
//! - **throughput** (the first `IPERF_RUNS` runs): iperf3 TCP a -> b over
//!   the overlay, direct and then (blocked) relayed, or relayed only.
//!
//! The anchor is measured once at the start: iperf3 from host-a to the
//! internet through router-a, no tunnel. Ctrl-C stops after the current
//! run and prints what was measured.
//!
//! Environment: `RUNS` (20), `PAIRS` (`pr:sym,fc:fc`; default the 16 pairs
//! of the matrix; names `fc rc pr sym symfr`), `IPERF_RUNS` (2),
//! `IPERF_SECONDS` (5), `FALLBACK_RUNS` (all), `RELAY_RATE` (controller
//! relay quota in bytes/s; its default otherwise), `WARREN_BIN`,
//! `WARREN_CONTROLLER_BIN` (use release builds).

use std::env;
use std::io::Write as _;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use warren_lab::iperf;
use warren_lab::natpair::{expected_path, NatKind, NatPair, PeerPath, Side};
use warren_lab::ping::Pinger;
use warren_lab::topology::NatLab;
use warren_lab::{is_root, Lab};

/// Bound on each timed phase; a run past it counts as a failure.
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// How often the path is read from `warren status`.
const STATUS_POLL: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Options {
    runs: usize,
    pairs: Vec<(NatKind, NatKind)>,
    iperf_runs: usize,
    iperf_seconds: u32,
    fallback_runs: usize,
    relay_rate: Option<u64>,
}

fn env_or<T: FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

impl Options {
    fn from_env() -> anyhow::Result<Options> {
        let runs = env_or("RUNS", 20usize)?;
        let pairs = match env::var("PAIRS") {
            Ok(list) => list
                .split(',')
                .map(|p| {
                    let (a, b) = p.split_once(':').context("PAIRS items are a:b")?;
                    Ok((
                        NatKind::parse(a).with_context(|| format!("unknown NAT {a:?}"))?,
                        NatKind::parse(b).with_context(|| format!("unknown NAT {b:?}"))?,
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
            Err(_) => NatKind::MATRIX
                .iter()
                .flat_map(|a| NatKind::MATRIX.iter().map(move |b| (*a, *b)))
                .collect(),
        };
        Ok(Options {
            runs,
            pairs,
            iperf_runs: env_or("IPERF_RUNS", 2usize)?,
            iperf_seconds: env_or("IPERF_SECONDS", 5u32)?,
            fallback_runs: env_or("FALLBACK_RUNS", runs)?,
            relay_rate: env::var("RELAY_RATE").ok().map(|r| r.parse()).transpose()?,
        })
    }
}

/// What one run measured; `None` where it did not measure or the phase
/// failed (then `error` says why).
#[derive(Debug, Default)]
struct Run {
    join: Option<Duration>,
    first_packet: Option<Duration>,
    to_path: Option<Duration>,
    fallback: Option<Duration>,
    direct_mbit: Option<f64>,
    relay_mbit: Option<f64>,
    error: Option<String>,
}

/// Pings `dst` every `every` (each waiting up to `every` for its answer)
/// until one is answered; the time from `since` to that answer.
fn first_answer(pinger: &Pinger, since: Instant, every: Duration) -> anyhow::Result<Duration> {
    let mut seq: u16 = 1;
    while since.elapsed() < PHASE_LIMIT {
        if pinger.ping_once(seq, every)?.is_some() {
            return Ok(since.elapsed());
        }
        seq = seq.wrapping_add(1);
    }
    bail!("no ping answered within {PHASE_LIMIT:?}")
}

/// Polls both agents until they show `want`; the time since `since`.
fn path_reached(pair: &NatPair, want: PeerPath, since: Instant) -> anyhow::Result<Duration> {
    loop {
        let (a, b) = pair.views()?;
        if a.path == want && b.path == want {
            return Ok(since.elapsed());
        }
        if since.elapsed() >= PHASE_LIMIT {
            bail!("no {want} path within {PHASE_LIMIT:?} (a: {a}; b: {b})");
        }
        thread::sleep(STATUS_POLL);
    }
}

fn measure(
    lab: &Lab,
    a: NatKind,
    b: NatKind,
    opts: &Options,
    index: usize,
    run: &mut Run,
) -> anyhow::Result<()> {
    let expected = expected_path(a, b);
    let pair = NatPair::build_with_relay_rate(lab, a, b, opts.relay_rate)?;
    run.join = Some(pair.join_both()?);
    let up = Instant::now();
    let dst: IpAddr = pair.overlay_v4(Side::B)?.into();
    let pinger = Pinger::open(pair.host(Side::A), dst)?;
    let (first, path) = thread::scope(|s| {
        let first = s.spawn(|| first_answer(&pinger, up, Duration::from_millis(50)));
        let path = path_reached(&pair, expected, up);
        (first.join(), path)
    });
    run.first_packet = Some(first.map_err(|_| anyhow::anyhow!("ping thread panicked"))??);
    run.to_path = Some(path?);

    let iperf_run = index < opts.iperf_runs;
    let throughput = |pair: &NatPair| -> anyhow::Result<f64> {
        let t = iperf::tcp(
            lab,
            pair.host(Side::B),
            pair.host(Side::A),
            dst,
            opts.iperf_seconds,
        )?;
        Ok(t.mbit())
    };
    if expected == PeerPath::Direct {
        if iperf_run {
            run.direct_mbit = Some(throughput(&pair)?);
            path_reached(&pair, PeerPath::Direct, Instant::now())
                .context("the direct path did not survive iperf3")?;
        }
        if index < opts.fallback_runs || iperf_run {
            let pinger = Pinger::open(pair.host(Side::A), dst)?;
            thread::sleep(block_delay(index));
            pair.block_udp()?;
            let blocked = Instant::now();
            run.fallback = Some(
                first_answer(&pinger, blocked, Duration::from_millis(100))
                    .context("no answer through the relay after the block")?,
            );
            path_reached(&pair, PeerPath::Relay, Instant::now())
                .context("traffic flows again, but status does not say relay")?;
        }
    }
    if iperf_run {
        run.relay_mbit = Some(throughput(&pair)?);
    }
    Ok(())
}

/// How long run `index` waits on the direct path before blocking it:
/// spread over the agent's 10 s re-probe cycle.
fn block_delay(index: usize) -> Duration {
    Duration::from_millis(((index * 37) % 100) as u64 * 100)
}

/// Anchor: TCP from host-a to the internet through router-a, no tunnel.
fn anchor(opts: &Options) -> anyhow::Result<f64> {
    let lab = Lab::new("nat-bench-anchor")?;
    let net = NatLab::build(
        &lab,
        NatKind::PortRestricted.nat(),
        NatKind::PortRestricted.nat(),
    )?;
    let t = iperf::tcp(
        &lab,
        &net.internet,
        &net.host_a,
        IpAddr::V4(NatLab::SERVER),
        opts.iperf_seconds,
    )?;
    Ok(t.mbit())
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// "p50 / p95 / max" of the measured values, with "(k failed)" if some
/// runs did not measure.
fn summary(values: &[Option<Duration>], wanted: usize) -> String {
    let mut v: Vec<f64> = values.iter().flatten().map(Duration::as_secs_f64).collect();
    if v.is_empty() {
        return if wanted == 0 {
            "-".to_owned()
        } else {
            format!("all {wanted} failed")
        };
    }
    v.sort_by(f64::total_cmp);
    let mut out = format!(
        "{:.2} / {:.2} / {:.2}",
        pct(&v, 50.0),
        pct(&v, 95.0),
        pct(&v, 100.0)
    );
    if v.len() < wanted {
        out.push_str(&format!(" ({} failed)", wanted - v.len()));
    }
    out
}

fn mean(values: impl Iterator<Item = f64>) -> String {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        return "-".to_owned();
    }
    format!(
        "{:.0} (n={})",
        v.iter().sum::<f64>() / v.len() as f64,
        v.len()
    )
}

fn main() -> anyhow::Result<()> {
    if !is_root() {
        bail!("warren-nat-bench needs root (network namespaces, TUN, nftables)");
    }
    let opts = Options::from_env()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let started = Instant::now();
    eprintln!("warren-nat-bench: {opts:?}");
    let anchor_mbit = anchor(&opts).context("measuring the anchor")?;
    eprintln!("anchor: {anchor_mbit:.0} Mbit/s");

    let mut rows = Vec::new();
    for &(a, b) in &opts.pairs {
        let expected = expected_path(a, b);
        let mut runs = Vec::new();
        for index in 0..opts.runs {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let mut run = Run::default();
            let lab = Lab::new(&format!("nat-bench-{}-{}-{index}", a.short(), b.short()))?;
            if let Err(e) = measure(&lab, a, b, &opts, index, &mut run) {
                run.error = Some(format!("{e:#}"));
                lab.print_logs();
            }
            let fmt = |d: Option<Duration>| {
                d.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
            };
            let _ = writeln!(
                std::io::stderr(),
                "{a} x {b} run {index}: join {} first {} path({expected}) {} fallback {} direct {} relay {} {}",
                fmt(run.join),
                fmt(run.first_packet),
                fmt(run.to_path),
                fmt(run.fallback),
                run.direct_mbit.map_or("-".to_owned(), |m| format!("{m:.0}")),
                run.relay_mbit.map_or("-".to_owned(), |m| format!("{m:.0}")),
                run.error.as_deref().unwrap_or("")
            );
            runs.push(run);
        }
        rows.push((a, b, expected, runs));
        if stop.load(Ordering::SeqCst) {
            eprintln!("stopped by a signal");
            break;
        }
    }

    println!(
        "\nwarren-nat-bench: {} runs per pair, anchor (host-a -> internet through router-a, no tunnel) {anchor_mbit:.0} Mbit/s, {:.0} s in all\n",
        opts.runs,
        started.elapsed().as_secs_f64()
    );
    println!("| a × b | final path | runs | join → both up, s (p50 / p95 / max) | up → first ping, s (p50 / p95 / max) | up → final path, s (p50 / p95 / max) | fallback to relay, s (p50 / p95 / max) | TCP direct, Mbit/s | TCP relay, Mbit/s | failed runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (a, b, expected, runs) in &rows {
        let fallback_wanted = if *expected == PeerPath::Direct {
            runs.len().min(opts.fallback_runs.max(opts.iperf_runs))
        } else {
            0
        };
        let col = |f: fn(&Run) -> Option<Duration>| runs.iter().map(f).collect::<Vec<_>>();
        println!(
            "| {a} × {b} | {expected} | {} | {} | {} | {} | {} | {} | {} | {} |",
            runs.len(),
            summary(&col(|r| r.join), runs.len()),
            summary(&col(|r| r.first_packet), runs.len()),
            summary(&col(|r| r.to_path), runs.len()),
            summary(
                &col(|r| r.fallback)[..fallback_wanted.min(runs.len())],
                fallback_wanted
            ),
            mean(runs.iter().filter_map(|r| r.direct_mbit)),
            mean(runs.iter().filter_map(|r| r.relay_mbit)),
            runs.iter().filter(|r| r.error.is_some()).count()
        );
    }
    Ok(())
}
