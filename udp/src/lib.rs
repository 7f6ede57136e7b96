//! warren-udp: UDP servers that answer from the address they were asked on.
//!
//! A socket bound to a wildcard address sends with the source address the
//! routing table picks for the reply's destination. On a host whose service
//! address is on loopback, on a secondary interface, a floating IP or a VIP,
//! that is another address than the one the client sent to, and the NAT in
//! front of the client drops the answer as unsolicited. [`ReplySocket`]
//! reads each datagram's destination address (`IP_PKTINFO`,
//! `IPV6_RECVPKTINFO`) and sends the reply with it as the source
//! (`IP_PKTINFO`'s `ipi_spec_dst`, `IPV6_PKTINFO`), through quinn-udp's safe
//! `recvmsg`/`sendmsg`, which does the same for QUIC. A socket bound to one
//! address needs none of this but gets it anyway.
//!
//! Where the platform reports no destination (quinn-udp's fallback outside
//! Linux, Android, the BSDs and macOS), replies go out as from an ordinary
//! socket.
//!
//! # Layout
//! - [`ReplySocket`]: the socket, [`ReplySocket::recv`] and [`ReplySocket::reply`].
//! - [`Received`]: what one read brought (several equal datagrams of one
//!   sender with GRO), and where it was sent to.
//! - [`RECV_BUFFER`]: the buffer one read needs.
#![forbid(unsafe_code)]

#[cfg(feature = "quic-over-tcp")]
pub mod stream;

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// A receive buffer that holds any read: quinn-udp turns on UDP GRO, and
/// the kernel coalesces up to 64 KiB of one sender's equal-sized datagrams
/// into a read. A smaller buffer would truncate such a batch.
pub const RECV_BUFFER: usize = u16::MAX as usize;

/// One read from a [`ReplySocket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Who sent it (v4-mapped on a dual-stack socket, as the kernel says).
    pub source: SocketAddr,
    /// The address it was sent to, which the reply leaves from; `None`
    /// where the platform does not say.
    pub local: Option<IpAddr>,
    len: usize,
    stride: usize,
}

impl Received {
    /// The datagrams of this read in `buf` (the buffer it was read into):
    /// one, or several of one sender that GRO coalesced.
    pub fn datagrams<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let data = buf.get(..self.len).unwrap_or(buf);
        data.chunks(self.stride.max(1))
    }
}

/// A UDP socket whose replies leave from the address each request came in on.
#[derive(Debug)]
pub struct ReplySocket {
    socket: UdpSocket,
    state: quinn_udp::UdpSocketState,
}

impl ReplySocket {
    /// Takes a bound socket, asks the kernel for each datagram's
    /// destination, and registers it with the tokio runtime (so this must
    /// run inside one).
    pub fn new(socket: std::net::UdpSocket) -> io::Result<ReplySocket> {
        socket.set_nonblocking(true)?;
        // Sets IP_PKTINFO (IPv4 sockets) or IPV6_RECVPKTINFO (IPv6 ones,
        // which on a dual-stack socket also covers v4-mapped senders).
        let state = quinn_udp::UdpSocketState::new((&socket).into())?;
        let socket = UdpSocket::from_std(socket)?;
        Ok(ReplySocket { socket, state })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits for the next read into `buf` (see [`RECV_BUFFER`]).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            self.socket.readable().await?;
            let mut meta = [quinn_udp::RecvMeta::default()];
            let read = self.socket.try_io(Interest::READABLE, || {
                let mut bufs = [IoSliceMut::new(buf)];
                self.state.recv((&self.socket).into(), &mut bufs, &mut meta)
            });
            match read {
                Ok(0) => continue,
                Ok(_) => {
                    let [meta] = meta;
                    return Ok(Received {
                        source: meta.addr,
                        local: meta.dst_ip,
                        len: meta.len,
                        stride: meta.stride,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `payload` back to the sender of `request`, from the address
    /// the request was sent to.
    pub async fn reply(&self, request: &Received, payload: &[u8]) -> io::Result<()> {
        self.send(request.source, request.local, payload).await
    }

    /// Sends `payload` to `to`, from `source` when given (an address of
    /// this host), else from what the routing table picks.
    pub async fn send(
        &self,
        to: SocketAddr,
        source: Option<IpAddr>,
        payload: &[u8],
    ) -> io::Result<()> {
        let transmit = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents: payload,
            segment_size: None,
            src_ip: source,
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    /// Echoes every datagram it reads, from the address it was sent to.
    fn spawn_echo(socket: ReplySocket) {
        tokio::spawn(async move {
            let mut buf = vec![0; RECV_BUFFER];
            loop {
                let got = socket.recv(&mut buf).await.unwrap();
                for datagram in got.datagrams(&buf) {
                    socket.reply(&got, datagram).await.unwrap();
                }
            }
        });
    }

    /// Sends `payload` from 127.0.0.1 to `server` and returns who answered.
    async fn ask(server: SocketAddr, payload: &[u8]) -> SocketAddr {
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        client.send_to(payload, server).await.unwrap();
        let mut buf = [0u8; 64];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        assert_eq!(&buf[..len], payload);
        from
    }

    /// The second loopback address: the route back to 127.0.0.1 would pick
    /// 127.0.0.1 as the source, so an answer from 127.0.0.2 shows that the
    /// destination address was used.
    const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

    #[tokio::test]
    async fn an_ipv4_wildcard_socket_answers_from_the_address_asked() {
        let std = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let socket = ReplySocket::new(std).unwrap();
        let port = socket.local_addr().unwrap().port();
        spawn_echo(socket);
        for ip in [SECOND, Ipv4Addr::LOCALHOST] {
            let asked = SocketAddr::from((ip, port));
            assert_eq!(ask(asked, b"who").await, asked);
        }
    }

    #[tokio::test]
    async fn a_dual_stack_socket_answers_ipv4_from_the_address_asked() {
        let Ok(std) = std::net::UdpSocket::bind("[::]:0") else {
            eprintln!("skipped: no IPv6 here");
            return;
        };
        let socket = ReplySocket::new(std).unwrap();
        let port = socket.local_addr().unwrap().port();
        spawn_echo(socket);
        let asked = SocketAddr::from((SECOND, port));
        assert_eq!(ask(asked, b"mapped").await, asked);
    }

    #[tokio::test]
    async fn reports_where_each_datagram_was_sent() {
        let std = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let socket = ReplySocket::new(std).unwrap();
        let port = socket.local_addr().unwrap().port();
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        client.send_to(b"x", (SECOND, port)).await.unwrap();
        let mut buf = vec![0; RECV_BUFFER];
        let got = socket.recv(&mut buf).await.unwrap();
        assert_eq!(got.local, Some(IpAddr::V4(SECOND)));
        assert_eq!(got.source, client.local_addr().unwrap());
        assert_eq!(got.datagrams(&buf).collect::<Vec<_>>(), [b"x".as_slice()]);
    }

    #[test]
    fn splits_a_coalesced_read_by_its_stride() {
        let got = Received {
            source: "127.0.0.1:1".parse().unwrap(),
            local: None,
            len: 10,
            stride: 4,
        };
        let buf = *b"aaaabbbbccXXXX";
        let parts: Vec<&[u8]> = got.datagrams(&buf).collect();
        assert_eq!(parts, [&b"aaaa"[..], b"bbbb", b"cc"]);
    }
}
