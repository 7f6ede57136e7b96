//! `warren explain`: would this node let a new flow out to a destination,
//! and by which rule; and what its policy dropped lately.

use clap::Args;
use warren_cli_assets::{out, outln};
use warren_proto::filter::{Direction, Verdict};
use warren_proto::local_api::ExplainReply;
use warren_proto::text::printable;

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A peer's name or FQDN, or an address (also one in a peer's subnet
    /// route); `DEST:PORT` is short for `--port tcp:PORT`.
    dest: String,
    /// The protocol and port: `tcp:6379`, `udp:53`, `icmp` [default: icmp].
    #[arg(long)]
    port: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &ExplainArgs) -> anyhow::Result<()> {
    let (dest, port) = split_dest(&args.dest, args.port.as_deref())?;
    let path = format!(
        "/v1/explain?to={}&port={}",
        query_escape(&dest),
        query_escape(&port)
    );
    let reply: ExplainReply =
        super::runtime()?.block_on(client::get(&cli.socket_or(None), &path))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        out!("{}", printable(&render(&reply)));
    }
    Ok(())
}

/// `DEST` and its port: `--port`, else a `:PORT` suffix (TCP), else ICMP.
/// A bare IPv6 address has colons of its own; write `[ADDR]:PORT`.
fn split_dest(dest: &str, port: Option<&str>) -> anyhow::Result<(String, String)> {
    let (host, suffix) = match dest.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => match tail.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => anyhow::bail!("{dest:?}: expected [ADDRESS]:PORT"),
            },
            None => anyhow::bail!("{dest:?}: no closing ]"),
        },
        None => match dest.rsplit_once(':') {
            Some((host, p)) if !host.contains(':') => (host, Some(p)),
            _ => (dest, None),
        },
    };
    let port = match (port, suffix) {
        (Some(_), Some(_)) => {
            anyhow::bail!("give the port once: {dest:?} has one and so has --port")
        }
        (Some(p), None) => p.to_string(),
        (None, Some(p)) => {
            let number: u16 = p
                .parse()
                .map_err(|_| anyhow::anyhow!("{p:?} is not a port number"))?;
            format!("tcp:{number}")
        }
        (None, None) => "icmp".to_string(),
    };
    Ok((host.to_string(), port))
}

/// Percent-encodes everything but unreserved characters and `:`.
fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:*".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn render(reply: &ExplainReply) -> String {
    let verdict = match reply.verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    };
    let why = match (&reply.rule, reply.policy_version) {
        (Some(rule), Some(v)) => format!("by rule {rule} of policy version {v}"),
        (Some(rule), None) => format!("by rule {rule}"),
        (None, Some(v)) => format!("no rule of policy version {v} allows it"),
        (None, None) => "this network has no policy: everything passes".to_string(),
    };
    let mut out = format!(
        "{verdict}: {} -> {} {} (peer {}, network {})\n  {why}\n",
        reply.src, reply.dst, reply.port, reply.peer, reply.network
    );
    if !reply.recent_drops.is_empty() {
        out.push_str("recent drops (newest first):\n");
        for d in &reply.recent_drops {
            let direction = match d.direction {
                Direction::Inbound => "in ",
                Direction::Outbound => "out",
            };
            out.push_str(&format!(
                "  {:>6.1}s ago  {direction}  {} -> {} proto {} port {}  {:?}\n",
                d.age_ms as f64 / 1000.0,
                d.src,
                d.dst,
                d.ip_protocol,
                d.port,
                d.reason
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_comes_from_the_flag_a_suffix_or_defaults_to_icmp() {
        let split = |d: &str, p: Option<&str>| split_dest(d, p).unwrap();
        assert_eq!(split("master", None), ("master".into(), "icmp".into()));
        assert_eq!(
            split("master:3000", None),
            ("master".into(), "tcp:3000".into())
        );
        assert_eq!(
            split("10.96.0.10", Some("udp:53")),
            ("10.96.0.10".into(), "udp:53".into())
        );
        assert_eq!(split("fd00::1", None), ("fd00::1".into(), "icmp".into()));
        assert_eq!(
            split("[fd00::1]:22", None),
            ("fd00::1".into(), "tcp:22".into())
        );
        assert!(split_dest("master:3000", Some("tcp:1")).is_err());
        assert!(split_dest("master:http", None).is_err());
        assert!(split_dest("[fd00::1", None).is_err());
    }

    #[test]
    fn queries_are_escaped() {
        assert_eq!(query_escape("tcp:6379"), "tcp:6379");
        assert_eq!(query_escape("a&b c"), "a%26b%20c");
    }
}
