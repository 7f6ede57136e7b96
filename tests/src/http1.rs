//! A minimal HTTP/1.1 client over a std `TcpStream` opened inside a lab
//! namespace: one request per connection, for WebDriver and the OpenID
//! provider's endpoints.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::in_netns;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest response body accepted (page sources can be large).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// One request. `Host` is the target address: the OpenID provider answers
/// discovery for the host it was asked by, so callers use the issuer's
/// exact address.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    /// How long the whole reply may take to arrive.
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn new(method: &'a str, path: &'a str, timeout: Duration) -> Request<'a> {
        Request {
            method,
            path,
            headers: Vec::new(),
            body: Vec::new(),
            timeout,
        }
    }

    /// A JSON body with its content type.
    pub fn json(mut self, value: &serde_json::Value) -> Request<'a> {
        self.headers
            .push(("Content-Type", "application/json; charset=utf-8".into()));
        self.body = value.to_string().into_bytes();
        self
    }

    /// An `application/x-www-form-urlencoded` body.
    pub fn form(mut self, fields: &[(&str, &str)]) -> Request<'a> {
        self.headers
            .push(("Content-Type", "application/x-www-form-urlencoded".into()));
        self.body = form_encode(fields).into_bytes();
        self
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Request<'a> {
        self.headers.push((name, value.into()));
        self
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self, what: &str) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| LabError::Output {
            what: what.to_owned(),
            detail: format!(
                "HTTP {} with a body that is not JSON ({e}): {}",
                self.status,
                {
                    let text = self.text();
                    text.chars().take(500).collect::<String>()
                }
            ),
        })
    }
}

/// Sends `req` to `addr` from inside namespace `netns` and reads the reply.
pub fn send(netns: &str, addr: SocketAddr, req: &Request<'_>) -> Result<Response> {
    let what = format!("{} http://{addr}{}", req.method, req.path);
    let stream = in_netns::run(netns, || TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT))?
        .map_err(|e| LabError::io(format!("connecting for {what}"), e))?;
    exchange(stream, addr, req).map_err(|e| LabError::io(what, e))
}

fn exchange(
    mut stream: TcpStream,
    addr: SocketAddr,
    req: &Request<'_>,
) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(req.timeout))?;
    stream.set_write_timeout(Some(req.timeout))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\nContent-Length: {}\r\n",
        req.method,
        req.path,
        req.body.len()
    );
    for (name, value) in &req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&req.body)?;
    stream.flush()?;
    read_response(BufReader::new(stream))
}

fn invalid(detail: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, detail.into())
}

fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(invalid("connection closed inside the response head"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_response(mut reader: impl BufRead) -> std::io::Result<Response> {
    let status_line = read_line(&mut reader)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        response.body = read_chunked(&mut reader)?;
    } else if let Some(len) = response.header("Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(invalid(format!("body of {len} bytes is too large")));
        }
        response.body = vec![0; len];
        reader.read_exact(&mut response.body)?;
    } else {
        reader
            .take(MAX_BODY as u64)
            .read_to_end(&mut response.body)?;
    }
    Ok(response)
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("chunked body is too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?;
    }
}

/// `application/x-www-form-urlencoded` (also right for a query string).
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` component.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The `name=value` pairs of a URL's query (empty if it has none).
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_length_chunked_and_closing_bodies() -> std::io::Result<()> {
        let r =
            read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloextra"[..])?;
        assert_eq!(
            (r.status, r.text().as_str(), r.header("x")),
            (200, "hello", Some("y"))
        );
        let r = read_response(
            &b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"[..],
        )?;
        assert_eq!((r.status, r.text().as_str()), (404, "abcde"));
        let r = read_response(&b"HTTP/1.0 500 Oops\r\n\r\nto the end"[..])?;
        assert_eq!((r.status, r.text().as_str()), (500, "to the end"));
        assert!(read_response(&b"HTTP/1.1 200 OK\r\nContent-"[..]).is_err());
        Ok(())
    }

    #[test]
    fn encodes_and_decodes_queries() {
        let q = form_encode(&[
            ("redirect_uri", "http://a:1/cb?x=1"),
            ("scope", "openid email"),
        ]);
        assert_eq!(
            q,
            "redirect_uri=http%3A%2F%2Fa%3A1%2Fcb%3Fx%3D1&scope=openid%20email"
        );
        let pairs = query_pairs(&format!("http://h/p?{q}&e=a+b%zz&last%"));
        assert_eq!(
            pairs[0],
            ("redirect_uri".into(), "http://a:1/cb?x=1".into())
        );
        assert_eq!(pairs[1], ("scope".into(), "openid email".into()));
        assert_eq!(pairs[2], ("e".into(), "a b%zz".into()));
        assert_eq!(pairs[3], ("last%".into(), String::new()));
    }
}
