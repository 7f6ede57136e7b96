//! The system's routing table and policy rules, read and changed with `ip`
//! (always an argument vector, never a shell), and the kernel switches
//! routing depends on.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use ipnet::IpNet;
use serde::Deserialize;
use warren_proto::routes::Forwarding;

use super::plan::{Rule, Selector, FWMARK, PRIORITIES, TABLE};

fn family(v6: bool) -> &'static str {
    if v6 {
        "-6"
    } else {
        "-4"
    }
}

/// Runs `ip ARGS...`; its stdout, or an error with its stderr.
async fn ip(args: &[String]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A table that was never made (or lost its last route) reads as empty.
fn missing_table(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("does not exist") || text.contains("No such file")
}

#[derive(Debug, Deserialize)]
struct RouteEntry {
    dst: String,
    dev: Option<String>,
}

/// Parses `ip -j route show table T` output into prefix -> device.
fn parse_routes(json: &str, v6: bool) -> Vec<(IpNet, Option<String>)> {
    let entries: Vec<RouteEntry> = serde_json::from_str(json.trim()).unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|e| {
            let prefix = if e.dst == "default" {
                if v6 {
                    "::/0".parse().ok()
                } else {
                    "0.0.0.0/0".parse().ok()
                }
            } else {
                e.dst
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| e.dst.parse::<std::net::IpAddr>().ok().map(IpNet::from))
            }?;
            Some((prefix, e.dev))
        })
        .collect()
}

async fn read_table(v6: bool) -> anyhow::Result<Vec<(IpNet, Option<String>)>> {
    let args = strings(&[
        "-j",
        family(v6),
        "route",
        "show",
        "table",
        &TABLE.to_string(),
    ]);
    match ip(&args).await {
        Ok(json) => Ok(parse_routes(&json, v6)),
        Err(e) if missing_table(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Makes Warren's table hold exactly `wanted` (prefix -> interface).
pub async fn sync_table(wanted: &BTreeMap<IpNet, String>) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for v6 in [false, true] {
        let have = read_table(v6).await?;
        for (prefix, dev) in &have {
            if wanted.get(prefix) != dev.as_ref() {
                let args = strings(&[
                    family(v6),
                    "route",
                    "del",
                    &prefix.to_string(),
                    "table",
                    &TABLE.to_string(),
                ]);
                if let Err(e) = ip(&args).await {
                    errors.push(format!("{e:#}"));
                }
            }
        }
        for (prefix, dev) in wanted.iter().filter(|(p, _)| p.addr().is_ipv6() == v6) {
            if have
                .iter()
                .any(|(p, d)| p == prefix && d.as_ref() == Some(dev))
            {
                continue;
            }
            let args = strings(&[
                family(v6),
                "route",
                "replace",
                &prefix.to_string(),
                "dev",
                dev,
                "table",
                &TABLE.to_string(),
            ]);
            match ip(&args).await {
                Ok(_) => tracing::info!(%prefix, interface = %dev, "route installed"),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// A rule as `ip -j rule show` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct RuleEntry {
    priority: u32,
    #[serde(default)]
    fwmark: Option<String>,
    #[serde(default)]
    dst: Option<String>,
    #[serde(default)]
    dstlen: Option<u8>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    suppress_prefixlen: Option<u32>,
}

impl RuleEntry {
    fn dst(&self) -> Option<IpNet> {
        let addr: std::net::IpAddr = self.dst.as_deref()?.parse().ok()?;
        let len = self.dstlen.unwrap_or(if addr.is_ipv6() { 128 } else { 32 });
        IpNet::new(addr, len).ok()
    }

    /// The rule of ours this is, if it is one.
    fn as_rule(&self, v6: bool) -> Option<Rule> {
        let table = self.table.as_deref()?;
        let selector = match (self.priority, table) {
            (p, "main") if p == super::plan::PRIO_MARK => {
                let mark = self.fwmark.as_deref()?;
                let mark = u32::from_str_radix(mark.trim_start_matches("0x"), 16).ok()?;
                (mark == FWMARK).then_some(Selector::Mark)?
            }
            (p, "main") if p == super::plan::PRIO_EXCLUDE => Selector::To(self.dst()?),
            (p, "main") if p == super::plan::PRIO_MAIN && self.suppress_prefixlen == Some(0) => {
                Selector::MainWithoutDefault
            }
            (p, t) if p == super::plan::PRIO_TABLE && t == TABLE.to_string() => Selector::Table,
            _ => return None,
        };
        Some(Rule {
            v6,
            priority: self.priority,
            selector,
        })
    }

    /// Arguments that delete exactly this rule.
    fn del_args(&self, v6: bool) -> Vec<String> {
        let mut args = strings(&[family(v6), "rule", "del", "priority"]);
        args.push(self.priority.to_string());
        if let Some(mark) = &self.fwmark {
            args.extend(["fwmark".to_owned(), mark.clone()]);
        }
        if let Some(dst) = self.dst() {
            args.extend(["to".to_owned(), dst.to_string()]);
        }
        if let Some(table) = &self.table {
            args.extend(["lookup".to_owned(), table.clone()]);
        }
        if let Some(len) = self.suppress_prefixlen {
            args.extend(["suppress_prefixlength".to_owned(), len.to_string()]);
        }
        args
    }
}

fn parse_rules(json: &str) -> Vec<RuleEntry> {
    serde_json::from_str::<Vec<RuleEntry>>(json.trim())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| PRIORITIES.contains(&r.priority))
        .collect()
}

async fn read_rules(v6: bool) -> anyhow::Result<Vec<RuleEntry>> {
    Ok(parse_rules(
        &ip(&strings(&["-j", family(v6), "rule", "show"])).await?,
    ))
}

/// Makes the rules at Warren's priorities exactly `wanted`.
pub async fn sync_rules(wanted: &BTreeSet<Rule>) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for v6 in [false, true] {
        let have = read_rules(v6).await?;
        let mut present = BTreeSet::new();
        for entry in &have {
            // A rule at our priorities that is not of our making stays.
            let Some(rule) = entry.as_rule(v6) else {
                continue;
            };
            if wanted.contains(&rule) && !present.contains(&rule) {
                present.insert(rule);
            } else if let Err(e) = ip(&entry.del_args(v6)).await {
                errors.push(format!("{e:#}"));
            }
        }
        for rule in wanted.iter().filter(|r| r.v6 == v6 && !present.contains(r)) {
            let mut args = strings(&[family(v6), "rule", "add"]);
            args.extend(rule.args());
            if let Err(e) = ip(&args).await {
                errors.push(format!("{e:#}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

fn read_flag(path: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1")
}

/// Whether the kernel forwards IPv4 and IPv6.
pub fn forwarding() -> Forwarding {
    Forwarding {
        ipv4: read_flag("/proc/sys/net/ipv4/ip_forward"),
        ipv6: read_flag("/proc/sys/net/ipv6/conf/all/forwarding"),
    }
}

/// Lets reverse-path filtering use the mark that replies to the agent's
/// sockets get back (wg-quick sets the same). Only needed with a default
/// route through the tunnel.
pub fn use_marks_for_reverse_path() {
    let path = "/proc/sys/net/ipv4/conf/all/src_valid_mark";
    if read_flag(path) {
        return;
    }
    if let Err(e) = std::fs::write(path, "1") {
        tracing::warn!(error = %e, "could not set net.ipv4.conf.all.src_valid_mark; strict reverse-path filtering may drop replies");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn routes_parse_with_default_and_host_entries() {
        let json = r#"[{"dst":"default","dev":"warren0","scope":"link","flags":[]},{"dst":"10.96.0.0/12","dev":"warren0","flags":[]},{"dst":"192.0.2.7","dev":"warren1","flags":[]}]"#;
        assert_eq!(
            parse_routes(json, false),
            vec![
                (net("0.0.0.0/0"), Some("warren0".to_owned())),
                (net("10.96.0.0/12"), Some("warren0".to_owned())),
                (net("192.0.2.7/32"), Some("warren1".to_owned())),
            ]
        );
        assert_eq!(parse_routes("[]", true), vec![]);
        assert_eq!(
            parse_routes(r#"[{"dst":"default","dev":"w"}]"#, true)[0].0,
            net("::/0")
        );
    }

    #[test]
    fn our_rules_are_recognised_and_others_left_alone() {
        let json = r#"[{"priority":0,"src":"all","table":"local"},{"priority":5110,"src":"all","fwmark":"0x5752","table":"main"},{"priority":5120,"src":"all","dst":"192.0.2.10","table":"main"},{"priority":5120,"src":"all","dst":"198.51.100.0","dstlen":24,"table":"main"},{"priority":5130,"src":"all","table":"main","suppress_prefixlen":0},{"priority":5140,"src":"all","table":"22354"},{"priority":32766,"src":"all","table":"main"}]"#;
        let entries = parse_rules(json);
        assert_eq!(entries.len(), 5, "only Warren's priorities");
        let rules: Vec<Rule> = entries.iter().filter_map(|e| e.as_rule(false)).collect();
        assert_eq!(rules.len(), 5);
        assert_eq!(rules[1].selector, Selector::To(net("192.0.2.10/32")));
        assert_eq!(rules[2].selector, Selector::To(net("198.51.100.0/24")));
        assert_eq!(rules[4].selector, Selector::Table);
        assert_eq!(
            entries[2].del_args(false),
            strings(&[
                "-4",
                "rule",
                "del",
                "priority",
                "5120",
                "to",
                "198.51.100.0/24",
                "lookup",
                "main"
            ])
        );
        // Someone else's rule at our priority is not ours: never touched.
        let foreign = r#"[{"priority":5140,"src":"all","table":"100"}]"#;
        assert!(parse_rules(foreign)[0].as_rule(false).is_none());
    }
}
