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
//!   (`from_overlay_dropped`). The destination checked is the one the peer
//!   sent to (conntrack's original), so a service address that kube-proxy
//!   rewrites to a pod outside the route still passes.
//! - TCP MSS clamped to the route's MTU on SYNs into and out of the
//!   overlay (subnet routers and exit nodes alike).
//! - Masquerade of overlay traffic leaving toward the LAN (on by default).
//! - With an exit node in use, UDP replies to the agent's marked sockets get
//!   the mark back before routing (as wg-quick does), so strict reverse-path
//!   filtering sees them come in where the main table says.
//!
//! - Every set pairs an overlay interface with a prefix: a node in several
//!   networks forwards a packet only as the network it came from (or goes
//!   to) allows, never by what another network allows.
//!
//! The script only ever adds and flushes, so named counters survive updates.

use std::fmt::Write as _;
use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::io::AsyncWriteExt;

use super::plan::{Firewall, OnTun, FWMARK};

pub const TABLE: &str = "warren";
pub const INTO_OVERLAY: &str = "into_overlay_dropped";
pub const FROM_OVERLAY: &str = "from_overlay_dropped";

/// Lowers the MSS a forwarded SYN (or SYN-ACK) offers to what the route
/// it takes carries: the tunnel's MTU less the headers into the overlay,
/// the LAN's out of it. Hosts behind a router then never send a segment
/// the tunnel cannot take, even where ICMP "fragmentation needed" is
/// filtered on their way back.
const CLAMP_MSS: &str = "tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu";

/// The sets the rules use, with their element type: each element pairs
/// an overlay interface (one network) with a prefix, so that a rule only
/// matches what a packet's own network allows.
const SETS: [(&str, &str); 6] = [
    ("net_members4", "ifname . ipv4_addr"),
    ("net_members6", "ifname . ipv6_addr"),
    ("net_own4", "ifname . ipv4_addr"),
    ("net_own6", "ifname . ipv6_addr"),
    ("net_remote4", "ifname . ipv4_addr"),
    ("net_remote6", "ifname . ipv6_addr"),
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

fn family(list: &[OnTun], v6: bool) -> Vec<String> {
    list.iter()
        .filter(|(_, p)| p.addr().is_ipv6() == v6)
        .map(|(tun, p)| format!("\"{tun}\" . {p}"))
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
        let _ = writeln!(s, "add set {t} {name} {{ type {kind}; flags interval; }}");
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
    // Before replies are let through: a SYN-ACK is already "established".
    for side in ["oifname", "iifname"] {
        rule(&mut s, "forward", &format!("{side} {tuns} {CLAMP_MSS}"));
    }
    rule(&mut s, "forward", "ct state established,related accept");
    rule(
        &mut s,
        "forward",
        &format!(
            "oifname {tuns} oifname . ip saddr @net_own4 oifname . ip daddr @net_remote4 accept"
        ),
    );
    rule(
        &mut s,
        "forward",
        &format!(
            "oifname {tuns} oifname . ip6 saddr @net_own6 oifname . ip6 daddr @net_remote6 accept"
        ),
    );
    rule(
        &mut s,
        "forward",
        &format!("oifname {tuns} counter name {INTO_OVERLAY} drop"),
    );
    rule(
        &mut s,
        "forward",
        &format!(
            "iifname {tuns} iifname . ip saddr @net_members4 iifname . ct original ip daddr @net_own4 accept"
        ),
    );
    rule(
        &mut s,
        "forward",
        &format!(
            "iifname {tuns} iifname . ip6 saddr @net_members6 iifname . ct original ip6 daddr @net_own6 accept"
        ),
    );
    if !fw.exit_v4.is_empty() {
        let exits = quoted_set(&fw.exit_v4);
        rule(
            &mut s,
            "forward",
            &format!("iifname {exits} iifname . ip saddr @net_members4 accept"),
        );
    }
    if !fw.exit_v6.is_empty() {
        let exits = quoted_set(&fw.exit_v6);
        rule(
            &mut s,
            "forward",
            &format!("iifname {exits} iifname . ip6 saddr @net_members6 accept"),
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

    fn net(s: &str) -> ipnet::IpNet {
        s.parse().unwrap()
    }

    fn on(tun: &str, s: &str) -> OnTun {
        (tun.to_string(), net(s))
    }

    fn router() -> Firewall {
        Firewall {
            tuns: vec!["warren0".into()],
            members: vec![on("warren0", "10.147.0.2/32"), on("warren0", "fd00::2/128")],
            own: vec![on("warren0", "10.96.0.0/12")],
            remote: vec![on("warren0", "10.112.0.0/12")],
            exit_v4: vec![],
            exit_v6: vec![],
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
        let site = pos("oifname { \"warren0\" } oifname . ip saddr @net_own4 oifname . ip daddr @net_remote4 accept");
        let into = pos("oifname { \"warren0\" } counter name into_overlay_dropped drop");
        let out = pos("iifname { \"warren0\" } iifname . ip saddr @net_members4 iifname . ct original ip daddr @net_own4 accept");
        let from = pos("iifname { \"warren0\" } counter name from_overlay_dropped drop");
        assert!(replies < site && site < into && into < out && out < from);
        // SYNs either way have their MSS clamped before replies pass.
        for side in ["oifname", "iifname"] {
            let clamp = pos(&format!(
                "forward {side} {{ \"warren0\" }} tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu"
            ));
            assert!(clamp < replies);
        }
        assert!(s.contains("add element inet warren net_members4 { \"warren0\" . 10.147.0.2/32 }"));
        assert!(s.contains("add element inet warren net_members6 { \"warren0\" . fd00::2/128 }"));
        assert!(s.contains("add element inet warren net_own4 { \"warren0\" . 10.96.0.0/12 }"));
        assert!(
            !s.contains("add element inet warren net_own6"),
            "empty sets get no elements"
        );
        assert!(s.contains("iifname { \"warren0\" } oifname != { \"warren0\" } masquerade"));
        // No blanket forwarding without an approved exit route.
        assert!(!s.contains("ip saddr @net_members4 accept\n"));
        assert!(!s.contains("ct mark"));
        // Only adds and flushes: counters survive updates.
        assert!(!s.contains("delete"));
        assert!(s.contains("flush set inet warren net_members4"));
        assert!(s.contains("flush chain inet warren forward"));
    }

    #[test]
    fn exit_nodes_forward_anywhere_and_clients_restore_marks() {
        let mut fw = router();
        fw.exit_v4 = vec!["warren0".into()];
        fw.masquerade = false;
        fw.exit_client = true;
        let s = script(&fw);
        assert!(s.contains("iifname { \"warren0\" } iifname . ip saddr @net_members4 accept\n"));
        assert!(!s.contains("ip6 saddr @net_members6 accept\n"));
        assert!(!s.contains("masquerade"));
        assert!(s.contains("add rule inet warren mark_in meta l4proto udp meta mark set ct mark"));
        assert!(s.contains("meta mark 0x5752 ct mark set meta mark"));
    }

    #[test]
    fn two_networks_keep_their_prefixes_and_exit_nodes_apart() {
        let mut fw = router();
        fw.tuns.push("warren1".into());
        fw.members.push(on("warren1", "10.148.0.2/32"));
        fw.exit_v4 = vec!["warren0".into()];
        let s = script(&fw);
        // B's member is a member on B's interface only; A's route is A's.
        assert!(s.contains(
            "add element inet warren net_members4 { \"warren0\" . 10.147.0.2/32, \"warren1\" . 10.148.0.2/32 }"
        ));
        assert!(s.contains("add element inet warren net_own4 { \"warren0\" . 10.96.0.0/12 }"));
        // Only A's interface may use the exit.
        assert!(s.contains("iifname { \"warren0\" } iifname . ip saddr @net_members4 accept\n"));
        assert!(!s.contains(
            "iifname { \"warren0\", \"warren1\" } iifname . ip saddr @net_members4 accept\n"
        ));
    }

    #[test]
    fn counters_parse_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"counter": {"family": "inet", "name": "into_overlay_dropped", "table": "warren", "handle": 3, "packets": 7, "bytes": 588}}]}"#;
        assert_eq!(parse_counter(json), Some((7, 588)));
        assert_eq!(parse_counter("{}"), None);
    }
}
