//! An emulated Kubernetes cluster behind a master, for the sites suites:
//! kube-proxy-style nftables DNAT on the master from service ClusterIPs to
//! a "pod" namespace, and a cluster DNS server (dnsmasq from Debian's
//! packages) behind its own ClusterIP answering `svc.cluster.local` A and
//! SRV records, as CoreDNS would.
//!
//! ```text
//! [master]  agent; nft: CLUSTER-IP:port -> POD:pod-port, DNS-IP:53 -> POD:53
//!    |  172.16.(i+1).1/24
//! [pods]    172.16.(i+1).2: one HTTP server per service, dnsmasq on :53
//! ```
//! The pod namespace's address and link are made by the routes lab; this
//! module adds the services on top.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;
use crate::routes_lab::HttpServer;
use crate::wait::{self, Poll};

/// The cluster domain every emulated cluster uses, as kubeadm's default.
pub const DOMAIN: &str = "cluster.local";
/// The ClusterIP of the cluster DNS service (kubeadm's default).
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// One Service: `name.namespace.svc.cluster.local` at `cluster_ip:port`,
/// with the named port `port_name` (so SRV `_port_name._tcp.name...`).
#[derive(Debug, Clone)]
pub struct KubeService {
    pub name: String,
    pub namespace: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub port_name: String,
}

impl KubeService {
    /// A service in namespace `default` with the named port `http`.
    pub fn http(name: &str, cluster_ip: Ipv4Addr, port: u16) -> KubeService {
        KubeService {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            cluster_ip,
            port,
            port_name: "http".to_owned(),
        }
    }

    /// `name.namespace.svc` without the cluster domain.
    pub fn short(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }

    /// The body its pods answer HTTP with: which service of which cluster.
    pub fn body(&self, cluster: &str) -> String {
        format!("{}@{cluster}", self.name)
    }
}

/// The services of one emulated cluster.
#[derive(Debug, Clone, Default)]
pub struct KubeSpec {
    pub services: Vec<KubeService>,
}

/// What runs for one cluster: the pods' servers and the DNS server.
#[derive(Debug)]
pub struct KubeCluster {
    _servers: Vec<HttpServer>,
    dns: Process,
    servers_file: PathBuf,
}

impl KubeCluster {
    /// Has the cluster DNS forward names under `zone` to `server`, as a
    /// CoreDNS stub domain for the mesh's zone would (dnsmasq re-reads its
    /// servers file on SIGHUP).
    pub fn forward(&mut self, zone: &str, server: IpAddr) -> Result<()> {
        let line = format!("server=/{zone}/{server}\n");
        std::fs::write(&self.servers_file, line)
            .map_err(|e| LabError::io(format!("writing {}", self.servers_file.display()), e))?;
        self.dns.signal("HUP")
    }
}

/// Starts `spec`'s pods in `pods` (address `pod`), the cluster DNS server
/// next to them, and the master's service DNAT in `master`.
pub fn start(
    lab: &Lab,
    master: &Netns,
    pods: &Netns,
    pod: Ipv4Addr,
    cluster: &str,
    spec: &KubeSpec,
) -> Result<KubeCluster> {
    let mut servers = Vec::new();
    let mut dnat = Vec::new();
    for (i, service) in spec.services.iter().enumerate() {
        let offset = u16::try_from(i).map_err(|_| LabError::Invalid("too many services".into()))?;
        let pod_port = 8000 + offset;
        servers.push(HttpServer::start(
            pods,
            SocketAddr::new(pod.into(), pod_port),
            &service.body(cluster),
        )?);
        dnat.push(format!(
            "ip daddr {} tcp dport {} dnat to {pod}:{pod_port}",
            service.cluster_ip, service.port
        ));
    }
    for proto in ["udp", "tcp"] {
        dnat.push(format!(
            "ip daddr {DNS_IP} {proto} dport 53 dnat to {pod}:53"
        ));
    }
    let rules = dnat.join("\n    ");
    // Forwarded packets (from the overlay) and the master's own.
    let ruleset = format!(
        "table ip lab_kube_proxy {{\n  chain forwarded {{\n    type nat hook prerouting priority dstnat; policy accept;\n    {rules}\n  }}\n  chain local {{\n    type nat hook output priority -100; policy accept;\n    {rules}\n  }}\n}}\n"
    );
    let path = lab
        .subdir("nft")?
        .join(format!("{}-kube.nft", master.name()));
    std::fs::write(&path, ruleset)
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    master.exec("nft", [std::ffi::OsStr::new("-f"), path.as_os_str()])?;
    let servers_file = lab.subdir("dnsmasq")?.join(format!("{cluster}.servers"));
    std::fs::write(&servers_file, "")
        .map_err(|e| LabError::io(format!("writing {}", servers_file.display()), e))?;
    let dns = start_dns(lab, pods, pod, cluster, spec, &servers_file)?;
    Ok(KubeCluster {
        _servers: servers,
        dns,
        servers_file,
    })
}

/// dnsmasq on `pod`:53 answering the services' A and SRV records, and
/// NXDOMAIN for any other name in the cluster domain.
fn start_dns(
    lab: &Lab,
    pods: &Netns,
    pod: Ipv4Addr,
    cluster: &str,
    spec: &KubeSpec,
    servers_file: &std::path::Path,
) -> Result<Process> {
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        format!("--listen-address={pod}"),
        "--bind-interfaces".to_owned(),
        "--port=53".to_owned(),
        "--user=root".to_owned(),
        "--group=root".to_owned(),
        "--pid-file=".to_owned(),
        "--log-queries".to_owned(),
        "--log-facility=-".to_owned(),
        format!("--local=/{DOMAIN}/"),
        format!("--servers-file={}", servers_file.display()),
    ];
    for s in &spec.services {
        let fqdn = format!("{}.{DOMAIN}", s.short());
        args.push(format!("--host-record={fqdn},{}", s.cluster_ip));
        args.push(format!(
            "--srv-host=_{}._tcp.{fqdn},{fqdn},{}",
            s.port_name, s.port
        ));
    }
    let mut process = lab.spawn_in(pods, &format!("dnsmasq-{cluster}"), "dnsmasq", &args, &[])?;
    // Ready once it answers on its address.
    let probe = spec.services.first().map_or_else(
        || format!("kube-dns.kube-system.svc.{DOMAIN}"),
        |s| format!("{}.{DOMAIN}", s.short()),
    );
    wait::until(
        format!("dnsmasq of cluster {cluster} to answer"),
        std::time::Duration::from_secs(10),
        || {
            process.ensure_running()?;
            let dig = crate::dns::dig(pods, pod.into(), &probe, "A")?;
            Ok(if dig.status == "NOERROR" || dig.status == "NXDOMAIN" {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("status {}", dig.status))
            })
        },
    )?;
    Ok(process)
}
