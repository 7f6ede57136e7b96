//! An HTTP proxy that tunnels with `CONNECT`, as a corporate network's
//! only way out: tinyproxy (Debian's `tinyproxy`) in a namespace, with
//! its own config in the lab, Basic authentication, `CONNECT` allowed to
//! one port only, started and stopped by PID.

use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;

/// The port tinyproxy listens on.
pub const PORT: u16 = 3128;

/// The user name and password it asks for.
pub const USER: &str = "warren";
pub const PASSWORD: &str = "proxy-secret";

/// A running tinyproxy. Dropping it stops it by its PID.
#[derive(Debug)]
pub struct HttpProxy {
    process: Process,
    listen: Ipv4Addr,
}

impl HttpProxy {
    /// Starts tinyproxy in `ns` on `listen`:[`PORT`], taking clients from
    /// `listen`'s /24 and tunnelling `CONNECT` to `connect_port` alone.
    pub fn start(lab: &Lab, ns: &Netns, listen: Ipv4Addr, connect_port: u16) -> Result<HttpProxy> {
        let dir = lab.subdir(&format!("tinyproxy-{}", ns.name()))?;
        let conf = dir.join("tinyproxy.conf");
        let [a, b, c, _] = listen.octets();
        let text = format!(
            "Port {PORT}\nListen {listen}\nTimeout 600\nMaxClients 20\n\
             Allow {a}.{b}.{c}.0/24\nConnectPort {connect_port}\n\
             BasicAuth {USER} {PASSWORD}\nLogLevel Info\n"
        );
        fs::write(&conf, text)
            .map_err(|e| LabError::io(format!("writing {}", conf.display()), e))?;
        let label = format!("tinyproxy-{}", ns.name());
        let args = ["-d".as_ref(), "-c".as_ref(), conf.as_os_str()];
        let mut process = lab.spawn_in(ns, &label, "/usr/bin/tinyproxy", args, &[])?;
        process.wait_for_output("Accepting connections", Duration::from_secs(10))?;
        Ok(HttpProxy { process, listen })
    }

    /// `http://USER:PASSWORD@LISTEN:PORT`, or without the credentials.
    pub fn url(&self, with_credentials: bool) -> String {
        match with_credentials {
            true => format!("http://{USER}:{PASSWORD}@{}:{PORT}", self.listen),
            false => format!("http://{}:{PORT}", self.listen),
        }
    }

    /// The `CONNECT` requests it has logged, as `HOST:PORT`.
    pub fn connects(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split("): CONNECT ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// Errors if tinyproxy has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }

    /// Its log, for failure reports.
    pub fn log(&self) -> String {
        self.process.stderr() + &self.process.stdout()
    }
}
