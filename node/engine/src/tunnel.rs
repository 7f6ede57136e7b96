//! The one adapter around boringtun's `Tunn`: the only code that trusts its clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use warren_proto::{NodePrivateKey, NodePublicKey};

/// What one call into a session produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionOutput {
    /// Nothing to do.
    Done,
    /// `len` bytes at the start of the output buffer go to the peer.
    Network(usize),
    /// `len` bytes at the start of the output buffer are an IP packet from `source`.
    Tunnel { len: usize, source: IpAddr },
}

/// One WireGuard session with one peer. boringtun reads its own clock
/// (`Instant::now()`, or `mock_instant` under the `mock-time` feature); every
/// other part of the engine takes time as an argument.
pub(crate) struct Session {
    tunn: Tunn,
}

/// Smallest output buffer boringtun accepts for any call (a handshake
/// initiation is 148 bytes); data packets need their length plus 32.
pub const MIN_OUTPUT_BUFFER: usize = 148;
/// What WireGuard adds to every data packet.
pub const DATA_OVERHEAD: usize = 32;

impl Session {
    pub(crate) fn new(
        own: &NodePrivateKey,
        peer: &NodePublicKey,
        keepalive: Option<Duration>,
        index: u32,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        let keepalive = keepalive.map(|d| u16::try_from(d.as_secs()).unwrap_or(u16::MAX));
        Self {
            tunn: Tunn::new(
                own.as_secret().clone(),
                peer.to_x25519(),
                None,
                keepalive,
                index,
                Some(limiter),
            ),
        }
    }

    /// Encrypts `packet` into `out`. `out` must hold `packet.len() + 32` and at least 148 bytes;
    /// the caller checks, because boringtun panics otherwise.
    pub(crate) fn encapsulate(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<SessionOutput, WireGuardError> {
        debug_assert!(out.len() >= (packet.len() + DATA_OVERHEAD).max(MIN_OUTPUT_BUFFER));
        convert(self.tunn.encapsulate(packet, out))
    }

    pub(crate) fn decapsulate(
        &mut self,
        source: IpAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<SessionOutput, WireGuardError> {
        convert(self.tunn.decapsulate(Some(source), datagram, out))
    }

    /// Takes the next packet queued while the handshake was under way.
    pub(crate) fn next_queued(&mut self, out: &mut [u8]) -> Result<SessionOutput, WireGuardError> {
        convert(self.tunn.decapsulate(None, &[], out))
    }

    pub(crate) fn update_timers(
        &mut self,
        out: &mut [u8],
    ) -> Result<SessionOutput, WireGuardError> {
        convert(self.tunn.update_timers(out))
    }

    pub(crate) fn time_since_last_handshake(&self) -> Option<Duration> {
        self.tunn.time_since_last_handshake()
    }
}

fn convert(result: TunnResult<'_>) -> Result<SessionOutput, WireGuardError> {
    match result {
        TunnResult::Done => Ok(SessionOutput::Done),
        TunnResult::Err(e) => Err(e),
        TunnResult::WriteToNetwork(buf) => Ok(SessionOutput::Network(buf.len())),
        TunnResult::WriteToTunnelV4(buf, source) => Ok(SessionOutput::Tunnel {
            len: buf.len(),
            source: source.into(),
        }),
        TunnResult::WriteToTunnelV6(buf, source) => Ok(SessionOutput::Tunnel {
            len: buf.len(),
            source: source.into(),
        }),
    }
}
