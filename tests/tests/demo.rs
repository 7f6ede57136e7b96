//! The README's main job, `warren-lab demo`, run as a user runs it: three
//! agents behind different NATs join, pair up direct or relayed as
//! NATLAB.md says, ping each other, answer `warren ping` on the expected
//! path, resolve each other's names, find a published service, reach a
//! cluster through a route, and the audit trail holds every step. Every
//! figure it prints is measured: the time each pair took to settle is its
//! own, and well under the demo's wait.

use std::process::Command;

use anyhow::{ensure, Context};
use warren_lab::e2e;

/// The demo waits 20 s for a pair to settle; these paths take well under
/// a second on an idle machine. A figure at or past this bound is a wait
/// that ran out and was printed as if it were a measurement.
const PATH_BOUND_SECS: f64 = 10.0;

/// The seconds a pair's line says it took: `... direct  0.31 s after the joins ...`.
fn settle_secs(line: &str) -> Option<f64> {
    let (before, _) = line.split_once(" s after the joins")?;
    before.split_whitespace().last()?.parse().ok()
}

#[test]
fn the_demo_lab_runs_from_start_to_finish() {
    e2e("demo", |_lab| {
        let out = Command::new(env!("CARGO_BIN_EXE_warren-lab"))
            .arg("demo")
            .output()
            .context("running warren-lab demo")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = || format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        ensure!(
            out.status.success(),
            "warren-lab demo failed:\n{}",
            report()
        );
        for expected in [
            "master  <-> laptop  direct",
            "master  <-> phone   direct",
            "laptop  <-> phone   relay",
            "12 of 12 pings answered in full; 0 problem(s)",
            "pong from master via 203.0.113.1:41641",
            "pong from phone via relay in",
            "[laptop] dig @10.147.0.2 master.sites.warren.internal A +short\n10.147.0.1\n",
            "0 0 8080 master.sites.warren.internal.",
            "answered by web-master, which saw the request come from 10.147.0.2",
            "answered by cluster-master",
            "every step above is in the log",
            "audit chain ok",
            "torn down",
        ] {
            ensure!(
                stdout.contains(expected),
                "the demo did not print {expected:?}:\n{}",
                report()
            );
        }
        for unwanted in ["timed out", "NOT ", "failed"] {
            ensure!(
                !stdout.contains(unwanted),
                "the demo printed {unwanted:?}:\n{}",
                report()
            );
        }
        let figures: Vec<f64> = stdout.lines().filter_map(settle_secs).collect();
        ensure!(
            figures.len() == 3 && figures.iter().all(|s| *s < PATH_BOUND_SECS),
            "each of the 3 pairs should say how long it took, under {PATH_BOUND_SECS} s: {figures:?}\n{}",
            report()
        );
        Ok(())
    });
}

#[test]
fn a_pair_line_gives_its_measured_seconds() {
    let line =
        "  master  <-> laptop  direct   0.31 s after the joins  (full-cone x port-restricted; ...)";
    assert_eq!(settle_secs(line), Some(0.31));
    assert_eq!(
        settle_secs("  laptop  <-> phone   NOT relay: timed out"),
        None
    );
}
