//! Invite codes: everything `warren join` needs in one line (the
//! controller's addresses, its certificate fingerprint, the network ID and
//! optionally a pre-auth key), checksummed so that a typo is an error.
//!
//! ```text
//! wj1_ + Crockford base32 (lowercase out; any case in; i, l -> 1, o -> 0) of
//!   u8        format version (1)
//!   [u8; 8]   network ID
//!   [u8; 32]  SHA-256 of the controller's certificate
//!   u8        number of addresses, 1..=8, then each:
//!               1 [u8; 4] port    IPv4
//!               2 [u8; 16] port   IPv6
//!               3 len name port   a host name (1..=253 bytes: letters, digits, '.', '-')
//!   u8        pre-auth key: 0 none | 1 [u8; 32] (`wk_` + base64url of them)
//!                                  | 2 len text (1..=255 bytes of printable ASCII)
//!   u32 LE    CRC-32 (ISO-HDLC) of everything before it
//! ```
//! Ports are big-endian u16, never 0. A base32 character carries 5 bits,
//! so one mistyped character is an error burst of at most 16 bits of the
//! CRC's reflected bit order, and CRC-32 detects every burst up to 32 bits:
//! any one-character typo, and any swap of two neighbours, fails the check.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::NetworkId;

/// What every invite code of this format starts with.
pub const PREFIX: &str = "wj1_";
/// The most controller addresses one code carries.
pub const MAX_ADDRESSES: usize = 8;
/// Longer text is not decoded at all (the longest valid code is about 3,500
/// characters; real ones are 90 to 150).
const MAX_CODE_CHARS: usize = 4096;
const VERSION: u8 = 1;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
/// The prefix of the controller's pre-auth keys, which travel as raw bytes.
const KEY_PREFIX: &str = "wk_";

/// Crockford's base32: no I, L, O or U; read in any case, with I and L as
/// 1 and O as 0, as people copy them.
static BASE32: LazyLock<data_encoding::Encoding> = LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("0123456789abcdefghjkmnpqrstvwxyz");
    spec.translate.from.push_str("ABCDEFGHJKMNPQRSTVWXYZIiLlOo");
    spec.translate.to.push_str("abcdefghjkmnpqrstvwxyz111100");
    // The specification is a constant that data-encoding accepts.
    #[allow(clippy::expect_used)]
    spec.encoding().expect("a valid base32 specification")
});

/// Why text is not a usable invite code, or an invite cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("{got:?} is not an invite code: invite codes start with {PREFIX}")]
    NotACode { got: String },
    #[error(
        "this invite code ({prefix}...) is of a newer format than this warren reads: update warren"
    )]
    NewerFormat { prefix: String },
    #[error("an invite code cannot contain {got:?} (character {position}): check for a typo")]
    BadCharacter { got: char, position: usize },
    #[error(
        "invite code checksum does not match: check for a typo, or for a part lost in copying"
    )]
    Checksum,
    #[error("the invite code is too long to be one (more than {MAX_CODE_CHARS} characters)")]
    TooLong,
    #[error("the invite code is malformed: {0}")]
    Malformed(&'static str),
    #[error("an invite carries 1 to {MAX_ADDRESSES} controller addresses, not {0}")]
    AddressCount(usize),
    #[error("{0:?} is not a controller address: HOST:PORT, with a port from 1 to 65535")]
    BadAddress(String),
    #[error("a pre-auth key in an invite is 1 to 255 printable characters without spaces")]
    BadKey,
}

/// A controller's QUIC address as an agent dials it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerAddress {
    Ip(SocketAddr),
    Host { name: String, port: u16 },
}

impl ControllerAddress {
    /// Whether an agent can dial it: not `0.0.0.0` or `[::]`, nor port 0.
    pub fn is_dialable(&self) -> bool {
        match self {
            Self::Ip(addr) => !addr.ip().is_unspecified() && addr.port() != 0,
            Self::Host { port, .. } => *port != 0,
        }
    }
}

impl fmt::Display for ControllerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(addr) => write!(f, "{addr}"),
            Self::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

impl FromStr for ControllerAddress {
    type Err = InviteError;

    fn from_str(text: &str) -> Result<Self, InviteError> {
        let bad = || InviteError::BadAddress(text.chars().take(300).collect());
        let address = if let Ok(addr) = text.parse::<SocketAddr>() {
            Self::Ip(addr)
        } else {
            let (name, port) = text.rsplit_once(':').ok_or_else(bad)?;
            let port = port.parse::<u16>().map_err(|_| bad())?;
            if !host_name_ok(name.as_bytes()) {
                return Err(bad());
            }
            Self::Host {
                name: name.to_ascii_lowercase(),
                port,
            }
        };
        if address.port() == 0 {
            return Err(bad());
        }
        Ok(address)
    }
}

impl ControllerAddress {
    fn port(&self) -> u16 {
        match self {
            Self::Ip(addr) => addr.port(),
            Self::Host { port, .. } => *port,
        }
    }
}

/// A host name as an invite may carry it: 1 to 253 letters, digits, dots
/// and hyphens, starting with a letter or digit.
fn host_name_ok(name: &[u8]) -> bool {
    (1..=253).contains(&name.len())
        && name[0].is_ascii_alphanumeric()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
}

/// A key as an invite may carry it: printable ASCII, no spaces.
fn key_text_ok(key: &[u8]) -> bool {
    (1..=255).contains(&key.len()) && key.iter().all(|b| b.is_ascii_graphic())
}

/// What an invite code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub network_id: NetworkId,
    /// SHA-256 of the controller's certificate.
    pub fingerprint: [u8; 32],
    /// Where the controller (each of its replicas) listens for agents, in
    /// the order to try them.
    pub controllers: Vec<ControllerAddress>,
    /// A pre-auth key: join without waiting for approval.
    pub preauth_key: Option<String>,
}

impl Invite {
    /// The fingerprint as the rest of Warren writes it: 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// The code: [`PREFIX`] and lowercase base32.
    pub fn encode(&self) -> Result<String, InviteError> {
        let count = self.controllers.len();
        if !(1..=MAX_ADDRESSES).contains(&count) {
            return Err(InviteError::AddressCount(count));
        }
        let mut out = vec![VERSION];
        out.extend_from_slice(self.network_id.as_bytes());
        out.extend_from_slice(&self.fingerprint);
        out.push(count as u8);
        for address in &self.controllers {
            let bad = || InviteError::BadAddress(address.to_string());
            match address {
                ControllerAddress::Ip(SocketAddr::V4(a)) => {
                    out.push(1);
                    out.extend_from_slice(&a.ip().octets());
                }
                ControllerAddress::Ip(SocketAddr::V6(a)) => {
                    out.push(2);
                    out.extend_from_slice(&a.ip().octets());
                }
                ControllerAddress::Host { name, .. } => {
                    if !host_name_ok(name.as_bytes()) {
                        return Err(bad());
                    }
                    out.push(3);
                    out.push(name.len() as u8);
                    out.extend_from_slice(name.as_bytes());
                }
            }
            if address.port() == 0 {
                return Err(bad());
            }
            out.extend_from_slice(&address.port().to_be_bytes());
        }
        match &self.preauth_key {
            None => out.push(0),
            Some(key) => match compact_key(key) {
                Some(raw) => {
                    out.push(1);
                    out.extend_from_slice(&raw);
                }
                None if key_text_ok(key.as_bytes()) => {
                    out.push(2);
                    out.push(key.len() as u8);
                    out.extend_from_slice(key.as_bytes());
                }
                None => return Err(InviteError::BadKey),
            },
        }
        let crc = CRC32.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(format!("{PREFIX}{}", BASE32.encode(&out)))
    }

    /// Reads a code as people paste it: surrounding spaces are ignored,
    /// and so is the case of letters.
    pub fn decode(text: &str) -> Result<Self, InviteError> {
        let text = text.trim();
        if text.len() > MAX_CODE_CHARS {
            return Err(InviteError::TooLong);
        }
        let body = strip_prefix(text)?;
        let offset = PREFIX.len();
        let bytes = BASE32.decode(body.as_bytes()).map_err(|e| match e.kind {
            data_encoding::DecodeKind::Symbol => InviteError::BadCharacter {
                got: body
                    .get(e.position..)
                    .and_then(|rest| rest.chars().next())
                    .unwrap_or('?'),
                position: body
                    .get(..e.position)
                    .map_or(e.position, |before| before.chars().count())
                    + offset
                    + 1,
            },
            // Too few or too many characters, or a last character whose
            // spare bits are not zero: a copy gone wrong either way.
            _ => InviteError::Checksum,
        })?;
        let Some(split) = bytes.len().checked_sub(4) else {
            return Err(InviteError::Checksum);
        };
        let (payload, crc) = bytes.split_at(split);
        let crc: [u8; 4] = crc.try_into().map_err(|_| InviteError::Checksum)?;
        if CRC32.checksum(payload) != u32::from_le_bytes(crc) {
            return Err(InviteError::Checksum);
        }
        parse_payload(payload)
    }
}

impl fmt::Display for Invite {
    /// The code, or `<invalid invite: ...>` for one that cannot be encoded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.encode() {
            Ok(code) => f.write_str(&code),
            Err(e) => write!(f, "<invalid invite: {e}>"),
        }
    }
}

impl FromStr for Invite {
    type Err = InviteError;

    fn from_str(text: &str) -> Result<Self, InviteError> {
        Self::decode(text)
    }
}

/// The base32 after `wj1_` (in any case); a `wjN_` of another version is
/// a newer format, anything else is not a code.
fn strip_prefix(text: &str) -> Result<&str, InviteError> {
    let head = text.get(..PREFIX.len()).unwrap_or("");
    if head.eq_ignore_ascii_case(PREFIX) {
        return Ok(&text[PREFIX.len()..]);
    }
    let lower = text.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("wj") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits) == Some(&b'_') {
            return Err(InviteError::NewerFormat {
                prefix: format!("wj{}_", &rest[..digits.min(6)]),
            });
        }
    }
    Err(InviteError::NotACode {
        got: text.chars().take(40).collect(),
    })
}

/// `wk_` and the base64url of 32 bytes (as the controller makes them): the 32 bytes.
fn compact_key(key: &str) -> Option<[u8; 32]> {
    let raw = URL_SAFE_NO_PAD.decode(key.strip_prefix(KEY_PREFIX)?).ok()?;
    let raw: [u8; 32] = raw.try_into().ok()?;
    // Only a canonical encoding comes back as the same text.
    (format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)) == key).then_some(raw)
}

/// Reads the fields of a payload whose checksum held.
fn parse_payload(payload: &[u8]) -> Result<Invite, InviteError> {
    let mut r = Reader(payload);
    match r.u8()? {
        VERSION => {}
        _ => return Err(InviteError::Malformed("unknown payload version")),
    }
    let network_id = NetworkId::from_bytes(r.array()?);
    let fingerprint = r.array::<32>()?;
    let count = usize::from(r.u8()?);
    if !(1..=MAX_ADDRESSES).contains(&count) {
        return Err(InviteError::Malformed("the number of controller addresses"));
    }
    let mut controllers = Vec::with_capacity(count);
    for _ in 0..count {
        let address = match r.u8()? {
            1 => ControllerAddress::Ip(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                r.port()?,
            )),
            2 => ControllerAddress::Ip(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                r.port()?,
            )),
            3 => {
                let len = usize::from(r.u8()?);
                let name = r.take(len)?;
                if !host_name_ok(name) {
                    return Err(InviteError::Malformed("a controller host name"));
                }
                ControllerAddress::Host {
                    name: String::from_utf8_lossy(name).to_ascii_lowercase(),
                    port: r.port()?,
                }
            }
            _ => return Err(InviteError::Malformed("an unknown kind of address")),
        };
        controllers.push(address);
    }
    let preauth_key = match r.u8()? {
        0 => None,
        1 => Some(format!(
            "{KEY_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(r.array::<32>()?)
        )),
        2 => {
            let len = usize::from(r.u8()?);
            let key = r.take(len)?;
            if !key_text_ok(key) {
                return Err(InviteError::Malformed("the pre-auth key"));
            }
            Some(String::from_utf8_lossy(key).into_owned())
        }
        _ => return Err(InviteError::Malformed("an unknown kind of pre-auth key")),
    };
    if !r.0.is_empty() {
        return Err(InviteError::Malformed("bytes after the last field"));
    }
    Ok(Invite {
        network_id,
        fingerprint,
        controllers,
        preauth_key,
    })
}

/// Reads fields off the front of a payload; running out is an error.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InviteError> {
        if self.0.len() < n {
            return Err(InviteError::Malformed("it ends in the middle of a field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, InviteError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], InviteError> {
        self.take(N)?
            .try_into()
            .map_err(|_| InviteError::Malformed("it ends in the middle of a field"))
    }

    fn port(&mut self) -> Result<u16, InviteError> {
        match u16::from_be_bytes(self.array()?) {
            0 => Err(InviteError::Malformed("a controller port of 0")),
            port => Ok(port),
        }
    }
}

#[cfg(test)]
#[path = "invite_tests.rs"]
mod tests;
