//! Split DNS through systemd-resolved: each network's interface gets its
//! stub as DNS server and `~zone` as routing-only domain, so only the zone
//! goes to the stub. `resolvectl` runs with argument vectors (never a
//! shell). The link settings vanish with the interface, so a crash leaves
//! nothing behind.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

/// resolved's own stub listeners: a resolv.conf pointing at one of them
/// means the system resolves through resolved.
const RESOLVED_STUBS: [&str; 2] = ["127.0.0.53", "127.0.0.54"];
const RESOLVECTL_TIMEOUT: Duration = Duration::from_secs(5);

/// True if resolved answers the system's queries (resolv.conf points at its
/// stub) and `resolvectl` is there to configure it.
pub fn in_charge(resolv_conf_text: &str, resolvectl_installed: bool) -> bool {
    let via_resolved = super::resolv_conf::nameservers(resolv_conf_text)
        .iter()
        .any(|ns| RESOLVED_STUBS.contains(&ns.to_string().as_str()));
    via_resolved && resolvectl_installed
}

/// Whether `resolvectl` is installed.
pub fn installed() -> bool {
    resolvectl().is_some()
}

fn resolvectl() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/resolvectl",
        "/bin/resolvectl",
        "/usr/local/bin/resolvectl",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.is_file())
    .map(Path::to_path_buf)
}

async fn run(args: &[&str]) -> anyhow::Result<()> {
    let program = resolvectl().context("resolvectl not found")?;
    let output = tokio::time::timeout(
        RESOLVECTL_TIMEOUT,
        tokio::process::Command::new(&program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("resolvectl {} timed out", args.join(" ")))?
    .with_context(|| format!("running resolvectl {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "resolvectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// What `resolvectl dns` takes: `IP` for port 53, `IP:PORT` otherwise.
pub fn server_arg(stub: SocketAddr) -> String {
    if stub.port() == 53 {
        stub.ip().to_string()
    } else {
        stub.to_string()
    }
}

/// Points `interface` at `stub` for `zone` only.
pub async fn configure(interface: &str, stub: SocketAddr, zone: &str) -> anyhow::Result<()> {
    let routing_domain = format!("~{zone}");
    run(&["dns", interface, &server_arg(stub)]).await?;
    run(&["domain", interface, &routing_domain]).await?;
    // Never the default route for other names (older resolved lacks the verb).
    if let Err(e) = run(&["default-route", interface, "false"]).await {
        tracing::debug!(error = %format!("{e:#}"), "resolvectl default-route");
    }
    Ok(())
}

/// Drops what [`configure`] set on `interface`.
pub async fn revert(interface: &str) -> anyhow::Result<()> {
    run(&["revert", interface]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_is_in_charge_only_through_its_stub() {
        assert!(!in_charge("nameserver 192.0.2.53\n", true));
        // With its stub listed it depends on resolvectl being installed.
        assert!(in_charge("nameserver 127.0.0.53\n", true));
        assert!(!in_charge("nameserver 127.0.0.53\n", false));
        assert_eq!(server_arg("10.1.0.1:53".parse().unwrap()), "10.1.0.1");
        assert_eq!(
            server_arg("10.1.0.1:5353".parse().unwrap()),
            "10.1.0.1:5353"
        );
    }
}
