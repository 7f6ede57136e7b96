//! Reading `warren status --json`: typed accessors over the JSON that fail
//! with the whole document when a field is missing or of the wrong type.

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

/// One element of `peers`.
#[derive(Debug, Clone, Copy)]
pub struct PeerStatus<'a>(pub &'a Value);

impl PeerStatus<'_> {
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
}
