//! The agent's config file, read as `Config::load` reads it: TOML into
//! the typed struct (unknown keys refused), then `validate`.
//!
//! The input is the file's text. A file that parses prints (as
//! `check-config` does) to TOML that parses to the same configuration, and
//! a file that passes `validate` keeps its promises: an MTU in range, an
//! interface name the kernel takes, peers with distinct keys, a metrics
//! endpoint on loopback unless `allow-remote` says otherwise.

use std::collections::BTreeSet;

use crate::config::Config;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    let printed = toml::to_string(&config).expect("a parsed config prints");
    let again: Config = toml::from_str(&printed).expect("a printed config parses");
    assert_eq!(
        toml::to_string(&again).expect("prints"),
        printed,
        "printing is stable"
    );
    if config.validate().is_ok() {
        let node = &config.node;
        assert!((1280..=9000).contains(&node.mtu));
        assert!((1..=15).contains(&node.interface_name.len()));
        let keys: BTreeSet<_> = config.peers.iter().map(|p| p.public_key).collect();
        assert_eq!(keys.len(), config.peers.len());
        if let Some(m) = &config.metrics {
            assert!(m.listen.port() != 0);
            assert!(m.listen.ip().is_loopback() || m.allow_remote);
        }
        assert!(again.validate().is_ok(), "the printed config is valid too");
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("config", 64);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let packaged = include_str!("../../packaging/etc/warren.toml");
    let key = |seed: u8| {
        warren_proto::NodePrivateKey::from_bytes([seed; 32])
            .public_key()
            .to_string()
    };
    let static_network = r#"
[node]
private-key-file = "node.key"
state-dir = "/var/lib/warren"
listen-port = 51821
addresses = ["10.99.0.1/24", "fd99::1/64"]
interface-name = "wg-static"
mtu = 1380
socket = "/run/warren/warren.sock"
offload = false
netmap-max-age = "3days 4h"
admin-group = "wheel"

[[peer]]
public-key = "KEY2"
endpoint = "192.0.2.7:51820"
allowed-ips = ["10.99.0.2/32", "192.168.50.0/24"]
persistent-keepalive = "25s"

[[peer]]
public-key = "KEY3"
allowed-ips = ["10.99.0.3/32"]

[dns]
manage = "resolv-conf"
stub = true
stub-port = 5353
upstream = ["192.0.2.53:53", "[2001:db8::53]:53"]
resolv-conf = "/etc/resolv.conf"

[metrics]
listen = "[::1]:9101"
allow-remote = false
"#
    .replace("KEY2", &key(2))
    .replace("KEY3", &key(3));
    let static_network = static_network.as_str();
    let config: Config = toml::from_str(static_network).expect("the seed parses");
    let printed = toml::to_string(&config).expect("prints");
    vec![
        ("packaged", packaged.as_bytes().to_vec()),
        ("static-network", static_network.as_bytes().to_vec()),
        ("printed", printed.into_bytes()),
        ("empty-node", b"[node]\n".to_vec()),
        ("unknown-key", b"[node]\nlisten-prot = 1\n".to_vec()),
        ("bad-mtu", b"[node]\nmtu = 70000\n".to_vec()),
        (
            "remote-metrics",
            b"[node]\n[metrics]\nlisten = \"0.0.0.0:9101\"\n".to_vec(),
        ),
    ]
}
