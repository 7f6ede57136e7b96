//! Services that members publish into their network's DNS zone: the
//! node says `_NAME._PROTO` and a port, the zone gets an SRV record (and TXT
//! strings) pointing at the member's own name.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The most services one member may publish in one network.
pub const MAX_SERVICES_PER_MEMBER: usize = 32;
/// The most TXT strings one service may carry, and their longest length.
pub const MAX_TXT_STRINGS: usize = 8;
pub const MAX_TXT_LEN: usize = 255;

/// The transport label of a service: `_tcp` or `_udp`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProto {
    Tcp,
    Udp,
}

impl ServiceProto {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceProto::Tcp => "tcp",
            ServiceProto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for ServiceProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceProto {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(ServiceProto::Tcp),
            "udp" => Ok(ServiceProto::Udp),
            _ => Err(ServiceError::Proto(s.to_owned())),
        }
    }
}

/// One service as its member publishes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceSpec {
    /// The service label without its underscore: `http`, `postgres`.
    pub name: String,
    pub proto: ServiceProto,
    pub port: u16,
    /// Strings for the TXT record at the service name (`key=value` by convention).
    #[serde(default)]
    pub txt: Vec<String>,
}

/// Why a service cannot be published.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    #[error("service name {0:?} must be 1-62 lowercase letters, digits or '-', not starting or ending with '-'")]
    Name(String),
    #[error("protocol {0:?} must be tcp or udp")]
    Proto(String),
    #[error("port must be between 1 and 65535")]
    Port,
    #[error("at most {MAX_TXT_STRINGS} TXT strings of at most {MAX_TXT_LEN} bytes each")]
    Txt,
    #[error("at most {MAX_SERVICES_PER_MEMBER} services per member and network")]
    TooMany,
    #[error("service _{0}._{1} is listed twice")]
    Duplicate(String, ServiceProto),
}

impl ServiceSpec {
    /// The owner name inside a zone: `_http._tcp`.
    pub fn label(&self) -> String {
        format!("_{}._{}", self.name, self.proto)
    }

    /// Checks that the name makes a DNS label (with its underscore, at most
    /// 63 bytes), the port is not 0 and the TXT strings fit their record.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let name = &self.name;
        let ldh = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if name.is_empty()
            || name.len() > 62
            || !ldh
            || name.starts_with('-')
            || name.ends_with('-')
        {
            return Err(ServiceError::Name(name.clone()));
        }
        if self.port == 0 {
            return Err(ServiceError::Port);
        }
        if self.txt.len() > MAX_TXT_STRINGS || self.txt.iter().any(|t| t.len() > MAX_TXT_LEN) {
            return Err(ServiceError::Txt);
        }
        Ok(())
    }
}

/// Checks a member's whole list: each entry, the count, no name twice.
pub fn validate_list(services: &[ServiceSpec]) -> Result<(), ServiceError> {
    if services.len() > MAX_SERVICES_PER_MEMBER {
        return Err(ServiceError::TooMany);
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in services {
        s.validate()?;
        if !seen.insert((s.name.as_str(), s.proto)) {
            return Err(ServiceError::Duplicate(s.name.clone(), s.proto));
        }
    }
    Ok(())
}

/// A published service as the netmap carries it: the spec and who serves it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceRecord {
    /// The member's name, its label in the zone: the SRV target is `member.zone`.
    pub member: String,
    pub node_id: NodeId,
    #[serde(flatten)]
    pub service: ServiceSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, port: u16) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            proto: ServiceProto::Tcp,
            port,
            txt: vec![],
        }
    }

    #[test]
    fn names_must_be_labels_and_ports_nonzero() {
        assert!(spec("http", 80).validate().is_ok());
        assert_eq!(spec("http", 80).label(), "_http._tcp");
        assert!(spec("grafana-1", 3000).validate().is_ok());
        for bad in ["", "-x", "x-", "Http", "a.b", "a_b", &"a".repeat(63)] {
            assert_eq!(
                spec(bad, 1).validate(),
                Err(ServiceError::Name(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(spec("http", 0).validate(), Err(ServiceError::Port));
        let mut txt = spec("http", 80);
        txt.txt = vec!["x".repeat(256)];
        assert_eq!(txt.validate(), Err(ServiceError::Txt));
        assert_eq!("UDP".parse::<ServiceProto>(), Ok(ServiceProto::Udp));
        assert!("sctp".parse::<ServiceProto>().is_err());
    }

    #[test]
    fn lists_refuse_duplicates_and_excess() {
        assert!(validate_list(&[spec("a", 1), spec("b", 1)]).is_ok());
        let mut udp = spec("a", 1);
        udp.proto = ServiceProto::Udp;
        assert!(validate_list(&[spec("a", 1), udp]).is_ok());
        assert_eq!(
            validate_list(&[spec("a", 1), spec("a", 2)]),
            Err(ServiceError::Duplicate("a".into(), ServiceProto::Tcp))
        );
        let many: Vec<_> = (0..=MAX_SERVICES_PER_MEMBER)
            .map(|i| spec(&format!("s{i}"), 1))
            .collect();
        assert_eq!(validate_list(&many), Err(ServiceError::TooMany));
    }

    #[test]
    fn records_serialise_flat() {
        let record = ServiceRecord {
            member: "web".into(),
            node_id: "0123456789".parse().unwrap(),
            service: spec("http", 80),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["name"], "http");
        assert_eq!(json["proto"], "tcp");
        assert_eq!(json["member"], "web");
        let back: ServiceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
