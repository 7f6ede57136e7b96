//! DNS in the lab: a namespace's own resolv.conf (`/etc/netns/NAME/`, which
//! `ip netns exec` mounts over `/etc/resolv.conf`), a tiny upstream
//! resolver in a namespace, `dig` as a user runs it, and a bounded UDP load
//! generator for the benchmark.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::command;
use crate::error::{LabError, Result};
use crate::in_netns::NetnsThread;
use crate::netns::Netns;

const ETC_NETNS: &str = "/etc/netns";

/// `/etc/netns/NAME/resolv.conf` for one lab namespace, removed on drop.
/// Make it before starting anything in the namespace: the mount happens
/// when `ip netns exec` starts a process.
#[derive(Debug)]
pub struct NetnsResolvConf {
    dir: PathBuf,
    /// Whether `/etc/netns` itself was made here (then removed when empty).
    made_parent: bool,
}

impl NetnsResolvConf {
    pub fn create(ns: &Netns, contents: &[u8]) -> Result<NetnsResolvConf> {
        let dir = PathBuf::from(ETC_NETNS).join(ns.name());
        let made_parent = !std::path::Path::new(ETC_NETNS).exists();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let guard = NetnsResolvConf { dir, made_parent };
        std::fs::write(guard.path(), contents)
            .map_err(|e| LabError::io(format!("writing {}", guard.path().display()), e))?;
        Ok(guard)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    pub fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(self.path())
            .map_err(|e| LabError::io(format!("reading {}", self.path().display()), e))
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        // Only the lab namespace's own folder (its name carries the run's prefix).
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warren-lab: removing {}: {e}", self.dir.display());
        }
        if self.made_parent {
            // Fails, as it should, while another lab's folder is inside.
            let _ = std::fs::remove_dir(ETC_NETNS);
        }
    }
}

/// A resolver in a lab namespace that answers A questions for names under
/// `zone` with `answer`, and REFUSED for anything else. Stops on drop.
pub struct TestResolver {
    stop: Arc<AtomicBool>,
    thread: Option<NetnsThread<()>>,
    pub addr: SocketAddr,
}

impl TestResolver {
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        zone: &str,
        answer: std::net::Ipv4Addr,
    ) -> Result<TestResolver> {
        let zone =
            Name::from_ascii(zone).map_err(|e| LabError::Invalid(format!("zone {zone}: {e}")))?;
        let socket = ns
            .run(move || UdpSocket::bind(addr))?
            .map_err(|e| LabError::io(format!("binding {addr}"), e))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| LabError::io("socket timeout", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = ns.spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = Self::answer(&buf[..n], &zone, answer) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        })?;
        Ok(TestResolver {
            stop,
            thread: Some(thread),
            addr,
        })
    }

    fn answer(query: &[u8], zone: &Name, answer: std::net::Ipv4Addr) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        let mut reply = Message::response(q.metadata.id, q.metadata.op_code);
        reply.metadata.recursion_desired = q.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        for query in &q.queries {
            reply.add_query(query.clone());
            if !zone.zone_of(query.name()) {
                reply.metadata.response_code = ResponseCode::Refused;
            } else if query.query_type() == RecordType::A {
                reply.add_answer(Record::from_rdata(
                    query.name().clone(),
                    30,
                    RData::A(answer.into()),
                ));
            }
        }
        reply.to_vec().ok()
    }
}

impl Drop for TestResolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What `dig` printed: the status and the answer records' data.
#[derive(Debug, Clone)]
pub struct Dig {
    pub status: String,
    /// `(type, data)` of each answer record, e.g. `("A", "10.147.0.1")`.
    pub answers: Vec<(String, String)>,
    pub flags: String,
    pub raw: String,
}

impl Dig {
    pub fn data(&self, rtype: &str) -> Vec<&str> {
        self.answers
            .iter()
            .filter(|(t, _)| t == rtype)
            .map(|(_, d)| d.as_str())
            .collect()
    }

    fn parse(raw: &str) -> Dig {
        let status = raw
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("NO ANSWER")
            .to_owned();
        let flags = raw
            .split(";; flags: ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or("")
            .to_owned();
        let answers = raw
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .filter_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                (words.len() >= 5).then(|| (words[3].to_owned(), words[4..].join(" ")))
            })
            .collect();
        Dig {
            status,
            answers,
            flags,
            raw: raw.to_owned(),
        }
    }
}

/// `dig @server name type` inside `ns`, one try, two seconds.
pub fn dig(ns: &Netns, server: IpAddr, name: &str, rtype: &str) -> Result<Dig> {
    dig_waiting(ns, server, name, rtype, 2)
}

/// `dig @server name type` inside `ns`, one try, waiting `seconds` for
/// the answer (longer than a server's own time-out, to see its SERVFAIL).
pub fn dig_waiting(
    ns: &Netns,
    server: IpAddr,
    name: &str,
    rtype: &str,
    seconds: u32,
) -> Result<Dig> {
    let mut cmd = ns.command("dig");
    cmd.args([
        format!("@{server}"),
        name.to_owned(),
        rtype.to_owned(),
        "+noall".into(),
        "+comments".into(),
        "+answer".into(),
        "+tries=1".into(),
        format!("+time={seconds}"),
    ]);
    let out = command::output(&mut cmd)?;
    Ok(Dig::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// `getent hosts name` inside `ns`: what the system resolver says.
pub fn getent_hosts(ns: &Netns, name: &str) -> Result<Option<String>> {
    let mut cmd = ns.command("getent");
    cmd.args(["hosts", name]);
    let out = command::output(&mut cmd)?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub sent: u64,
    pub answered: u64,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn qps(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Queries `server` for `name`/`rtype` from inside `ns` for `duration`,
/// `window` queries in flight: a bounded load generator (stops by itself).
pub fn load(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    duration: Duration,
    window: u16,
) -> Result<LoadReport> {
    let name = Name::from_ascii(name).map_err(|e| LabError::Invalid(format!("{name}: {e}")))?;
    ns.run(move || -> std::io::Result<LoadReport> {
        let socket = UdpSocket::bind(if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut queries: Vec<Vec<u8>> = Vec::with_capacity(usize::from(window));
        for id in 0..window {
            let mut q = Message::query();
            q.metadata.id = id;
            q.metadata.recursion_desired = true;
            q.add_query(Query::query(name.clone(), rtype));
            queries.push(q.to_vec().map_err(std::io::Error::other)?);
        }
        let (mut sent, mut answered) = (0u64, 0u64);
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < duration {
            for q in &queries {
                socket.send(q)?;
                sent += 1;
            }
            let mut got = 0;
            while got < window {
                match crate::eintr::restart(|| socket.recv(&mut buf)) {
                    Ok(n) if n >= 12 => {
                        answered += 1;
                        got += 1;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        Ok(LoadReport {
            sent,
            answered,
            elapsed: start.elapsed(),
        })
    })?
    .map_err(|e| LabError::io("DNS load", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dig_output_is_read() {
        let raw = ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr aa rd; QUERY: 1, ANSWER: 1\n\nweb.prod.warren.internal. 10 IN A 10.147.0.1\n_http._tcp.prod.warren.internal. 10 IN SRV 0 0 8080 web.prod.warren.internal.\n";
        let d = Dig::parse(raw);
        assert_eq!(d.status, "NOERROR");
        assert!(d.flags.contains("aa"));
        assert_eq!(d.data("A"), ["10.147.0.1"]);
        assert_eq!(d.data("SRV"), ["0 0 8080 web.prod.warren.internal."]);
        assert_eq!(
            Dig::parse(";; ->>HEADER<<- opcode: QUERY, status: REFUSED, id: 2\n").status,
            "REFUSED"
        );
    }
}
