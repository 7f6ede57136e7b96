//! The one UDP socket all peers share, with GSO on send and GRO on receive.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::sockopt;

/// Kernel buffers of 8 MiB each way: measured here to remove drops at multi-gigabit rates.
const BUFFER_BYTES: usize = 8 << 20;
/// One GSO send must fit in 64 KiB: 44 segments of a full 1452-byte WireGuard packet.
pub const MAX_GSO_BYTES: usize = 65_000;

pub struct Udp {
    pub socket: UdpSocket,
    pub state: quinn_udp::UdpSocketState,
    dual_stack: bool,
}

impl Udp {
    /// Binds `[::]:port` for both families, or `0.0.0.0:port` where IPv6 is off.
    pub fn bind(port: u16) -> anyhow::Result<Self> {
        let (socket, dual_stack) = match bind_dual_stack(port) {
            Ok(s) => (s, true),
            Err(e) => {
                tracing::info!(error = %e, "no IPv6 socket; listening on IPv4 only");
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
                    .context("creating UDP socket")?;
                s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
                    .with_context(|| format!("binding UDP port {port}"))?;
                (s, false)
            }
        };
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if sockopt::force_buffer(&socket, force, BUFFER_BYTES).is_err() {
                let _ = sockopt::force_buffer(&socket, plain, BUFFER_BYTES);
            }
        }
        // Policy routing keeps marked packets off the tunnel (`crate::routes`).
        crate::routes::mark_socket(&socket);
        socket
            .set_nonblocking(true)
            .context("making UDP socket non-blocking")?;
        let std_socket: std::net::UdpSocket = socket.into();
        let state = quinn_udp::UdpSocketState::new((&std_socket).into())
            .context("setting up UDP offloads")?;
        // After quinn-udp, which sets DF on every datagram: a full tunnel
        // packet must cross a narrower hop fragmented, as kernel WireGuard
        // lets it, not vanish there (TCP through the mesh would hang).
        if let Err(e) = sockopt::allow_fragments_v4(&std_socket) {
            tracing::warn!(error = %e, "IPv4 tunnel packets keep DF: a narrower path would drop full-size ones");
        }
        if dual_stack {
            if let Err(e) = sockopt::allow_fragments_v6(&std_socket) {
                tracing::warn!(error = %e, "IPv6 tunnel packets are never fragmented: a narrower path would drop full-size ones");
            }
        }
        let socket = UdpSocket::from_std(std_socket).context("registering UDP socket")?;
        Ok(Self {
            socket,
            state,
            dual_stack,
        })
    }

    pub fn local_port(&self) -> u16 {
        self.socket.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// How many equal segments one send may carry here (1 without GSO).
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().clamp(1, 44)
    }

    /// Sends `contents` to `to`, as GSO segments of `segment` bytes when
    /// `segment` is shorter than the contents. Waits while the socket is full.
    pub async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: usize,
    ) -> std::io::Result<()> {
        self.send_from(to, None, contents, segment).await
    }

    /// [`Udp::send`] from `source` (an address of this host, where the
    /// datagram being answered was sent), else from the address the
    /// routing table picks.
    pub async fn send_from(
        &self,
        to: SocketAddr,
        source: Option<IpAddr>,
        contents: &[u8],
        segment: usize,
    ) -> std::io::Result<()> {
        let destination = self.to_socket_family(to);
        let src_ip = source.map(|ip| match ip {
            // A v4-mapped destination takes a v4-mapped source.
            IpAddr::V4(v4) if destination.is_ipv6() => IpAddr::V6(v4.to_ipv6_mapped()),
            other => other,
        });
        let transmit = |contents, segment_size| quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip,
        };
        let whole = (segment < contents.len()).then_some(segment);
        match self.send_transmit(&transmit(contents, whole)).await {
            // The host's own MTU toward `to` (its interface, or a path
            // MTU it learned) is below one segment: the kernel refuses
            // GSO sends there but fragments single datagrams.
            Err(e) if whole.is_some() && refused_for_size(&e) => {
                tracing::trace!(%to, error = %e, "GSO send refused: sending the segments one by one");
                for one in contents.chunks(segment) {
                    self.send_transmit(&transmit(one, None)).await?;
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Sends one transmit, waiting while the socket is full.
    async fn send_transmit(&self, transmit: &quinn_udp::Transmit<'_>) -> std::io::Result<()> {
        loop {
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), transmit)
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.socket.writable().await?;
                }
                other => return other,
            }
        }
    }

    /// A dual-stack socket takes IPv4 peers as v4-mapped IPv6 addresses.
    fn to_socket_family(&self, addr: SocketAddr) -> SocketAddr {
        match addr {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            other => other,
        }
    }
}

/// Whether the kernel refused a GSO send because a segment is larger
/// than it sends toward that destination in one piece. (Only EMSGSIZE:
/// quinn-udp takes EINVAL and EIO as GSO not working at all and turns it
/// off for the socket.)
fn refused_for_size(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMSGSIZE)
}

/// Undoes v4-mapping so that peers see one form of each address.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

fn bind_dual_stack(port: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(false)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::IoSliceMut;
    use std::time::Duration;

    /// quinn-udp sets DF on every datagram; the tunnel socket takes it off
    /// for IPv4 so that a narrower hop fragments full-size packets.
    #[tokio::test]
    async fn ipv4_tunnel_packets_may_be_fragmented_on_the_way() {
        let udp = Udp::bind(0).unwrap();
        assert_eq!(
            sockopt::mtu_discover_v4(&udp.socket).unwrap(),
            libc::IP_PMTUDISC_OMIT
        );
    }

    /// 127.0.0.2 is not the address the route back to 127.0.0.1 picks: a
    /// reply from it shows the source came from the datagram answered.
    #[tokio::test]
    async fn a_reply_leaves_from_the_address_the_datagram_was_sent_to() {
        let udp = Udp::bind(0).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let asked = SocketAddr::from(([127, 0, 0, 2], udp.local_port()));
        client.send_to(b"ping", asked).await.unwrap();
        let mut buf = vec![0u8; u16::MAX as usize];
        let mut meta = [quinn_udp::RecvMeta::default()];
        loop {
            udp.socket.readable().await.unwrap();
            let read = udp.socket.try_io(Interest::READABLE, || {
                let mut bufs = [IoSliceMut::new(&mut buf)];
                udp.state.recv((&udp.socket).into(), &mut bufs, &mut meta)
            });
            if matches!(read, Ok(n) if n > 0) {
                break;
            }
        }
        let from = canonical(meta[0].addr);
        assert_eq!(from, client.local_addr().unwrap());
        udp.send_from(from, meta[0].dst_ip, b"pong", 4)
            .await
            .unwrap();
        let mut answer = [0u8; 16];
        let (len, source) =
            tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut answer))
                .await
                .expect("a reply within 5 s")
                .unwrap();
        assert_eq!((&answer[..len], source), (&b"pong"[..], asked));
    }
}
