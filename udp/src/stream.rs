//! QUIC over TCP, for networks that block UDP.
//!
//! [`StreamSocket`] is a [`quinn::AsyncUdpSocket`] whose datagrams travel
//! over TCP connections (or TLS on them: [`Wrap`]), each datagram one
//! frame: a two-byte big-endian length, then the datagram. QUIC keeps its own encryption, handshake,
//! streams and loss recovery on top, so the control protocol and the relay
//! run unchanged over it. A QUIC endpoint on a [`StreamSocket`] sees each
//! TCP connection's remote address as the remote of its QUIC connection.
//!
//! TCP gives what UDP would not: ordered, reliable delivery under QUIC's own
//! retransmissions. That costs latency under loss (head-of-line blocking),
//! which is why it is only the fallback.
//!
//! Sends never block: a datagram for a connection whose queue is full, or
//! for an address with no connection, is dropped, as a full UDP link drops
//! it, and QUIC's congestion control slows down.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Datagrams queued for one connection before further ones are dropped.
const SEND_QUEUE: usize = 512;
/// Datagrams received, from every connection, before readers wait.
const RECV_QUEUE: usize = 1024;

/// A byte stream datagrams travel on: a TCP connection, or TLS on one.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// The future of a [`Wrap`].
pub type Wrapping = Pin<Box<dyn Future<Output = io::Result<Box<dyn ByteStream>>> + Send>>;

/// What a listener does with each TCP connection before datagrams flow on
/// it (a TLS handshake); an error closes the connection.
pub type Wrap = Arc<dyn Fn(TcpStream) -> Wrapping + Send + Sync>;

/// Connections a listener may be wrapping at once, and how long each may take.
const WRAPS_IN_FLIGHT: usize = 256;
const WRAP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listening [`StreamSocket`] admits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// TCP connections at once, from everyone.
    pub max_connections: usize,
    /// TCP connections at once from one IP address.
    pub max_per_ip: usize,
    /// A connection that brings no datagram for this long is closed (QUIC
    /// keep-alives come far more often).
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            max_per_ip: 64,
            idle: Duration::from_secs(60),
        }
    }
}

/// Datagrams over TCP connections: one to a server ([`StreamSocket::client`])
/// or every one a listener accepts ([`StreamSocket::listen`]).
pub struct StreamSocket {
    local: SocketAddr,
    shared: Arc<Shared>,
    inbound: Mutex<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
    /// Readers, writers and the accept loop; aborted with the socket.
    tasks: Mutex<JoinSet<()>>,
}

struct Shared {
    /// Each connection's send queue, by its remote address.
    peers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    inbound: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    limits: Limits,
}

impl Shared {
    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSocket")
            .field("local", &self.local)
            .field("connections", &self.connections())
            .finish()
    }
}

impl StreamSocket {
    fn new(local: SocketAddr, limits: Limits) -> StreamSocket {
        let (inbound_tx, inbound) = mpsc::channel(RECV_QUEUE);
        StreamSocket {
            local,
            shared: Arc::new(Shared {
                peers: Mutex::new(HashMap::new()),
                inbound: inbound_tx,
                limits,
            }),
            inbound: Mutex::new(inbound),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A socket whose one peer is `stream`'s remote end: a QUIC client
    /// connects to that address through it. The connection is never
    /// closed for idleness; QUIC's own idle timeout ends it.
    pub fn client(stream: TcpStream) -> io::Result<Arc<StreamSocket>> {
        let local = stream.local_addr()?;
        let remote = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        Ok(StreamSocket::client_over(stream, local, remote))
    }

    /// [`StreamSocket::client`] over any byte stream (TLS on a TCP
    /// connection from `local` to `remote`).
    pub fn client_over(
        stream: impl ByteStream,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Arc<StreamSocket> {
        let limits = Limits {
            max_connections: 1,
            max_per_ip: 1,
            idle: Duration::MAX,
        };
        let socket = StreamSocket::new(local, limits);
        {
            let mut tasks = socket.tasks();
            tasks.spawn(run(Arc::clone(&socket.shared), stream, remote));
        }
        Arc::new(socket)
    }

    /// A socket that takes every connection `listener` accepts, within
    /// `limits`, each `wrap`ped first if given: a QUIC server endpoint on
    /// it answers each.
    pub fn listen(
        listener: TcpListener,
        limits: Limits,
        wrap: Option<Wrap>,
    ) -> io::Result<Arc<StreamSocket>> {
        let socket = StreamSocket::new(listener.local_addr()?, limits);
        let shared = Arc::clone(&socket.shared);
        socket.tasks().spawn(accept(listener, shared, wrap));
        Ok(Arc::new(socket))
    }

    /// TCP connections open now.
    pub fn connections(&self) -> usize {
        self.shared.peers().len()
    }
}

/// Accepts connections until the listener fails; each runs until it ends.
async fn accept(listener: TcpListener, shared: Arc<Shared>, wrap: Option<Wrap>) {
    let mut connections = JoinSet::new();
    let wrapping = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if let Err(refusal) = admit(&shared, remote) {
                        tracing::debug!(%remote, refusal, "TCP connection refused");
                        continue; // Dropping it closes it.
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%remote, error = %e, "TCP_NODELAY");
                    }
                    let shared = Arc::clone(&shared);
                    let Some(wrap) = &wrap else {
                        connections.spawn(run(shared, stream, remote));
                        continue;
                    };
                    if wrapping.load(Ordering::Relaxed) >= WRAPS_IN_FLIGHT {
                        tracing::debug!(%remote, "TCP connection refused: too many handshakes");
                        continue;
                    }
                    let (wrap, wrapping) = (Arc::clone(wrap), Arc::clone(&wrapping));
                    wrapping.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(async move {
                        let wrapped = tokio::time::timeout(WRAP_TIMEOUT, wrap(stream)).await;
                        wrapping.fetch_sub(1, Ordering::Relaxed);
                        match wrapped {
                            Ok(Ok(stream)) => run(shared, stream, remote).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "TCP connection's handshake failed")
                            }
                            Err(_) => tracing::debug!(%remote, "TCP connection's handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

fn admit(shared: &Shared, remote: SocketAddr) -> Result<(), &'static str> {
    let peers = shared.peers();
    if peers.len() >= shared.limits.max_connections {
        return Err("too many connections");
    }
    let ip = remote.ip().to_canonical();
    if peers.keys().filter(|a| a.ip().to_canonical() == ip).count() >= shared.limits.max_per_ip {
        return Err("too many connections from this address");
    }
    Ok(())
}

/// Makes `remote` a peer (sends to it are queued from now on) and returns
/// the future that carries its datagrams on `stream` until its reader or
/// writer ends; then it is forgotten.
fn run(
    shared: Arc<Shared>,
    stream: impl ByteStream,
    remote: SocketAddr,
) -> impl Future<Output = ()> + Send {
    let (queue_tx, queue) = mpsc::channel(SEND_QUEUE);
    shared.peers().insert(remote, queue_tx.clone());
    carry(shared, stream, remote, queue_tx, queue)
}

async fn carry(
    shared: Arc<Shared>,
    stream: impl ByteStream,
    remote: SocketAddr,
    queue_tx: mpsc::Sender<Vec<u8>>,
    queue: mpsc::Receiver<Vec<u8>>,
) {
    let (read, write) = tokio::io::split(stream);
    tokio::select! {
        result = read_frames(read, remote, &shared) => {
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "TCP datagram stream ended");
            }
        }
        result = write_frames(write, queue) => {
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "TCP datagram stream write failed");
            }
        }
    }
    let mut peers = shared.peers();
    // A new connection from the same address may have taken the slot.
    if peers
        .get(&remote)
        .is_some_and(|q| q.same_channel(&queue_tx))
    {
        peers.remove(&remote);
    }
}

async fn read_frames(
    mut read: impl AsyncRead + Unpin,
    remote: SocketAddr,
    shared: &Shared,
) -> io::Result<()> {
    let idle = shared.limits.idle;
    loop {
        let mut prefix = [0u8; 2];
        match tokio::time::timeout(idle, read.read_exact(&mut prefix)).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "idle")),
        };
        let len = usize::from(u16::from_be_bytes(prefix));
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty frame"));
        }
        let mut datagram = vec![0u8; len];
        read.read_exact(&mut datagram).await?;
        if shared.inbound.send((remote, datagram)).await.is_err() {
            return Ok(()); // The socket is gone.
        }
    }
}

async fn write_frames(
    write: impl AsyncWrite + Unpin,
    mut queue: mpsc::Receiver<Vec<u8>>,
) -> io::Result<()> {
    let mut write = BufWriter::new(write);
    while let Some(datagram) = queue.recv().await {
        frame(&mut write, &datagram).await?;
        // Whatever else is queued goes out in the same flush.
        while let Ok(more) = queue.try_recv() {
            frame(&mut write, &more).await?;
        }
        write.flush().await?;
    }
    Ok(())
}

async fn frame(write: &mut (impl AsyncWrite + Unpin), datagram: &[u8]) -> io::Result<()> {
    let Ok(len) = u16::try_from(datagram.len()) else {
        return Ok(()); // Larger than a UDP datagram could be: dropped.
    };
    if len == 0 {
        return Ok(());
    }
    write.write_all(&len.to_be_bytes()).await?;
    write.write_all(datagram).await
}

impl AsyncUdpSocket for StreamSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let queue = self.shared.peers().get(&transmit.destination).cloned();
        let Some(queue) = queue else {
            return Ok(()); // No connection to that address: lost.
        };
        let size = match transmit.segment_size {
            Some(size) if size > 0 => size,
            _ => transmit.contents.len().max(1),
        };
        for datagram in transmit.contents.chunks(size) {
            // A full queue drops it, as a full link would.
            let _ = queue.try_send(datagram.to_vec());
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbound = self.inbound.lock().unwrap_or_else(PoisonError::into_inner);
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let next = if filled == 0 {
                match inbound.poll_recv(cx) {
                    Poll::Ready(Some(next)) => next,
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)))
                    }
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                match inbound.try_recv() {
                    Ok(next) => next,
                    Err(_) => break,
                }
            };
            let (from, datagram) = next;
            let Some(buf) = bufs.get_mut(filled) else {
                break;
            };
            if datagram.len() > buf.len() {
                continue; // Cannot happen with quinn's buffers; dropped.
            }
            buf[..datagram.len()].copy_from_slice(&datagram);
            if let Some(m) = meta.get_mut(filled) {
                *m = RecvMeta {
                    addr: from,
                    len: datagram.len(),
                    stride: datagram.len(),
                    ecn: None,
                    dst_ip: None,
                };
            }
            filled += 1;
        }
        if filled == 0 {
            // Every datagram taken was too large; look again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(filled))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

/// Sends never wait: a full queue drops instead.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
