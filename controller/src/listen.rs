//! Binding listening sockets, with the IPv4 fallback that only built-in
//! default addresses get.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("could not bind {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `addr`. With `fallback_v4`, an IPv6 wildcard address that cannot
/// be bound (no IPv6 on the host) is retried as `0.0.0.0` on the same port.
pub fn bind_udp(addr: SocketAddr, fallback_v4: bool) -> Result<UdpSocket, BindError> {
    bind_with(addr, fallback_v4, UdpSocket::bind)
}

/// [`bind_udp`] for a TCP listener (non-blocking, for tokio).
pub fn bind_tcp(addr: SocketAddr, fallback_v4: bool) -> Result<TcpListener, BindError> {
    let listener = bind_with(addr, fallback_v4, TcpListener::bind)?;
    listener
        .set_nonblocking(true)
        .map_err(|source| BindError { addr, source })?;
    Ok(listener)
}

fn bind_with<S>(
    addr: SocketAddr,
    fallback_v4: bool,
    bind: impl Fn(SocketAddr) -> std::io::Result<S>,
) -> Result<S, BindError> {
    match bind(addr) {
        Ok(socket) => Ok(socket),
        Err(e) if fallback_v4 && addr.is_ipv6() && addr.ip().is_unspecified() => {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port());
            tracing::info!(%addr, error = %e, fallback = %v4, "no IPv6; listening on IPv4 only");
            bind(v4).map_err(|source| BindError { addr: v4, source })
        }
        Err(source) => Err(BindError { addr, source }),
    }
}
