//! The one UDP socket all peers share, with GSO on send and GRO on receive.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::sockopt;

mod gso_refusals;

use gso_refusals::GsoRefusals;

/// Kernel buffers of 8 MiB each way: measured here to remove drops at multi-gigabit rates.
const BUFFER_BYTES: usize = 8 << 20;
/// One GSO send must fit in 64 KiB: 44 segments of a full 1452-byte WireGuard packet.
pub const MAX_GSO_BYTES: usize = 65_000;

pub struct Udp {
    pub socket: UdpSocket,
    pub state: quinn_udp::UdpSocketState,
    dual_stack: bool,
    /// Routes whose MTU is below a segment, which get no GSO sends for a while.
    gso_refusals: Mutex<GsoRefusals>,
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
            gso_refusals: Mutex::default(),
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
    ///
    /// `source` is an address of this host to send from (where the peer
    /// reaches us, or where the datagram being answered was sent); `None`
    /// leaves it to the routing table. If the host cannot send from there
    /// (the address went away: a laptop that moved), the datagrams leave
    /// from the address the route picks, as before the peer was heard there.
    pub async fn send(
        &self,
        to: SocketAddr,
        source: Option<IpAddr>,
        contents: &[u8],
        segment: usize,
    ) -> std::io::Result<()> {
        if source.is_none() {
            return self.send_on_route(to, None, contents, segment).await;
        }
        match self.send_on_route(to, source, contents, segment).await {
            Err(e) => {
                tracing::debug!(error = %e, %to, ?source, "cannot send from the address the peer reached; the route picks");
                self.send_on_route(to, None, contents, segment).await
            }
            Ok(()) => Ok(()),
        }
    }

    /// [`Udp::send`] from `source` alone. Where the host's own MTU toward
    /// `to` (its interface, or a path MTU it learned) is below one segment,
    /// the kernel refuses GSO sends (`EMSGSIZE`) but fragments single
    /// datagrams: the segments go one by one, and keep doing so on that
    /// route for [`REFUSAL_HOLDS`](gso_refusals::REFUSAL_HOLDS) without a refused send each time.
    async fn send_on_route(
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
        if segment == 0 || segment >= contents.len() {
            return self.send_transmit(&transmit(contents, None)).await;
        }
        let route = (to.ip(), source);
        if !self.refusals().refuses(route, Instant::now()) {
            match self.send_transmit(&transmit(contents, Some(segment))).await {
                Err(e) if refused_for_size(&e) => {
                    tracing::debug!(%to, ?source, error = %e, "GSO send refused: sending segments one by one on this route for a while");
                    self.refusals().remember(route, Instant::now());
                }
                // quinn-udp took it for GSO not working here and turned GSO
                // off for the socket (`max_segments` is 1 from now on): this
                // batch still goes, one segment at a time.
                Err(e) if gso_broken(&e) => {
                    tracing::info!(%to, ?source, error = %e, "GSO send failed: segmentation offload off for this socket");
                }
                other => return other,
            }
        }
        for one in contents.chunks(segment) {
            self.send_transmit(&transmit(one, None)).await?;
        }
        Ok(())
    }

    /// The GSO refusals, never held across an await.
    fn refusals(&self) -> std::sync::MutexGuard<'_, GsoRefusals> {
        // Nothing panics while holding it; a poisoned table is still a table.
        self.gso_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Whether a GSO send failed the way a device without working
/// segmentation offload fails it (EIO, or EINVAL), which quinn-udp answers
/// by sending without GSO from then on.
fn gso_broken(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
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

    /// Only a failure that means GSO does not work sends a batch again one
    /// segment at a time; a full socket or an unreachable peer does not.
    #[test]
    fn only_eio_and_einval_mean_gso_is_broken() {
        let os = std::io::Error::from_raw_os_error;
        assert!(gso_broken(&os(libc::EIO)) && gso_broken(&os(libc::EINVAL)));
        for other in [libc::EMSGSIZE, libc::EAGAIN, libc::ENETUNREACH, libc::EPERM] {
            assert!(!gso_broken(&os(other)), "{other}");
        }
        assert!(refused_for_size(&os(libc::EMSGSIZE)) && !refused_for_size(&os(libc::EIO)));
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
        udp.send(from, meta[0].dst_ip, b"pong", 4).await.unwrap();
        let mut answer = [0u8; 16];
        let (len, source) =
            tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut answer))
                .await
                .expect("a reply within 5 s")
                .unwrap();
        assert_eq!((&answer[..len], source), (&b"pong"[..], asked));
    }

    /// 192.0.2.99 is no address of this host (a remembered one that went
    /// away): the datagram still leaves, from the address the route picks.
    #[tokio::test]
    async fn a_send_from_an_address_this_host_lacks_leaves_by_the_route() {
        let udp = Udp::bind(0).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        let gone = Some(IpAddr::from([192, 0, 2, 99]));
        assert!(udp.send_on_route(to, gone, b"ping", 4).await.is_err());
        udp.send(to, gone, b"ping", 4).await.unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("a datagram within 5 s")
            .unwrap();
        let expected = SocketAddr::from(([127, 0, 0, 1], udp.local_port()));
        assert_eq!((&buf[..len], from), (&b"ping"[..], expected));
    }

    /// An IPv6 MTU of 1280 on the socket stands for a narrow uplink: the
    /// kernel refuses a GSO send of 1400-byte segments there but fragments
    /// single datagrams. Every segment arrives, and the route is
    /// remembered, so later batches skip the refused send.
    #[tokio::test]
    async fn a_batch_the_route_refuses_as_gso_arrives_segment_by_segment() {
        let udp = Udp::bind(0).unwrap();
        if udp.max_segments() < 2 {
            eprintln!("skipped: no UDP GSO on this host");
            return;
        }
        let Ok(peer) = UdpSocket::bind("[::1]:0").await else {
            eprintln!("skipped: no IPv6 loopback on this host");
            return;
        };
        sockopt::set_mtu_v6(&udp.socket, 1280).unwrap();
        let to = peer.local_addr().unwrap();
        let segments: Vec<Vec<u8>> = (1..=3u8).map(|i| vec![i; 1400]).collect();
        let route = (to.ip(), None);
        for round in 0..2 {
            udp.send(to, None, &segments.concat(), 1400).await.unwrap();
            assert!(
                udp.refusals().refuses(route, Instant::now()),
                "round {round}"
            );
            let mut buf = vec![0u8; 4096];
            for expected in &segments {
                let (len, _) =
                    tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
                        .await
                        .expect("every segment within 5 s")
                        .unwrap();
                assert_eq!(&buf[..len], &expected[..], "round {round}");
            }
        }
        // The same batch with room for a segment goes out as one GSO send.
        let wide = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = wide.local_addr().unwrap();
        udp.send(to, None, &segments.concat(), 1400).await.unwrap();
        assert!(!udp.refusals().refuses((to.ip(), None), Instant::now()));
    }
}
