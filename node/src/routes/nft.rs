//! The stateful filter in nftables table `inet warren`: the script that
//! brings it up to date (pure), and running `nft` on it.
//!
//! Forwarded packets only; traffic to and from this host is not touched.
//! - Replies (`ct state established,related`) pass either way.
//! - Into the overlay from anywhere else (the LAN, the WAN) nothing new
//!   passes, except site to site: from this node's approved subnets to the
//!   subnet routes it accepted from peers. Spoofed overlay sources from the
//!   LAN land here: dropped and counted (`into_overlay_dropped`).
//! - Out of the overlay: new connections only from members' addresses (and
//!   the subnets accepted from them), only to this node's approved routes
//!   (anywhere, for an approved exit node); the rest is dropped and counted
//!   (`from_overlay_dropped`).
//! - Masquerade of overlay traffic leaving toward the LAN (on by default).
//! - With an exit node in use, UDP replies to the agent's marked sockets get
//!   the mark back before routing (as wg-quick does), so strict reverse-path
//!   filtering sees them come in where the main table says.
//!
//! The script only ever adds and flushes, so named counters survive updates.

use std::fmt::Write as _;
use std::process::Stdio;

use anyhow::{bail, Context};
use ipnet::IpNet;
use tokio::io::AsyncWriteExt;

use super::plan::{Firewall, FWMARK};

pub const TABLE: &str = "warren";
pub const INTO_OVERLAY: &str = "into_overlay_dropped";
pub const FROM_OVERLAY: &str = "from_overlay_dropped";

/// The sets the rules use, with their element type.
const SETS: [(&str, &str); 6] = [
    ("members4", "ipv4_addr"),
    ("members6", "ipv6_addr"),
    ("own4", "ipv4_addr"),
    ("own6", "ipv6_addr"),
    ("remote4", "ipv4_addr"),
    ("remote6", "ipv6_addr"),
];

/// Base chains: name, hook spec.
const CHAINS: [(&str, &str); 4] = [
    (
        "forward",
        "type filter hook forward priority filter; policy accept;",
    ),
    (
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
    (
        "mark_in",
        "type filter hook prerouting priority mangle; policy accept;",
    ),
    (
        "mark_out",
        "type filter hook postrouting priority mangle; policy accept;",
    ),
];

fn quoted_set(names: &[String]) -> String {
    let inner: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("{{ {} }}", inner.join(", "))
}

fn family(list: &[IpNet], v6: bool) -> Vec<String> {
    list.iter()
        .filter(|p| p.addr().is_ipv6() == v6)
        .map(IpNet::to_string)
        .collect()
}

/// The script that makes `inet warren` match `fw`. Interface names come
/// from the agent's own configuration (`warrenN` by default) and are
/// quoted; nothing here comes from the network unparsed.
pub fn script(fw: &Firewall) -> String {
    let t = format!("inet {TABLE}");
    let mut s = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(s, "add table {t}");
    for counter in [INTO_OVERLAY, FROM_OVERLAY] {
        let _ = writeln!(s, "add counter {t} {counter}");
    }
    let elements = [
        family(&fw.members, false),
        family(&fw.members, true),
        family(&fw.own, false),
        family(&fw.own, true),
        family(&fw.remote, false),
        family(&fw.remote, true),
    ];
    for ((name, kind), items) in SETS.iter().zip(&elements) {
        let _ = writeln!(
            s,
            "add set {t} {name} {{ type {kind}; flags interval; auto-merge; }}"
        );
        let _ = writeln!(s, "flush set {t} {name}");
        if !items.is_empty() {
            let _ = writeln!(s, "add element {t} {name} {{ {} }}", items.join(", "));
        }
    }
    for (name, spec) in CHAINS {
        let _ = writeln!(s, "add chain {t} {name} {{ {spec} }}");
        let _ = writeln!(s, "flush chain {t} {name}");
    }
    let tuns = quoted_set(&fw.tuns);
    let rule = |s: &mut String, chain: &str, body: &str| {
        let _ = writeln!(s, "add rule {t} {chain} {body}");
    };
    rule(&mut s, "forward", "ct state established,related accept");
    rule(
        &mut s,
        "forward",
        &format!("oifname {tuns} ip saddr @own4 ip daddr @remote4 accept"),
    );
    rule(
        &mut s,
        "forward",
        &format!("oifname {tuns} ip6 saddr @own6 ip6 daddr @remote6 accept"),
    );
    rule(
        &mut s,
        "forward",
        &format!("oifname {tuns} counter name {INTO_OVERLAY} drop"),
    );
    rule(
        &mut s,
        "forward",
        &format!("iifname {tuns} ip saddr @members4 ip daddr @own4 accept"),
    );
    rule(
        &mut s,
        "forward",
        &format!("iifname {tuns} ip6 saddr @members6 ip6 daddr @own6 accept"),
    );
    if fw.exit_v4 {
        rule(
            &mut s,
            "forward",
            &format!("iifname {tuns} ip saddr @members4 accept"),
        );
    }
    if fw.exit_v6 {
        rule(
            &mut s,
            "forward",
            &format!("iifname {tuns} ip6 saddr @members6 accept"),
        );
    }
    rule(
        &mut s,
        "forward",
        &format!("iifname {tuns} counter name {FROM_OVERLAY} drop"),
    );
    if fw.masquerade {
        rule(
            &mut s,
            "postrouting",
            &format!("iifname {tuns} oifname != {tuns} masquerade"),
        );
    }
    if fw.exit_client {
        rule(&mut s, "mark_in", "meta l4proto udp meta mark set ct mark");
        rule(
            &mut s,
            "mark_out",
            &format!("meta l4proto udp meta mark {FWMARK:#x} ct mark set meta mark"),
        );
    }
    s
}

/// Runs `nft -f -` with `script` on stdin.
pub async fn apply(script: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (is nftables installed?)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .context("writing the ruleset to nft")?;
    }
    let out = child.wait_with_output().await.context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the table, if it is there.
pub async fn delete() -> anyhow::Result<()> {
    let out = tokio::process::Command::new("nft")
        .args(["delete", "table", "inet", TABLE])
        .output()
        .await
        .context("running nft")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !stderr.contains("No such file") {
        bail!("nft delete table inet {TABLE}: {}", stderr.trim());
    }
    Ok(())
}

/// Packets and bytes of a named counter; `None` if the table is not there.
pub async fn counter(name: &str) -> Option<(u64, u64)> {
    let out = tokio::process::Command::new("nft")
        .args(["-j", "list", "counter", "inet", TABLE, name])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_counter(&String::from_utf8_lossy(&out.stdout))
}

fn parse_counter(json: &str) -> Option<(u64, u64)> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get("nftables")?.as_array()?.iter().find_map(|item| {
        let c = item.get("counter")?;
        Some((c.get("packets")?.as_u64()?, c.get("bytes")?.as_u64()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn router() -> Firewall {
        Firewall {
            tuns: vec!["warren0".into()],
            members: vec![net("10.147.0.2/32"), net("fd00::2/128")],
            own: vec![net("10.96.0.0/12")],
            remote: vec![net("10.112.0.0/12")],
            exit_v4: false,
            exit_v6: false,
            masquerade: true,
            exit_client: false,
        }
    }

    #[test]
    fn a_subnet_router_filters_statefully_and_masquerades() {
        let s = script(&router());
        let pos = |needle: &str| {
            s.find(needle)
                .unwrap_or_else(|| panic!("missing {needle:?} in\n{s}"))
        };
        // Replies first; then new traffic into the overlay only site to
        // site, the rest dropped and counted; then out of it only from
        // members to our routes.
        let replies = pos("add rule inet warren forward ct state established,related accept");
        let site = pos("oifname { \"warren0\" } ip saddr @own4 ip daddr @remote4 accept");
        let into = pos("oifname { \"warren0\" } counter name into_overlay_dropped drop");
        let out = pos("iifname { \"warren0\" } ip saddr @members4 ip daddr @own4 accept");
        let from = pos("iifname { \"warren0\" } counter name from_overlay_dropped drop");
        assert!(replies < site && site < into && into < out && out < from);
        assert!(s.contains("add element inet warren members4 { 10.147.0.2/32 }"));
        assert!(s.contains("add element inet warren members6 { fd00::2/128 }"));
        assert!(s.contains("add element inet warren own4 { 10.96.0.0/12 }"));
        assert!(
            !s.contains("add element inet warren own6"),
            "empty sets get no elements"
        );
        assert!(s.contains("iifname { \"warren0\" } oifname != { \"warren0\" } masquerade"));
        // No blanket forwarding without an approved exit route.
        assert!(!s.contains("ip saddr @members4 accept\n"));
        assert!(!s.contains("ct mark"));
        // Only adds and flushes: counters survive updates.
        assert!(!s.contains("delete"));
        assert!(s.contains("flush set inet warren members4"));
        assert!(s.contains("flush chain inet warren forward"));
    }

    #[test]
    fn exit_nodes_forward_anywhere_and_clients_restore_marks() {
        let mut fw = router();
        fw.exit_v4 = true;
        fw.masquerade = false;
        fw.exit_client = true;
        let s = script(&fw);
        assert!(s.contains("iifname { \"warren0\" } ip saddr @members4 accept\n"));
        assert!(!s.contains("ip6 saddr @members6 accept\n"));
        assert!(!s.contains("masquerade"));
        assert!(s.contains("add rule inet warren mark_in meta l4proto udp meta mark set ct mark"));
        assert!(s.contains("meta mark 0x5752 ct mark set meta mark"));
    }

    #[test]
    fn counters_parse_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"counter": {"family": "inet", "name": "into_overlay_dropped", "table": "warren", "handle": 3, "packets": 7, "bytes": 588}}]}"#;
        assert_eq!(parse_counter(json), Some((7, 588)));
        assert_eq!(parse_counter("{}"), None);
    }
}
