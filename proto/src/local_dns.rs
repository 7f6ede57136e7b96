//! The local API's DNS and service directory: what `warren dns status` and
//! `warren service ...` send and print.

use serde::{Deserialize, Serialize};

use crate::service::{ServiceProto, ServiceSpec};
use crate::NetworkId;

/// How the agent routes the system's queries for its zones to its stubs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SplitDnsMode {
    /// Per-link DNS servers and `~zone` routing domains in systemd-resolved.
    Resolved,
    /// A reversible edit of resolv.conf: the stub first, the old servers after it.
    ResolvConf,
    /// The system's resolver configuration is left alone.
    Off,
}

/// `GET /v1/dns`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DnsStatus {
    /// What the configuration asked for: `auto`, `resolved`, `resolv-conf` or `off`.
    pub manage: String,
    /// What is in force now (`off` also while no stub serves).
    pub mode: SplitDnsMode,
    /// The resolv.conf the agent reads (and, in `resolv-conf` mode, edits).
    pub resolv_conf: String,
    /// True while a backup of the original resolv.conf exists, i.e. the file is ours.
    pub backup: bool,
    /// Where the stubs forward names outside the zones (local clients only).
    pub upstreams: Vec<String>,
    pub stubs: Vec<StubStatus>,
    /// The last failure to configure the system, if any.
    pub error: Option<String>,
}

/// One network's stub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StubStatus {
    pub network: NetworkId,
    pub zone: String,
    /// `IP:PORT` it listens on (UDP and TCP).
    pub listen: String,
    /// Whether its sockets are bound.
    pub serving: bool,
    /// Records in its zone.
    pub records: usize,
    /// Why it is not serving.
    pub error: Option<String>,
}

/// `POST /v1/services` and `DELETE /v1/services`: one service of one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Required when more than one network is joined.
    pub network: Option<NetworkId>,
    #[serde(flatten)]
    pub service: ServiceSpec,
}

/// `DELETE /v1/services`: the service to withdraw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceRemove {
    pub network: Option<NetworkId>,
    pub name: String,
    pub proto: ServiceProto,
}

/// A service this node publishes, as `warren service list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedService {
    pub network: NetworkId,
    /// `_name._proto.zone`, once the network's zone is known.
    pub fqdn: Option<String>,
    #[serde(flatten)]
    pub service: ServiceSpec,
}

/// `GET /v1/services`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceList {
    pub services: Vec<PublishedService>,
}
