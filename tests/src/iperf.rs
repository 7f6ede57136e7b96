//! TCP throughput between two namespaces with iperf3: a one-off server in
//! one, a client in the other, and the receiver's rate from the client's
//! JSON report.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::wait::{self, Poll};

/// iperf3's own port; each measurement has its own server, so one port does.
const PORT: u16 = 5201;

static RUN: AtomicU32 = AtomicU32::new(0);

/// One measurement's result.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// What the receiver got, in bits per second.
    pub received_bps: f64,
    /// Segments the sender retransmitted.
    pub retransmits: u64,
}

impl Throughput {
    pub fn mbit(&self) -> f64 {
        self.received_bps / 1e6
    }
}

/// Runs `iperf3 -c server_addr -t seconds` (one stream, client sends) from
/// `client` to a fresh `iperf3 -s -1` on `server_addr` in `server`.
pub fn tcp(
    lab: &Lab,
    server: &Netns,
    client: &Netns,
    server_addr: IpAddr,
    seconds: u32,
) -> Result<Throughput> {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let addr = server_addr.to_string();
    let port = PORT.to_string();
    let mut listener = lab.spawn_in(
        server,
        &format!("iperf3-server-{n}"),
        "iperf3",
        ["-s", "-1", "-B", &addr, "-p", &port],
        &[],
    )?;
    wait::until(
        format!("iperf3 to listen on {addr}:{port}"),
        Duration::from_secs(5),
        || {
            listener.ensure_running()?;
            let listening = server.output("ss", ["-Hltn", "sport", "=", &format!(":{port}")])?;
            Ok(if listening.trim().is_empty() {
                Poll::Pending("not listening yet".to_owned())
            } else {
                Poll::Ready(())
            })
        },
    )?;
    let out = client.output(
        "iperf3",
        [
            "-c",
            &addr,
            "-p",
            &port,
            "-t",
            &seconds.to_string(),
            "-J",
            "--connect-timeout",
            "5000",
        ],
    )?;
    // The one-off server exits after its test; the guard reaps it.
    drop(listener);
    parse(&out)
}

fn parse(report: &str) -> Result<Throughput> {
    let bad = |detail: String| LabError::Output {
        what: "iperf3 -J".to_owned(),
        detail,
    };
    let json: Value = serde_json::from_str(report).map_err(|e| bad(format!("{e}: {report}")))?;
    if let Some(err) = json.get("error").and_then(Value::as_str) {
        return Err(bad(err.to_owned()));
    }
    let received_bps = json
        .pointer("/end/sum_received/bits_per_second")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad(format!("no end.sum_received in {json}")))?;
    let retransmits = json
        .pointer("/end/sum_sent/retransmits")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(Throughput {
        received_bps,
        retransmits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_receivers_rate() -> Result<()> {
        let t = parse(
            r#"{"end":{"sum_sent":{"bits_per_second":2e9,"retransmits":7},
                       "sum_received":{"bits_per_second":1.5e9}}}"#,
        )?;
        assert_eq!(t.mbit(), 1500.0);
        assert_eq!(t.retransmits, 7);
        assert!(parse(r#"{"error":"unable to connect"}"#).is_err());
        Ok(())
    }
}
