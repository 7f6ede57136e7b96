//! An HTTP proxy for QUIC over TCP, for networks where the only way out is
//! a proxy: `https_proxy` or `HTTPS_PROXY`, as curl and Go read them, with
//! `no_proxy` or `NO_PROXY` exceptions. The agent connects to the proxy,
//! asks `CONNECT IP:PORT`, and runs its pinned TLS through the tunnel the
//! proxy grants: the proxy carries that TLS and sees nothing inside it.
//! UDP never goes through a proxy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest answer to `CONNECT` read, headers included.
const MAX_ANSWER: usize = 8 * 1024;

/// A proxy from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `HOST:PORT` of the proxy.
    address: String,
    /// `user:password` for `Proxy-Authorization: Basic`, from the URL.
    credentials: Option<String>,
}

impl Proxy {
    /// The proxy to reach `target` through, from the environment: `None`
    /// when none is set or `target` (named `host` where the controller's
    /// address was given) is excepted; an error for a setting that names
    /// no proxy this agent can use.
    pub fn for_target(host: &str, target: SocketAddr) -> anyhow::Result<Option<Proxy>> {
        let var = |names: [&str; 2]| {
            names
                .into_iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        };
        let Some(url) = var(["https_proxy", "HTTPS_PROXY"]) else {
            return Ok(None);
        };
        if var(["no_proxy", "NO_PROXY"]).is_some_and(|list| excepted(&list, host, target.ip())) {
            return Ok(None);
        }
        Proxy::parse(&url)
            .map(Some)
            .with_context(|| format!("HTTPS_PROXY {}", shown(&url)))
    }

    /// `http://[USER:PASSWORD@]HOST[:PORT][/]`, or `HOST:PORT` alone.
    fn parse(url: &str) -> anyhow::Result<Proxy> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            None => url,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                bail!("a {scheme}:// proxy is not supported: give an http:// one (CONNECT)")
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            bail!("a proxy URL has no path");
        }
        let (credentials, host) = match rest.rsplit_once('@') {
            Some((user, host)) => (Some(percent_decoded(user)?), host),
            None => (None, rest),
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("no proxy host");
        }
        // A port of its own, or HTTP's, as Go takes it; IPv6 in brackets.
        let port = match host.strip_prefix('[') {
            Some(v6) => {
                let (_, after) = v6
                    .split_once(']')
                    .context("no ']' after the IPv6 address")?;
                match after {
                    "" => None,
                    after => Some(after.strip_prefix(':').context("junk after ']'")?),
                }
            }
            None => match host.split(':').count() {
                1 => None,
                2 => host.rsplit_once(':').map(|(_, port)| port),
                _ => bail!("put an IPv6 proxy address in brackets"),
            },
        };
        let address = match port {
            Some(port) => {
                port.parse::<u16>().context("the proxy's port")?;
                host.to_owned()
            }
            None => format!("{host}:80"),
        };
        Ok(Proxy {
            address,
            credentials,
        })
    }

    /// The proxy as logs and `netcheck` show it: no password.
    pub fn shown(&self) -> String {
        match &self.credentials {
            Some(c) => format!(
                "http://{}@{}",
                c.split(':').next().unwrap_or(""),
                self.address
            ),
            None => format!("http://{}", self.address),
        }
    }

    /// A TCP connection to `target` through the proxy, ready for TLS, and
    /// the proxy's address. The connection and the proxy's answer each get
    /// `within`.
    pub async fn connect(
        &self,
        target: SocketAddr,
        within: Duration,
    ) -> anyhow::Result<(TcpStream, SocketAddr)> {
        let proxy = tokio::net::lookup_host(&self.address)
            .await
            .with_context(|| format!("resolving the proxy {}", self.address))?
            .next()
            .with_context(|| format!("the proxy {} has no address", self.address))?;
        let what = format!("TCP connection to the proxy {proxy}");
        let mut stream = super::quic_config::connect_marked(proxy, within, &what).await?;
        let asked = self.request(target);
        tokio::time::timeout(within, async {
            stream.write_all(asked.as_bytes()).await?;
            read_answer(&mut stream).await
        })
        .await
        .map_err(|_| anyhow::anyhow!("the proxy {proxy} did not answer CONNECT in time"))?
        .map_err(anyhow::Error::from)
        .and_then(|answer| granted(&answer))
        .with_context(|| format!("the proxy {proxy} (CONNECT {target})"))?;
        Ok((stream, proxy))
    }

    fn request(&self, target: SocketAddr) -> String {
        let mut asked = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: warren/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(c) = &self.credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(c);
            asked.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        asked.push_str("\r\n");
        asked
    }
}

/// A URL as an error may show it: the password left out.
fn shown(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((user, host)) => {
            let (scheme, user) = user.split_once("://").unwrap_or(("", user));
            let user = user.split(':').next().unwrap_or("");
            match scheme {
                "" => format!("{user}@{host}"),
                s => format!("{s}://{user}@{host}"),
            }
        }
        None => url.to_owned(),
    }
}

/// `%XX` escapes in the URL's user part, decoded.
fn percent_decoded(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .context("a bad %-escape in the proxy's user name or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).context("the proxy's credentials are not UTF-8")?;
    if text.chars().any(char::is_control) {
        bail!("control characters in the proxy's credentials");
    }
    Ok(text)
}

/// The host of `HOST:PORT` or `[V6]:PORT`, as given.
pub fn host_of(target: &str) -> &str {
    match target.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => target.rsplit_once(':').map_or(target, |(host, _)| host),
    }
}

/// Whether `NO_PROXY`'s list excepts the target `host` (as given) at `ip`
/// (as resolved), as curl reads the list: `*`; an address, or a prefix
/// (`10.0.0.0/8`) that holds `ip`; a name, which matches `host` itself and
/// the names under it (`example.com` and `.example.com` both match
/// `ctl.example.com`), without regard to case. An entry's `:PORT` is
/// ignored.
fn excepted(list: &str, host: &str, ip: IpAddr) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let bare = match entry.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or(rest, |(a, _)| a),
            None => entry,
        };
        if let Ok(net) = bare.parse::<ipnet::IpNet>() {
            return net.contains(&ip);
        }
        if let Ok(addr) = bare.parse::<IpAddr>() {
            return addr == ip;
        }
        // A name, perhaps with a port (one colon: not an IPv6 address).
        let name = match bare.split_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            _ => bare,
        };
        let name = name
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        !name.is_empty()
            && (host == name
                || host
                    .strip_suffix(&name)
                    .is_some_and(|above| above.ends_with('.')))
    })
}

/// Reads the proxy's answer up to the blank line after its headers, a byte
/// at a time, so that nothing of the tunnel after it is taken.
async fn read_answer(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_ANSWER {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("an answer longer than {MAX_ANSWER} bytes"),
            ));
        }
        let byte = stream.read_u8().await?;
        answer.push(byte);
    }
    Ok(answer)
}

/// Whether the answer grants the tunnel (a 2xx status); its status line
/// as the error otherwise.
fn granted(answer: &[u8]) -> anyhow::Result<()> {
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    let mut words = line.split(' ');
    let (version, status) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || status.len() != 3 {
        bail!(
            "not an HTTP answer: {:?}",
            line.chars().take(80).collect::<String>()
        );
    }
    if !status.starts_with('2') {
        bail!(
            "refused: {}",
            line.chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect::<String>()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
