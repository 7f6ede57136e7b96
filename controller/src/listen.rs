//! Binding UDP listening sockets, with the IPv4 fallback that only
//! built-in default addresses get.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

/// A UDP address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("could not bind {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `addr`. With `fallback_v4`, an IPv6 wildcard address that cannot
/// be bound (no IPv6 on the host) is retried as `0.0.0.0` on the same port.
pub fn bind_udp(addr: SocketAddr, fallback_v4: bool) -> Result<UdpSocket, BindError> {
    match UdpSocket::bind(addr) {
        Ok(socket) => Ok(socket),
        Err(e) if fallback_v4 && addr.is_ipv6() && addr.ip().is_unspecified() => {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port());
            tracing::info!(%addr, error = %e, fallback = %v4, "no IPv6; listening on IPv4 only");
            UdpSocket::bind(v4).map_err(|source| BindError { addr: v4, source })
        }
        Err(source) => Err(BindError { addr, source }),
    }
}
