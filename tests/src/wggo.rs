//! wireguard-go as a lab node: the reference implementation that Warren must
//! interoperate with, and the lab's own self-test before Warren exists.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::link;
use crate::netns::Netns;
use crate::node_spec::NodeSpec;
use crate::process::Process;

/// Where wireguard-go puts its control socket (one per interface name).
const UAPI_DIR: &str = "/var/run/wireguard";

/// How long wireguard-go gets to create its interface.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `wireguard-go` with its interface configured and up.
#[derive(Debug)]
pub struct WgGo {
    ns: String,
    ifname: String,
    uapi: PathBuf,
    process: Process,
}

impl WgGo {
    /// Starts wireguard-go in `ns` on interface `<prefix>g<name>` and
    /// configures it with `wg set`, addresses and link up.
    pub fn start(lab: &Lab, ns: &Netns, spec: &NodeSpec) -> Result<WgGo> {
        let ifname = lab.ifname(&format!("g{}", spec.name))?;
        let uapi = PathBuf::from(UAPI_DIR).join(format!("{ifname}.sock"));
        let process = lab.spawn_in(
            ns,
            &format!("wireguard-go-{}", spec.name),
            "wireguard-go",
            ["-f", &ifname],
            &[("WG_PROCESS_FOREGROUND", "1"), ("LOG_LEVEL", "debug")],
        )?;
        let mut node = WgGo {
            ns: ns.name().to_owned(),
            ifname,
            uapi,
            process,
        };
        node.wait_ready()?;
        node.configure(ns, spec)?;
        Ok(node)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.uapi.exists() {
            self.process.ensure_running()?;
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("wireguard-go to create {}", self.uapi.display()),
                    after: START_TIMEOUT,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn configure(&self, ns: &Netns, spec: &NodeSpec) -> Result<()> {
        let mut args: Vec<String> = vec![
            "set".into(),
            self.ifname.clone(),
            "private-key".into(),
            spec.key.private_key_file.display().to_string(),
            "listen-port".into(),
            spec.listen_port.to_string(),
        ];
        for peer in &spec.peers {
            args.extend(["peer".into(), peer.public_key.clone()]);
            args.extend(["allowed-ips".into(), peer.allowed_ips.join(",")]);
            if let Some(endpoint) = peer.endpoint {
                args.extend(["endpoint".into(), endpoint.to_string()]);
            }
            if let Some(secs) = peer.persistent_keepalive {
                args.extend(["persistent-keepalive".into(), secs.to_string()]);
            }
        }
        ns.exec("wg", &args)?;
        for addr in &spec.addresses {
            link::add_addr(ns, &self.ifname, addr)?;
        }
        link::set_up(ns, &self.ifname)
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// `wg show IF dump`: one line for the interface, one per peer.
    pub fn dump(&self, ns: &Netns) -> Result<String> {
        debug_assert_eq!(ns.name(), self.ns);
        ns.output("wg", ["show", &self.ifname, "dump"])
    }

    /// Unix time of the latest handshake with `peer`, if there was one.
    pub fn latest_handshake(&self, ns: &Netns, peer: &str) -> Result<Option<u64>> {
        let dump = self.dump(ns)?;
        let line = dump
            .lines()
            .skip(1)
            .find(|l| l.split('\t').next() == Some(peer))
            .ok_or_else(|| LabError::Output {
                what: "wg show dump".to_owned(),
                detail: format!("no peer {peer} in:\n{dump}"),
            })?;
        let secs: u64 = line
            .split('\t')
            .nth(4)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LabError::Output {
                what: "wg show dump".to_owned(),
                detail: format!("no handshake time in {line:?}"),
            })?;
        Ok((secs != 0).then_some(secs))
    }
}

impl Drop for WgGo {
    fn drop(&mut self) {
        if let Err(e) = self.process.stop() {
            eprintln!("warren-lab: stopping wireguard-go {}: {e}", self.ifname);
        }
        // A killed wireguard-go leaves its socket behind; the name carries
        // this lab's prefix, so the file is ours.
        if self.uapi.exists() {
            let _ = fs::remove_file(&self.uapi);
        }
    }
}
