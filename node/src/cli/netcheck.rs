//! `warren netcheck`: what the NAT in front of this host does, as the agent
//! sees it per joined network, or, with `--controller`, as the CLI probes
//! it itself before any network is joined.

use clap::Args;
use warren_cli_assets::{out, outln};
use warren_proto::control::normalise_fingerprint;
use warren_proto::local_api::Netcheck;
use warren_proto::netcheck::{ControllerNetcheck, NatMapping, PathVerdict, QuicCheck, QuicReach};
use warren_proto::stun;
use warren_proto::text::printable;

use super::exit::{self, Exit};
use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct NetcheckArgs {
    /// Probe this controller's QUIC address (HOST:PORT) from here, without
    /// the agent: before joining, or with no daemon running. It does a QUIC
    /// handshake (and nothing after it), asks the controller's STUN ports,
    /// and asks the default gateway for a port mapping it deletes at once.
    /// Without it, the agent reports on the networks it has joined.
    #[arg(long, value_name = "HOST:PORT")]
    controller: Option<String>,
    /// With --controller: the SHA-256 fingerprint the controller's
    /// certificate must have, as `warren-controller fingerprint` prints it.
    /// Without it, the fingerprint seen is shown and nothing is trusted.
    #[arg(long, requires = "controller")]
    fingerprint: Option<String>,
    /// With --controller: a STUN port on HOST to ask (default 3478 and
    /// 3479, where `warren-controller serve` listens). Repeat for more;
    /// two or more tell whether the NAT maps per destination.
    #[arg(long = "stun-port", value_name = "PORT", requires = "controller")]
    stun_ports: Vec<u16>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &NetcheckArgs) -> anyhow::Result<()> {
    let Some(controller) = &args.controller else {
        return from_agent(cli, args.json);
    };
    let pinned = match &args.fingerprint {
        None => None,
        Some(text) => Some(normalise_fingerprint(text).ok_or_else(|| {
            Exit::error(
                exit::USAGE,
                "--fingerprint is 64 hex digits (colons allowed), as `warren-controller fingerprint` prints it",
            )
        })?),
    };
    let mut stun_ports = if args.stun_ports.is_empty() {
        stun::DEFAULT_PORTS.to_vec()
    } else {
        args.stun_ports.clone()
    };
    // One port named twice would look like a NAT that keeps its mapping.
    stun_ports.sort_unstable();
    stun_ports.dedup();
    let report = super::runtime()?.block_on(crate::netcheck::check(
        controller,
        pinned.as_deref(),
        &stun_ports,
    ));
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", printable(&render(&report)));
    }
    // The verdict already weighs QUIC over TCP: a controller reached that
    // way is a network the agent can join.
    match report.path {
        PathVerdict::FingerprintMismatch => Err(Exit::error(
            exit::FINGERPRINT_MISMATCH,
            "the controller's certificate does not match --fingerprint",
        )),
        PathVerdict::ControllerUnreachable => Err(Exit::error(
            exit::CONTROLLER_UNREACHABLE,
            format!("cannot reach the controller at {controller}"),
        )),
        _ => Ok(()),
    }
}

/// "  QUIC handshake completed, round trip 2.5 ms", or why it failed.
fn handshake_line(what: &str, check: &QuicCheck) -> String {
    match (check.reach, check.rtt_ms) {
        (QuicReach::Connected, Some(ms)) => {
            format!("  {what} handshake completed, round trip {ms:.1} ms\n")
        }
        (QuicReach::Connected, None) => format!("  {what} handshake completed\n"),
        (_, _) => format!(
            "  {what} handshake failed: {}\n",
            check.error.as_deref().unwrap_or("?")
        ),
    }
}

/// How a port-mapping protocol's wire name is written for people.
fn protocol_name(protocol: &str) -> String {
    match protocol {
        "pcp" => "PCP".to_owned(),
        "nat-pmp" => "NAT-PMP".to_owned(),
        "upnp" => "UPnP IGD".to_owned(),
        other => other.to_owned(),
    }
}

/// The report for people, one finding a line.
fn render(r: &ControllerNetcheck) -> String {
    let mut out = match r.quic.address.as_deref() {
        Some(addr) if addr == r.controller => format!("controller {addr}\n"),
        Some(addr) => format!("controller {} ({addr})\n", r.controller),
        None => format!("controller {} (not resolved)\n", r.controller),
    };
    let q = &r.quic;
    out += &handshake_line("QUIC", q);
    if let Some(fp) = &q.fingerprint {
        let verdict = match q.fingerprint_matches {
            Some(true) => "matches --fingerprint",
            Some(false) => "does NOT match --fingerprint: not the controller you expect",
            None => {
                "not checked (no --fingerprint): compare it with `warren-controller fingerprint`"
            }
        };
        out += &format!("  certificate SHA-256 {fp}: {verdict}\n");
    }
    match r.udp.local_port {
        Some(port) => out += &format!("UDP from local port {port}\n"),
        None => out += "UDP\n",
    }
    for s in &r.udp.stun {
        match (&s.mapped, s.rtt_ms) {
            (Some(m), Some(ms)) => {
                out += &format!("  STUN {} sees us at {m} ({ms:.1} ms)\n", s.server)
            }
            (Some(m), None) => out += &format!("  STUN {} sees us at {m}\n", s.server),
            (None, _) => out += &format!("  STUN {}: no answer\n", s.server),
        }
    }
    let mapping = match r.udp.mapping {
        NatMapping::NoNat => "none: this host has a public address",
        NatMapping::EndpointIndependent => "same for every destination (endpoint-independent)",
        NatMapping::VariesByDestination => {
            "varies by destination (endpoint-dependent, symmetric NAT)"
        }
        NatMapping::Unknown => "unknown (one STUN answer; two are needed)",
        NatMapping::UdpBlocked => "UDP blocked: no STUN answer",
    };
    out += &format!("  NAT mapping: {mapping}\n");
    match &r.tcp {
        Some(t) => {
            out += "TCP\n";
            if let Some(proxy) = &t.proxy {
                out += &format!("  through the proxy {proxy} (HTTPS_PROXY)\n");
            }
            out += &handshake_line("QUIC over TCP", t);
        }
        None => out += "TCP: not checked\n",
    }
    let pm = &r.port_mapping;
    match (&pm.granted, &pm.gateway) {
        (Some(m), _) => {
            let deleted = match pm.deleted {
                Some(true) => "deleted again",
                _ => "delete not confirmed; it lapses by itself",
            };
            out += &format!(
                "port mapping: {} at {} maps us at {} ({deleted})\n",
                protocol_name(&m.protocol),
                m.gateway,
                m.external
            );
        }
        (None, Some(gw)) => {
            out += &format!(
                "port mapping: none: gateway {gw} answers none of PCP, NAT-PMP and UPnP IGD ({})\n",
                pm.error.as_deref().unwrap_or("?")
            )
        }
        (None, None) => {
            out += &format!(
                "port mapping: none ({})\n",
                pm.error.as_deref().unwrap_or("no gateway")
            )
        }
    }
    out += &format!("path: {}\n", r.path.describe());
    out
}

/// What the agent knows of its joined networks, over the local API.
fn from_agent(cli: &Cli, json: bool) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let report: Netcheck = super::runtime()?.block_on(client::get(&socket, "/v1/netcheck"))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if report.networks.is_empty() {
        outln!("no joined network is up; netcheck asks each network's controller");
    }
    for net in &report.networks {
        outln!(
            "network {} (port {})",
            net.network,
            net.listen_port.unwrap_or(0)
        );
        for r in &net.reflexive {
            outln!("  STUN {} sees us at {}", r.server, r.mapped);
        }
        if net.reflexive.is_empty() {
            outln!("  no STUN answer yet (is UDP to the controller blocked?)");
        }
        let mapping = match net.mapping_varies_by_destination {
            Some(true) => "varies by destination (endpoint-dependent, symmetric NAT): direct paths need the peer's help",
            Some(false) => "same for every destination (endpoint-independent): direct paths work",
            None => "unknown (fewer than two STUN answers)",
        };
        outln!("  mapping {mapping}");
        match &net.port_mapping {
            Some(m) => outln!(
                "  port mapping: {} {} maps us at {} ({}s, renewed at half)",
                protocol_name(&m.protocol),
                m.gateway,
                m.external,
                m.lifetime_secs
            ),
            None => {
                outln!("  port mapping: none (off, or the gateway answers none of PCP, NAT-PMP and UPnP IGD)")
            }
        }
        match (net.relay, &net.relay_server) {
            (true, Some(server)) => outln!("  relay reachable (relay-only instance {server})"),
            (true, None) => outln!("  relay reachable (the controller)"),
            (false, _) => outln!("  relay unreachable"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::local_api::PortMapping;
    use warren_proto::netcheck::{PathVerdict, PortMappingCheck, QuicCheck, StunProbe, UdpCheck};

    fn report(reach: QuicReach, mapped: [Option<&str>; 2]) -> ControllerNetcheck {
        let stun: Vec<StunProbe> = ["192.0.2.10:3478", "192.0.2.10:3479"]
            .iter()
            .zip(mapped)
            .map(|(server, mapped)| StunProbe {
                server: (*server).to_owned(),
                mapped: mapped.map(str::to_owned),
                rtt_ms: mapped.map(|_| 1.0),
            })
            .collect();
        let parsed: Vec<_> = mapped
            .iter()
            .map(|m| m.and_then(|m| m.parse().ok()))
            .collect();
        let mapping = NatMapping::of("10.0.1.2:40000".parse().ok(), &parsed);
        let quic = QuicCheck {
            reach,
            address: Some("192.0.2.10:7443".to_owned()),
            rtt_ms: (reach == QuicReach::Connected).then_some(2.5),
            fingerprint: Some("ab".repeat(32)),
            fingerprint_matches: Some(reach != QuicReach::FingerprintMismatch),
            error: (reach != QuicReach::Connected).then(|| "refused".to_owned()),
            proxy: None,
        };
        ControllerNetcheck {
            controller: "ctl.example:7443".to_owned(),
            quic: quic.clone(),
            tcp: Some(quic),
            udp: UdpCheck {
                local_port: Some(40000),
                stun,
                mapping,
            },
            port_mapping: PortMappingCheck {
                gateway: Some("10.0.1.1".to_owned()),
                granted: Some(PortMapping {
                    protocol: "pcp".to_owned(),
                    gateway: "10.0.1.1".to_owned(),
                    external: "203.0.113.1:40000".to_owned(),
                    lifetime_secs: 30,
                }),
                deleted: Some(true),
                error: None,
            },
            path: PathVerdict::of(reach, mapping, true),
        }
    }

    #[test]
    fn a_reachable_controller_behind_a_symmetric_nat_with_a_mapping() {
        let text = render(&report(
            QuicReach::Connected,
            [Some("203.0.113.1:1000"), Some("203.0.113.1:2000")],
        ));
        for line in [
            "controller ctl.example:7443 (192.0.2.10:7443)\n",
            "  QUIC handshake completed, round trip 2.5 ms\n",
            ": matches --fingerprint\n",
            "  STUN 192.0.2.10:3479 sees us at 203.0.113.1:2000 (1.0 ms)\n",
            "  NAT mapping: varies by destination",
            "TCP\n  QUIC over TCP handshake completed, round trip 2.5 ms\n",
            "port mapping: PCP at 10.0.1.1 maps us at 203.0.113.1:40000 (deleted again)\n",
            "path: direct to most peers\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_mismatch_and_silence_are_said() {
        let text = render(&report(QuicReach::FingerprintMismatch, [None, None]));
        for line in [
            "  QUIC handshake failed: refused\n",
            "  QUIC over TCP handshake failed: refused\n",
            "does NOT match --fingerprint",
            "  STUN 192.0.2.10:3478: no answer\n",
            "  NAT mapping: UDP blocked: no STUN answer\n",
            "path: cannot use the controller: its certificate does not match --fingerprint\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
