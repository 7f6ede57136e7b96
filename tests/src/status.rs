//! Reading `warren status --json`: typed accessors over the JSON that fail
//! with the whole document when a field is missing or of the wrong type.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use serde_json::Value;

use crate::error::{LabError, Result};

/// One snapshot of an agent's status.
#[derive(Debug, Clone)]
pub struct Status {
    pub json: Value,
}

fn bad(detail: String) -> LabError {
    LabError::Output {
        what: "warren status --json".to_owned(),
        detail,
    }
}

impl Status {
    pub fn parse(text: &str) -> Result<Status> {
        serde_json::from_str(text)
            .map(|json| Status { json })
            .map_err(|e| bad(format!("{e}: {text}")))
    }

    fn field(&self, pointer: &str) -> Result<&Value> {
        self.json
            .pointer(pointer)
            .ok_or_else(|| bad(format!("no {pointer} in {}", self.json)))
    }

    pub fn u64_at(&self, pointer: &str) -> Result<u64> {
        self.field(pointer)?.as_u64().ok_or_else(|| {
            bad(format!(
                "{pointer} is not an unsigned integer in {}",
                self.json
            ))
        })
    }

    pub fn str_at(&self, pointer: &str) -> Result<&str> {
        self.field(pointer)?
            .as_str()
            .ok_or_else(|| bad(format!("{pointer} is not a string in {}", self.json)))
    }

    /// A value of the `counters` object, e.g. "dropped_replay".
    pub fn counter(&self, name: &str) -> Result<u64> {
        self.u64_at(&format!("/counters/{name}"))
    }

    pub fn interface(&self) -> Result<&str> {
        self.str_at("/networks/0/interface")
    }

    pub fn listen_port(&self) -> Result<u64> {
        self.u64_at("/networks/0/listen_port")
    }

    pub fn public_key(&self) -> Result<&str> {
        self.str_at("/public_key")
    }

    /// The node ID the agent derives from its key (10 hex digits).
    pub fn node_id(&self) -> Result<&str> {
        self.str_at("/node_id")
    }

    /// Every entry of `networks`.
    pub fn networks(&self) -> Vec<NetworkStatus<'_>> {
        self.json
            .get("networks")
            .and_then(Value::as_array)
            .map(|nets| nets.iter().map(NetworkStatus).collect())
            .unwrap_or_default()
    }

    /// The entry of `networks` with this ID (a network ID or "static").
    pub fn network(&self, id: &str) -> Result<NetworkStatus<'_>> {
        self.find_network(id)
            .ok_or_else(|| bad(format!("no network {id} in {}", self.json)))
    }

    pub fn find_network(&self, id: &str) -> Option<NetworkStatus<'_>> {
        self.networks().into_iter().find(|n| n.id() == Some(id))
    }

    /// Every entry of `peers`.
    pub fn peers(&self) -> Vec<PeerStatus<'_>> {
        self.json
            .get("peers")
            .and_then(Value::as_array)
            .map(|peers| peers.iter().map(PeerStatus).collect())
            .unwrap_or_default()
    }

    /// The peers this agent has in `network`.
    pub fn peers_in(&self, network: &str) -> Vec<PeerStatus<'_>> {
        self.peers()
            .into_iter()
            .filter(|p| p.network() == Some(network))
            .collect()
    }

    /// The entry of `peers` with this public key.
    pub fn peer(&self, public_key: &str) -> Result<PeerStatus<'_>> {
        let peers = self
            .field("/peers")?
            .as_array()
            .ok_or_else(|| bad(format!("peers is not an array in {}", self.json)))?;
        peers
            .iter()
            .find(|p| p.get("public_key").and_then(Value::as_str) == Some(public_key))
            .map(PeerStatus)
            .ok_or_else(|| bad(format!("no peer {public_key} in {}", self.json)))
    }
}

/// One element of `networks`.
#[derive(Debug, Clone, Copy)]
pub struct NetworkStatus<'a>(pub &'a Value);

impl<'a> NetworkStatus<'a> {
    fn opt_str(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// The network ID, or "static".
    pub fn id(&self) -> Option<&'a str> {
        self.opt_str("id")
    }

    /// "static", "connecting", "pending", "authorized", "refused", "expired",
    /// "conflict", "stale" or "down".
    pub fn state(&self) -> Result<&'a str> {
        self.opt_str("state")
            .ok_or_else(|| bad(format!("network state missing in {}", self.0)))
    }

    /// Why the network is refused or in conflict, if the agent said.
    pub fn message(&self) -> Option<&'a str> {
        self.opt_str("message")
    }

    /// The version of the netmap the network runs on, if it has one.
    pub fn netmap_version(&self) -> Option<u64> {
        self.0.get("netmap_version").and_then(Value::as_u64)
    }

    /// The DNS zone the network's netmap names, if it has one.
    pub fn fqdn_zone(&self) -> Option<&'a str> {
        self.fqdn()
            .and_then(|f| f.split_once('.'))
            .map(|(_, zone)| zone)
    }

    pub fn controller_connected(&self) -> Result<bool> {
        self.0
            .get("controller_connected")
            .and_then(Value::as_bool)
            .ok_or_else(|| bad(format!("controller_connected missing in {}", self.0)))
    }

    /// The TUN interface, while the network's data plane runs.
    pub fn interface(&self) -> Option<&'a str> {
        self.opt_str("interface")
    }

    pub fn fqdn(&self) -> Option<&'a str> {
        self.opt_str("fqdn")
    }

    /// Overlay addresses with prefix length, e.g. "10.147.0.1/16".
    pub fn addresses(&self) -> Vec<&'a str> {
        self.0
            .get("addresses")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// The first overlay IPv4 address.
    pub fn ipv4(&self) -> Result<Ipv4Addr> {
        self.first_addr(|a| a.is_ipv4())
            .and_then(|a| match a {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| bad(format!("no IPv4 overlay address in {}", self.0)))
    }

    /// The first overlay IPv6 address.
    pub fn ipv6(&self) -> Result<Ipv6Addr> {
        self.first_addr(|a| a.is_ipv6())
            .and_then(|a| match a {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            })
            .ok_or_else(|| bad(format!("no IPv6 overlay address in {}", self.0)))
    }

    fn first_addr(&self, want: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
        self.addresses()
            .into_iter()
            .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
            .find(want)
    }
}

/// One element of `peers`.
#[derive(Debug, Clone, Copy)]
pub struct PeerStatus<'a>(pub &'a Value);

impl PeerStatus<'_> {
    /// The network the peer belongs to (a network ID or "static").
    pub fn network(&self) -> Option<&str> {
        self.0.get("network").and_then(Value::as_str)
    }

    pub fn public_key(&self) -> Option<&str> {
        self.0.get("public_key").and_then(Value::as_str)
    }

    /// The peer's name in the netmap, for joined networks.
    pub fn name(&self) -> Option<&str> {
        self.0.get("name").and_then(Value::as_str)
    }

    fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.0.get(key) {
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            other => Err(bad(format!(
                "peer field {key} should be a string or null, is {other:?} in {}",
                self.0
            ))),
        }
    }

    fn u64(&self, key: &str) -> Result<u64> {
        self.0.get(key).and_then(Value::as_u64).ok_or_else(|| {
            bad(format!(
                "peer field {key} missing or not a number in {}",
                self.0
            ))
        })
    }

    /// "ip:port" the agent currently sends to, if known.
    pub fn endpoint(&self) -> Result<Option<String>> {
        self.opt_str("endpoint")
    }

    /// RFC 3339 time of the last completed handshake.
    pub fn last_handshake(&self) -> Result<Option<String>> {
        self.opt_str("last_handshake")
    }

    /// `last_handshake` parsed; an unparsable time is an error.
    pub fn last_handshake_time(&self) -> Result<Option<SystemTime>> {
        self.last_handshake()?
            .map(|text| {
                humantime::parse_rfc3339(&text)
                    .map_err(|e| bad(format!("last_handshake {text:?} is not RFC 3339: {e}")))
            })
            .transpose()
    }

    pub fn rx_bytes(&self) -> Result<u64> {
        self.u64("rx_bytes")
    }

    pub fn tx_bytes(&self) -> Result<u64> {
        self.u64("tx_bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"public_key":"K","interface":"w0","listen_port":51820,
        "addresses":["10.99.0.1/24"],"mtu":1420,"offload":null,
        "peers":[{"public_key":"P","addresses":["10.99.0.2/32"],"endpoint":"192.0.2.2:51820",
                  "last_handshake":null,"rx_bytes":5,"tx_bytes":7,"persistent_keepalive":null}],
        "counters":{"tun_rx_packets":1,"dropped_replay":3}}"#;

    #[test]
    fn reads_peers_and_counters() -> Result<()> {
        let s = Status::parse(SAMPLE)?;
        assert_eq!(s.counter("dropped_replay")?, 3);
        assert!(s.counter("nope").is_err());
        let p = s.peer("P")?;
        assert_eq!(p.endpoint()?.as_deref(), Some("192.0.2.2:51820"));
        assert_eq!(p.last_handshake()?, None);
        assert_eq!((p.rx_bytes()?, p.tx_bytes()?), (5, 7));
        assert!(s.peer("Q").is_err());
        Ok(())
    }

    const JOINED: &str = r#"{"public_key":"K","node_id":"0a1b2c3d4e","version":"0.1.0",
        "networks":[{"id":"8f3a01c2d4e5f607","state":"authorized","controller_connected":true,
                     "interface":"warren0","message":null,
                     "addresses":["10.147.0.3/16","fd8f:3a01:c2d4:e5f6::a:1b2c:3d4e/64"]}],
        "peers":[{"network":"8f3a01c2d4e5f607","public_key":"P","name":"b"},
                 {"network":"static","public_key":"Q"}],
        "counters":{}}"#;

    #[test]
    fn reads_joined_networks() -> Result<()> {
        let s = Status::parse(JOINED)?;
        assert_eq!(s.node_id()?, "0a1b2c3d4e");
        let n = s.network("8f3a01c2d4e5f607")?;
        assert_eq!(n.state()?, "authorized");
        assert!(n.controller_connected()?);
        assert_eq!(n.interface(), Some("warren0"));
        assert_eq!(n.message(), None);
        assert_eq!(n.ipv4()?, Ipv4Addr::new(10, 147, 0, 3));
        assert_eq!(n.ipv6()?.segments()[0], 0xfd8f);
        assert!(s.network("static").is_err());
        let peers = s.peers_in("8f3a01c2d4e5f607");
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].name(), Some("b"));
        Ok(())
    }
}
