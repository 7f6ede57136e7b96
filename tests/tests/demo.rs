//! The README's main job, `warren-lab demo`, run as a user runs it: three
//! agents behind different NATs join, pair up direct or relayed as
//! NATLAB.md says, ping each other and reach a cluster through a route.

use std::process::Command;

use anyhow::{ensure, Context};
use warren_lab::e2e;

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
            "answered by cluster-master",
            "torn down",
        ] {
            ensure!(
                stdout.contains(expected),
                "the demo did not print {expected:?}:\n{}",
                report()
            );
        }
        Ok(())
    });
}
