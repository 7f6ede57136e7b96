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

/// What the QUIC socket asks the kernel to buffer each way. A change
/// pushed to thousands of nodes comes back as thousands of ACKs at once,
/// and a join storm as thousands of handshakes: far more than the
/// kernel's default buffer (208 KiB) holds, and what overflows is lost and
/// sent again. At 3,000 nodes on one host those losses cost whole
/// connections their idle timeout.
pub const QUIC_BUFFER_BYTES: usize = 8 << 20;

/// Asks for `bytes` of receive and of send buffer on `socket`, and says
/// what the kernel granted: it caps the request at `net.core.rmem_max`
/// and `wmem_max` (a host setting the controller leaves alone), and
/// reports twice what it keeps for data.
pub fn widen_buffers(socket: &UdpSocket, bytes: usize) {
    let socket = socket2::SockRef::from(socket);
    let asked = (
        socket.set_recv_buffer_size(bytes),
        socket.set_send_buffer_size(bytes),
    );
    let (receive, send) = (socket.recv_buffer_size(), socket.send_buffer_size());
    match (asked, receive, send) {
        ((Ok(()), Ok(())), Ok(receive), Ok(send)) if receive >= bytes && send >= bytes => {
            tracing::debug!(receive, send, "QUIC socket buffers");
        }
        (_, receive, send) => tracing::warn!(
            receive = receive.unwrap_or(0),
            send = send.unwrap_or(0),
            wanted = bytes,
            "the QUIC socket's buffers are smaller than wanted: with thousands of nodes, \
             bursts overflow them and connections can time out; raise the sysctls \
             net.core.rmem_max and net.core.wmem_max to {}",
            bytes / 2
        ),
    }
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
