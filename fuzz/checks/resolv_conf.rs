//! resolv.conf as the agent reads and rewrites it: the nameservers it
//! lists (the stub's upstreams), the file the agent writes in its place,
//! and the backup it keeps of the original (JSON, read back after a crash).
//!
//! The first byte picks the stub's address (IPv4 or IPv6), the rest is the
//! original file. The file written names the stub first and at most three
//! nameservers, carries the agent's marker, and is what the agent would
//! write again from it (so a restart over its own edit changes nothing).

use std::net::IpAddr;

use crate::dns::resolv_conf::{nameservers, render, Original, MARKER};

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(original) = std::str::from_utf8(rest) else {
        backup(rest);
        return;
    };
    let _ = nameservers(original);
    let stub: IpAddr = if mode & 1 == 0 {
        "10.147.0.1".parse().expect("v4")
    } else {
        "fd00::1".parse().expect("v6")
    };
    let zones = ["prod.warren.internal".to_string()];
    let written = render(original, stub, &zones);
    assert!(written.starts_with(MARKER));
    let servers = nameservers(&written);
    assert_eq!(servers.first(), Some(&stub));
    assert!(servers.len() <= 3, "{servers:?}");
    assert_eq!(
        render(&written, stub, &zones),
        written,
        "a second edit changes nothing"
    );
    backup(rest);
}

/// The backup of the original file, as read at start.
fn backup(bytes: &[u8]) {
    if let Ok(original) = serde_json::from_slice::<Original>(bytes) {
        let json = serde_json::to_vec(&original).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<Original>(&json).ok(),
            Some(original)
        );
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("resolv_conf", 64);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let debian = "domain example.com\nsearch example.com corp.example.com\nnameserver 192.168.1.1\nnameserver 2001:db8::53\noptions edns0 rotate timeout:2\n";
    let resolved = "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
    let scoped =
        "nameserver fe80::1%eth0\nnameserver 10.147.0.1\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n";
    let with = |mode: u8, text: &str| [vec![mode], text.as_bytes().to_vec()].concat();
    let ours = render(
        debian,
        "10.147.0.1".parse().expect("v4"),
        &["prod.warren.internal".to_string()],
    );
    let backup = Original::File {
        mode: 0o644,
        content: debian.into(),
    };
    vec![
        ("debian", with(0, debian)),
        ("resolved-stub", with(0, resolved)),
        ("scoped-and-many", with(1, scoped)),
        ("our-own-edit", with(0, &ours)),
        ("empty", vec![0]),
        (
            "backup-file",
            [vec![0], serde_json::to_vec(&backup).expect("json")].concat(),
        ),
        (
            "backup-symlink",
            [
                vec![0],
                serde_json::to_vec(&Original::Symlink {
                    target: "/run/systemd/resolve/stub-resolv.conf".into(),
                })
                .expect("json"),
            ]
            .concat(),
        ),
        (
            "backup-missing",
            [
                vec![0],
                serde_json::to_vec(&Original::Missing).expect("json"),
            ]
            .concat(),
        ),
        ("not-utf8", vec![0, b'n', 0xff, 0xfe]),
    ]
}
