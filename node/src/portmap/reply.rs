//! What a PCP or NAT-PMP reply may say: a usable grant, or why not.

use std::net::SocketAddr;

/// Why a reply was not a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply too short")]
    Short,
    #[error("protocol version {0}")]
    Version(u8),
    #[error("unexpected opcode {0:#x}")]
    Opcode(u8),
    #[error("refused with result code {0}")]
    Refused(u16),
    #[error("reply does not match the request: {0}")]
    Mismatch(&'static str),
}

/// What a reply granted, checked to be usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub external: SocketAddr,
    pub lifetime: u32,
}

impl Granted {
    pub fn new(external: SocketAddr, lifetime: u32) -> Result<Granted, ReplyError> {
        if external.port() == 0 || external.ip().is_unspecified() || lifetime == 0 {
            return Err(ReplyError::Mismatch("no usable mapping granted"));
        }
        Ok(Granted { external, lifetime })
    }
}
