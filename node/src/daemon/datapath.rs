//! The hot path: TUN reads become GSO sends, GRO reads become coalesced TUN writes.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::sync::mpsc;
use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN};
use warren_engine::{Engine, NetworkAction, Source, Via};
use warren_proto::{NetworkId, NodePublicKey};

use super::birthday::{Birthdays, Heard};
use crate::platform::tun::Tun;
use crate::platform::udp::{canonical, Udp, MAX_GSO_BYTES};

/// Packets per TUN read batch: a 64 KiB TSO read splits into at most 47 MTU-sized ones.
const TUN_SLOTS: usize = 128;
/// Room in front of each packet written to the TUN for the vnet header.
const TUN_OFFSET: usize = VIRTIO_NET_HDR_LEN;
/// Largest datagram or packet the data path handles.
const MAX_PACKET: usize = 65_535;
/// Extra non-blocking reads after a wake-up, so that single-packet flows batch too.
const DRAIN_ROUNDS: usize = 16;

/// Buffers for reading the TUN, reused for every read.
pub struct TunReader {
    original: Vec<u8>,
    slots: Vec<Vec<u8>>,
    sizes: Vec<usize>,
}

impl TunReader {
    pub fn new(mtu: u16) -> Self {
        let slot = usize::from(mtu).max(1500) + 256;
        Self {
            original: vec![0; VIRTIO_NET_HDR_LEN + MAX_PACKET],
            slots: (0..TUN_SLOTS).map(|_| vec![0; slot]).collect(),
            sizes: vec![0; TUN_SLOTS],
        }
    }

    pub async fn read(&mut self, tun: &Tun) -> std::io::Result<usize> {
        tun.device
            .recv_multiple(&mut self.original, &mut self.slots, &mut self.sizes, 0)
            .await
    }

    pub fn try_read(&mut self, tun: &Tun) -> std::io::Result<usize> {
        tun.device
            .try_recv_multiple(&mut self.original, &mut self.slots, &mut self.sizes, 0)
    }

    /// Packet `i` of the last read, which the engine may rewrite in place.
    pub fn packet_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.slots[i][..self.sizes[i]]
    }
}

/// Datagrams for one destination (from one local address), gathered into one GSO send.
pub struct GsoBatch {
    buf: Vec<u8>,
    to: Option<SocketAddr>,
    /// The local address they leave from (`None`: the routing table picks).
    from: Option<IpAddr>,
    segment: usize,
    count: usize,
    /// A shorter segment ends a GSO send: nothing may follow it.
    closed: bool,
    max_segments: usize,
}

impl GsoBatch {
    pub fn new(max_segments: usize) -> Self {
        Self {
            buf: Vec::with_capacity(MAX_GSO_BYTES),
            to: None,
            from: None,
            segment: 0,
            count: 0,
            closed: false,
            max_segments,
        }
    }

    /// Adds a datagram if it can join this send; false means flush first.
    fn try_push(&mut self, to: SocketAddr, from: Option<IpAddr>, datagram: &[u8]) -> bool {
        if self.count == 0 {
            self.to = Some(to);
            self.from = from;
            self.segment = datagram.len();
        } else if self.to != Some(to)
            || self.from != from
            || self.closed
            || self.count >= self.max_segments
            || datagram.len() > self.segment
            || self.buf.len() + datagram.len() > MAX_GSO_BYTES
        {
            return false;
        } else if datagram.len() < self.segment {
            self.closed = true;
        }
        self.buf.extend_from_slice(datagram);
        self.count += 1;
        true
    }

    pub async fn push(
        &mut self,
        out: Sockets<'_>,
        to: SocketAddr,
        from: Option<IpAddr>,
        datagram: &[u8],
    ) {
        if !self.try_push(to, from, datagram) {
            self.flush(out).await;
            self.try_push(to, from, datagram);
        }
    }

    pub async fn flush(&mut self, out: Sockets<'_>) {
        if let Some(to) = self.to.take() {
            let from = self.from.take();
            if let Err(e) = out.send(to, from, &self.buf, self.segment).await {
                tracing::debug!(error = %e, %to, ?from, "UDP send failed");
            }
        }
        self.buf.clear();
        self.count = 0;
        self.closed = false;
    }
}

/// Where datagrams leave: the main socket, or the extra socket of a
/// birthday try that a peer is reached through ([`Birthdays::route`]).
#[derive(Clone, Copy)]
pub struct Sockets<'a> {
    pub main: &'a Udp,
    pub extra: &'a Birthdays,
}

impl Sockets<'_> {
    /// [`Udp::send`], or one datagram per `segment` bytes on an extra socket.
    pub async fn send(
        &self,
        to: SocketAddr,
        from: Option<IpAddr>,
        contents: &[u8],
        segment: usize,
    ) -> std::io::Result<()> {
        let Some(extra) = self.extra.route(to) else {
            return self.main.send(to, from, contents, segment).await;
        };
        for datagram in contents.chunks(segment.max(1)) {
            extra.send_to(datagram, to).await?;
        }
        Ok(())
    }
}

/// Decrypted packets waiting for one coalescing TUN write.
pub struct TunWriter {
    slots: Vec<Vec<u8>>,
    used: usize,
    gro: GROTable,
}

impl TunWriter {
    pub fn new() -> Self {
        // tun-rs coalesces into a buffer only when its capacity holds twice
        // the offset plus the coalesced length; below that it silently doesn't.
        let capacity = 2 * TUN_OFFSET + MAX_PACKET;
        Self {
            slots: (0..TUN_SLOTS)
                .map(|_| Vec::with_capacity(capacity))
                .collect(),
            used: 0,
            gro: GROTable::new(),
        }
    }

    fn push(&mut self, packet: &[u8]) -> bool {
        let Some(slot) = self.slots.get_mut(self.used) else {
            return false;
        };
        slot.clear();
        slot.resize(TUN_OFFSET, 0);
        slot.extend_from_slice(packet);
        self.used += 1;
        true
    }

    pub async fn flush(&mut self, tun: &Tun) {
        if self.used == 0 {
            return;
        }
        if let Err(e) = tun
            .device
            .send_multiple(&mut self.gro, &mut self.slots[..self.used], TUN_OFFSET)
            .await
        {
            tracing::debug!(error = %e, "TUN write failed");
        }
        self.used = 0;
    }
}

/// Buffers for draining the UDP socket.
pub struct UdpReader {
    bufs: Vec<Vec<u8>>,
    meta: Vec<quinn_udp::RecvMeta>,
}

impl UdpReader {
    pub fn new() -> Self {
        Self {
            bufs: (0..quinn_udp::BATCH_SIZE)
                .map(|_| vec![0; MAX_PACKET])
                .collect(),
            meta: vec![quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE],
        }
    }
}

/// A WireGuard or disco datagram for a peer of a network, to go through the relay.
#[derive(Debug, Clone)]
pub struct RelayOut {
    pub network: NetworkId,
    pub peer: NodePublicKey,
    pub payload: Vec<u8>,
}

/// One network's way into its controller's relay.
#[derive(Debug, Clone)]
pub struct RelayTx {
    pub network: NetworkId,
    pub tx: mpsc::Sender<RelayOut>,
}

/// Where relay-bound packets go: the control connection, while one is up.
pub type RelaySink = Option<RelayTx>;

/// Hands a packet to the relay; a full or absent relay drops it, as a
/// congested link would.
pub fn relay_send(sink: &RelaySink, peer: NodePublicKey, payload: &[u8]) {
    if let Some(sink) = sink {
        let _ = sink.tx.try_send(RelayOut {
            network: sink.network,
            peer,
            payload: payload.to_vec(),
        });
    }
}

/// Whether a datagram of `len` bytes can be decrypted into a buffer of
/// `scratch` bytes: boringtun wants room for the whole ciphertext.
pub fn fits_scratch(len: usize, scratch: usize) -> bool {
    len <= crate::daemon::relay_in::MAX_WIREGUARD_DATAGRAM && len <= scratch
}

/// Everything the hot path needs, borrowed for one wake-up.
pub struct DataPath<'a> {
    pub engine: &'a mut Engine,
    pub tun: &'a Tun,
    pub udp: &'a Udp,
    pub extra: &'a Birthdays,
    pub relay: &'a RelaySink,
    pub scratch: &'a mut [u8],
    pub batch: &'a mut GsoBatch,
    pub writer: &'a mut TunWriter,
}

impl<'a> DataPath<'a> {
    /// Where sends go; copies of the references, not a borrow of `self`.
    fn out(&self) -> Sockets<'a> {
        Sockets {
            main: self.udp,
            extra: self.extra,
        }
    }

    /// Encrypts the packets of one TUN read (and of any reads ready right
    /// after it) and sends them in as few GSO sends as possible.
    pub async fn handle_tun_read(&mut self, reader: &mut TunReader, first: std::io::Result<usize>) {
        let mut result = first;
        for round in 1..=DRAIN_ROUNDS {
            let n = match result {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "TUN read failed");
                    break;
                }
            };
            let now = Instant::now();
            for i in 0..n {
                match self
                    .engine
                    .handle_tun_packet(reader.packet_mut(i), self.scratch, now)
                {
                    Ok(Some(send)) => match send.to {
                        Via::Udp(to) => {
                            self.batch
                                .push(self.out(), to, send.src_ip, &self.scratch[..send.len])
                                .await;
                        }
                        Via::Relay(peer) => relay_send(self.relay, peer, &self.scratch[..send.len]),
                    },
                    Ok(None) => {}
                    Err(e) => tracing::trace!(error = %e, "dropped TUN packet"),
                }
            }
            if round == DRAIN_ROUNDS {
                break;
            }
            // Only read what this round will handle: a read is a packet taken off the device.
            result = reader.try_read(self.tun);
        }
        self.batch.flush(self.out()).await;
        // What the policy denied is answered at once, so applications fail fast.
        let mut rejected = false;
        while let Some(reject) = self.engine.poll_tun_packet() {
            if !self.writer.push(&reject) {
                self.writer.flush(self.tun).await;
                self.writer.push(&reject);
            }
            rejected = true;
        }
        if rejected {
            self.writer.flush(self.tun).await;
        }
    }

    /// Drains the UDP socket: decrypts every datagram and writes the packets
    /// to the TUN in coalescing batches.
    pub async fn handle_udp_readable(&mut self, reader: &mut UdpReader) {
        for _ in 0..DRAIN_ROUNDS {
            let received = self.udp.socket.try_io(tokio::io::Interest::READABLE, || {
                let mut slices: Vec<IoSliceMut<'_>> =
                    reader.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                self.udp
                    .state
                    .recv((&self.udp.socket).into(), &mut slices, &mut reader.meta)
            });
            let n = match received {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    break;
                }
            };
            let now = Instant::now();
            for (meta, buf) in reader.meta.iter().zip(&reader.bufs).take(n) {
                let from = canonical(meta.addr);
                // Where it was sent to: a reply leaves from there (IP_PKTINFO).
                let local = meta.dst_ip;
                if meta.len == 0 {
                    // An empty datagram is still input, to be counted and refused.
                    self.handle_datagram(Source::Udp(from), local, &[], now)
                        .await;
                    continue;
                }
                let stride = meta.stride.max(1);
                for datagram in buf[..meta.len].chunks(stride) {
                    self.handle_datagram(Source::Udp(from), local, datagram, now)
                        .await;
                }
            }
        }
        self.writer.flush(self.tun).await;
    }

    /// Handles a datagram the relay brought, and writes what it gave to the TUN.
    pub async fn handle_relay_packet(&mut self, from: NodePublicKey, datagram: &[u8]) {
        if !fits_scratch(datagram.len(), self.scratch.len()) {
            // The relay queue refuses these already; never let one reach boringtun.
            tracing::debug!(
                len = datagram.len(),
                "relayed datagram larger than the decrypt buffer"
            );
            return;
        }
        self.handle_datagram(Source::Relay(from), None, datagram, Instant::now())
            .await;
        self.writer.flush(self.tun).await;
    }

    /// `local`: the address a UDP datagram was sent to, which a direct
    /// reply to it (a handshake response here, a pong through the engine's
    /// transmits) leaves from, so that a host with several addresses
    /// answers from the one its peer used.
    async fn handle_datagram(
        &mut self,
        source: Source,
        local: Option<IpAddr>,
        datagram: &[u8],
        now: Instant,
    ) -> bool {
        let result = match source {
            Source::Udp(from) => {
                self.engine
                    .handle_network_packet(from, local, datagram, self.scratch, now)
            }
            Source::Relay(from) => {
                self.engine
                    .handle_relay_packet(from, datagram, self.scratch, now)
            }
        };
        let accepted = result.is_ok();
        match result {
            Ok(NetworkAction::Tunnel { len }) => {
                if !self.writer.push(&self.scratch[..len]) {
                    self.writer.flush(self.tun).await;
                    self.writer.push(&self.scratch[..len]);
                }
            }
            Ok(NetworkAction::Reply {
                to: Via::Udp(to),
                len,
            }) => {
                let reply = &self.scratch[..len];
                if let Err(e) = self.out().send(to, local, reply, len).await {
                    tracing::debug!(error = %e, %to, ?local, "UDP reply failed");
                }
            }
            Ok(NetworkAction::Reply {
                to: Via::Relay(peer),
                len,
            }) => {
                relay_send(self.relay, peer, &self.scratch[..len]);
            }
            Ok(NetworkAction::Nothing) => {}
            Err(e) => tracing::debug!(error = %e, ?source, "dropped datagram"),
        }
        accepted
    }

    /// Handles a datagram an extra socket of a birthday try heard; true if
    /// the engine took it (then replies to its sender go out through that
    /// socket, [`Birthdays::heard`]).
    pub async fn handle_extra(&mut self, heard: &Heard) -> bool {
        let from = Source::Udp(heard.from);
        let accepted = self
            .handle_datagram(from, None, &heard.datagram, Instant::now())
            .await;
        self.writer.flush(self.tun).await;
        accepted
    }
}
