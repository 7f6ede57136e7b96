//! Names and services: the laptop's DNS stub answers the other members'
//! names with the addresses they really have, and a service the master
//! publishes shows up there as an SRV record that leads to it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use warren_lab::dns::{dig, Dig};
use warren_lab::routes_lab::{fetch, HttpServer, RoutesLab, Site};
use warren_lab::wait::{self, Poll};

/// The service the master publishes, and its port.
pub const SERVICE: &str = "web";
pub const SERVICE_PORT: u16 = 8080;

/// How long a name or a published service gets to reach the stub.
const WITHIN: Duration = Duration::from_secs(10);

/// Where `site`'s stub for `net` listens, and the network's zone, as
/// `warren dns status --json` reports them.
pub fn stub_of(site: &Site, net: &str) -> anyhow::Result<(IpAddr, String)> {
    let text = site.warren(["dns", "status", "--json"])?;
    let status: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("warren dns status --json: {text}"))?;
    let stub = status["stubs"]
        .as_array()
        .and_then(|stubs| stubs.iter().find(|s| s["network"] == net))
        .with_context(|| format!("no stub for {net} in {text}"))?;
    let listen: SocketAddr = stub["listen"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .with_context(|| format!("no listen address in {stub}"))?;
    let zone = stub["zone"]
        .as_str()
        .with_context(|| format!("no zone in {stub}"))?
        .trim_end_matches('.')
        .to_owned();
    Ok((listen.ip(), zone))
}

/// `dig @stub name rtype` from `from` until its answers of `rtype` are
/// `want`; prints the command and what it answered. Returns how long the
/// answer took to appear, or why it did not.
pub fn resolve(
    from: &Site,
    stub: IpAddr,
    name: &str,
    rtype: &str,
    want: &[String],
) -> anyhow::Result<Result<Duration, String>> {
    println!("[{}] dig @{stub} {name} {rtype} +short", from.name);
    let started = Instant::now();
    let mut last = None;
    let found = wait::until(format!("{name} {rtype} at {stub}"), WITHIN, || {
        let answer: Dig = dig(&from.host, stub, name, rtype)?;
        let got: Vec<String> = answer.data(rtype).iter().map(|d| d.to_string()).collect();
        let matched = got == want;
        last = Some(answer);
        Ok(if matched {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{got:?}"))
        })
    });
    let took = started.elapsed();
    if let Some(answer) = &last {
        for (_, data) in answer.answers.iter().filter(|(t, _)| t == rtype) {
            println!("{data}");
        }
        if answer.answers.is_empty() {
            println!(";; {}", answer.status);
        }
    }
    Ok(match found {
        Ok(()) => Ok(took),
        Err(e) => Err(format!("{e} (wanted {want:?})")),
    })
}

/// The laptop resolves every other member at its stub, by IPv4 and IPv6,
/// and each answer is checked against the member's own status.
pub fn members(world: &RoutesLab, net: &str, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let laptop = world.site("laptop")?;
    println!("[laptop] warren dns status");
    print!("{}", laptop.warren(["dns", "status"])?);
    let (stub, zone) = stub_of(laptop, net)?;
    for other in world.sites.iter().filter(|s| s.name != laptop.name) {
        let status = other.agent.status()?;
        let network = status.network(net)?;
        let name = format!("{}.{zone}", other.name);
        for (rtype, addr) in [
            ("A", IpAddr::from(network.ipv4()?)),
            ("AAAA", IpAddr::from(network.ipv6()?)),
        ] {
            if let Err(why) = resolve(laptop, stub, &name, rtype, &[addr.to_string()])? {
                println!("  NOT {addr}: {why}");
                problems.push(format!("{name} {rtype} at the laptop's stub"));
            }
        }
    }
    Ok(())
}

/// The master publishes [`SERVICE`] and serves it on its overlay address;
/// the laptop finds it by SRV, resolves the target and fetches from it.
/// Returns the server, to keep it up for `--keep`.
pub fn service(
    world: &RoutesLab,
    net: &str,
    problems: &mut Vec<String>,
) -> anyhow::Result<HttpServer> {
    let (master, laptop) = (world.site("master")?, world.site("laptop")?);
    let master_v4 = master.overlay_v4(net)?;
    let server = HttpServer::start(
        &master.host,
        SocketAddr::new(master_v4.into(), SERVICE_PORT),
        &format!("{SERVICE}-master"),
    )?;
    let port = SERVICE_PORT.to_string();
    println!("[master] warren service add {SERVICE} {port}");
    print!("{}", master.warren(["service", "add", SERVICE, &port])?);
    let (stub, zone) = stub_of(laptop, net)?;
    let srv = format!("_{SERVICE}._tcp.{zone}");
    let target = format!("master.{zone}");
    let want = format!("0 0 {SERVICE_PORT} {target}.");
    match resolve(laptop, stub, &srv, "SRV", &[want])? {
        Ok(took) => println!(
            "  (at the laptop's stub {:.2} s after `service add` returned)",
            took.as_secs_f64()
        ),
        Err(why) => {
            println!("  NOT published: {why}");
            problems.push(format!("{srv} SRV at the laptop's stub"));
            return Ok(server);
        }
    }
    let a = dig(&laptop.host, stub, &target, "A")?;
    let Some(addr) = a.data("A").first().and_then(|d| d.parse::<IpAddr>().ok()) else {
        println!("  {target} has no A record at the stub: {}", a.status);
        problems.push(format!("{target} A at the laptop's stub"));
        return Ok(server);
    };
    let url = SocketAddr::new(addr, SERVICE_PORT);
    let laptop_v4 = IpAddr::from(laptop.overlay_v4(net)?);
    match fetch(&laptop.host, url, Duration::from_secs(2))? {
        Ok(f) if f.seen_from == laptop_v4 => println!(
            "[laptop] GET http://{target}:{SERVICE_PORT}/ ({url}) -> answered by {}, which saw the request come from {} (the laptop's overlay address)",
            f.server, f.seen_from
        ),
        Ok(f) => {
            println!(
                "[laptop] GET http://{url}/ -> answered by {}, but from {} instead of the laptop's {laptop_v4}",
                f.server, f.seen_from
            );
            problems.push("the published service saw another source".to_owned());
        }
        Err(why) => {
            println!("[laptop] GET http://{url}/ failed: {why}");
            problems.push("the published service".to_owned());
        }
    }
    Ok(server)
}
