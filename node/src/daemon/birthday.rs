//! The data plane's side of birthday probing (`warren_engine::birthday`):
//! the extra sockets a fan-out sends from, the way back out through the
//! one that heard a peer, and paced sprays from the main socket.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use warren_engine::birthday::SPRAY_RANGE;

use crate::platform::udp::Udp;

/// Extra sockets a fan-out sends from: each is a public port of its own
/// behind a NAT that maps per destination.
pub const FANOUT_SOCKETS: usize = 256;
/// Extra sockets that heard nothing close this long after the last fan-out.
const KEEP_UNUSED: Duration = Duration::from_secs(30);
/// One that carried a path closes once silent this long (the path's
/// pings and keepalives come every few seconds).
const KEEP_SILENT: Duration = Duration::from_secs(120);
/// Extra sockets are looked over for closing this often while any are open.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// A spray goes out this many datagrams at a time...
const SPRAY_BATCH: usize = 64;
/// ...this far apart: 1,024 ports take 0.4 s.
const SPRAY_TICK: Duration = Duration::from_millis(25);
/// The extra socket routing a peer keeps the route while it heard that
/// peer this recently: as long as a direct path lasts with nothing heard.
const ROUTE_HOLD: Duration = warren_engine::path::PATH_TIMEOUT;
/// Remote addresses routed through extra sockets, at most.
const MAX_ROUTES: usize = 1024;
/// What an extra socket reads at most: they carry no offloaded batches,
/// so one WireGuard message of the largest MTU a netmap may set (9,000)
/// plus its 32 bytes, with room to spare.
const EXTRA_DATAGRAM: usize = 9216;
/// Datagrams heard on extra sockets waiting for the data plane; past it
/// they are dropped, as a congested link would.
const HEARD_QUEUE: usize = 1024;

/// A datagram an extra socket heard.
#[derive(Debug)]
pub struct Heard {
    pub socket: usize,
    pub from: SocketAddr,
    pub datagram: Vec<u8>,
}

struct Extra {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
    last_heard: Option<Instant>,
}

impl Drop for Extra {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Spray {
    ip: IpAddr,
    ports: Vec<u16>,
    payload: Vec<u8>,
}

/// One data plane's extra sockets and pending sprays.
pub struct Birthdays {
    extra: Vec<Option<Extra>>,
    heard: mpsc::Sender<Heard>,
    /// Remote address -> the extra socket that last heard it.
    routes: HashMap<SocketAddr, usize>,
    last_fan_out: Option<Instant>,
    /// When to look for extra sockets to close, while any are open.
    next_trim: Option<Instant>,
    sprays: VecDeque<Spray>,
    next_spray: Option<Instant>,
}

impl Birthdays {
    /// The state, and where what the extra sockets hear arrives.
    pub fn new() -> (Self, mpsc::Receiver<Heard>) {
        let (heard, rx) = mpsc::channel(HEARD_QUEUE);
        let state = Self {
            extra: Vec::new(),
            heard,
            routes: HashMap::new(),
            last_fan_out: None,
            next_trim: None,
            sprays: VecDeque::new(),
            next_spray: None,
        };
        (state, rx)
    }

    /// Sends `payload` to `to` from every extra socket, opening them first.
    pub async fn fan_out(&mut self, to: SocketAddr, payload: &[u8], now: Instant) {
        self.open(now);
        self.last_fan_out = Some(now);
        let mut sent = 0usize;
        for extra in self.extra.iter().flatten() {
            match extra.socket.send_to(payload, to).await {
                Ok(_) => sent += 1,
                Err(e) => tracing::trace!(error = %e, %to, "fan-out datagram not sent"),
            }
        }
        tracing::debug!(%to, sockets = sent, "birthday fan-out");
    }

    /// Queues `payload` for `count` distinct random ports of `ip`, sent
    /// from the main socket in paced batches ([`Self::handle_timeout`]).
    pub fn spray(&mut self, ip: IpAddr, count: u16, payload: Vec<u8>, now: Instant) {
        let span = u32::from(SPRAY_RANGE.end() - SPRAY_RANGE.start()) + 1;
        let wanted = usize::from(count).min(span as usize);
        let mut ports = BTreeSet::new();
        while ports.len() < wanted {
            let offset = u16::try_from(OsRng.next_u32() % span).unwrap_or(0);
            ports.insert(SPRAY_RANGE.start().saturating_add(offset));
        }
        let mut ports: Vec<u16> = ports.into_iter().collect();
        // In a random order, so that a cut-short spray is still a fair draw.
        for i in (1..ports.len()).rev() {
            let j = OsRng.next_u32() as usize % (i + 1);
            ports.swap(i, j);
        }
        tracing::debug!(%ip, ports = ports.len(), "birthday spray");
        self.sprays.push_back(Spray { ip, ports, payload });
        self.next_spray.get_or_insert(now);
    }

    /// The extra socket to send to `to` from: the one that heard it last.
    pub fn route(&self, to: SocketAddr) -> Option<&UdpSocket> {
        if self.routes.is_empty() {
            return None;
        }
        let index = *self.routes.get(&to)?;
        self.extra
            .get(index)
            .and_then(Option::as_ref)
            .map(|e| &*e.socket)
    }

    /// An extra socket heard an authentic datagram from `from`: what goes
    /// back to `from` leaves through it, the only way through the peer's
    /// filter and our NAT's mapping.
    ///
    /// A spray usually gets through to several extra sockets, a moment
    /// apart. The first to hear the peer keeps the route while it hears it
    /// (within [`ROUTE_HOLD`]): the peer took the address of our first
    /// answer as the path, and checks it with pings whose pongs must come
    /// from there. Moving to the latest socket sent them from another port,
    /// which the peer rightly refused, and the path fell back to the relay.
    pub fn heard(&mut self, socket: usize, from: SocketAddr, now: Instant) {
        let routed = self.routes.get(&from).copied();
        let held = routed.is_some_and(|index| {
            index != socket
                && self
                    .extra
                    .get(index)
                    .and_then(Option::as_ref)
                    .and_then(|e| e.last_heard)
                    .is_some_and(|t| now.saturating_duration_since(t) < ROUTE_HOLD)
        });
        let Some(Some(extra)) = self.extra.get_mut(socket) else {
            return;
        };
        extra.last_heard = Some(now);
        if held {
            return;
        }
        if self.routes.len() < MAX_ROUTES || routed.is_some() {
            self.routes.insert(from, socket);
        }
    }

    /// When [`Self::handle_timeout`] is next due. Asked on every wake-up
    /// of the data plane, so it only reads two fields.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_spray, self.next_trim]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends the next batch of a spray, and closes extra sockets that are
    /// no longer wanted.
    pub async fn handle_timeout(&mut self, main: &Udp, now: Instant) {
        if self.next_spray.is_some_and(|t| now >= t) {
            self.spray_batch(main).await;
            self.next_spray = (!self.sprays.is_empty()).then(|| now + SPRAY_TICK);
        }
        if self.next_trim.is_some_and(|t| now >= t) {
            self.trim(now);
        }
    }

    async fn spray_batch(&mut self, main: &Udp) {
        let Some(spray) = self.sprays.front_mut() else {
            return;
        };
        let cut = spray.ports.len().saturating_sub(SPRAY_BATCH);
        for port in spray.ports.split_off(cut) {
            let to = SocketAddr::new(spray.ip, port);
            if let Err(e) = main
                .send(to, None, &spray.payload, spray.payload.len())
                .await
            {
                tracing::trace!(error = %e, %to, "spray datagram not sent");
            }
        }
        if spray.ports.is_empty() {
            self.sprays.pop_front();
        }
    }

    fn trim(&mut self, now: Instant) {
        let fan_out_over = self
            .last_fan_out
            .is_none_or(|t| now.saturating_duration_since(t) >= KEEP_UNUSED);
        for slot in &mut self.extra {
            let keep = slot.as_ref().is_some_and(|e| match e.last_heard {
                None => !fan_out_over,
                Some(heard) => now.saturating_duration_since(heard) < KEEP_SILENT,
            });
            if !keep {
                *slot = None;
            }
        }
        let extra = &self.extra;
        self.routes
            .retain(|_, i| extra.get(*i).is_some_and(Option::is_some));
        if self.extra.iter().all(Option::is_none) {
            self.extra.clear();
            self.last_fan_out = None;
        }
        self.next_trim = (!self.extra.is_empty()).then(|| now + TRIM_EVERY);
    }

    /// Opens extra sockets up to [`FANOUT_SOCKETS`], keeping those open.
    fn open(&mut self, now: Instant) {
        let open = self.extra.iter().flatten().count();
        if open >= FANOUT_SOCKETS {
            return;
        }
        // A closed slot is free again: [`Self::trim`] dropped the routes
        // through it, so an index in `routes` names the socket it heard.
        for _ in open..FANOUT_SOCKETS {
            match bind_extra() {
                Ok(socket) => {
                    let index = self
                        .extra
                        .iter()
                        .position(Option::is_none)
                        .unwrap_or(self.extra.len());
                    let socket = Arc::new(socket);
                    let reader =
                        tokio::spawn(read_extra(index, Arc::clone(&socket), self.heard.clone()));
                    let extra = Extra {
                        socket,
                        reader,
                        last_heard: None,
                    };
                    match self.extra.get_mut(index) {
                        Some(slot) => *slot = Some(extra),
                        None => self.extra.push(Some(extra)),
                    }
                }
                Err(e) => {
                    // Out of descriptors, say: the try goes with fewer.
                    tracing::warn!(error = %e, "cannot open more birthday sockets");
                    break;
                }
            }
        }
        self.next_trim.get_or_insert(now + TRIM_EVERY);
    }
}

/// An extra socket on an ephemeral port: marked like the main one, so that
/// policy routing keeps it off the tunnels (an exit node's default route),
/// and never on a port a network may listen on later.
fn bind_extra() -> std::io::Result<UdpSocket> {
    let socket = crate::routes::marked_udp_socket(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

async fn read_extra(index: usize, socket: Arc<UdpSocket>, heard: mpsc::Sender<Heard>) {
    let mut buf = vec![0u8; EXTRA_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => {
                let datagram = buf[..len].to_vec();
                let message = Heard {
                    socket: index,
                    from: crate::platform::udp::canonical(from),
                    datagram,
                };
                if let Err(mpsc::error::TrySendError::Closed(_)) = heard.try_send(message) {
                    return;
                }
            }
            Err(e) => {
                // An ICMP error from an earlier send, typically: not the socket's end.
                tracing::trace!(error = %e, "birthday socket read failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fan_out_goes_from_many_ports_and_what_one_hears_routes_back_through_it() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        let (mut b, mut heard) = Birthdays::new();
        let now = Instant::now();
        b.fan_out(to, b"ping", now).await;
        let mut sources = BTreeSet::new();
        let mut buf = [0u8; 16];
        while sources.len() < FANOUT_SOCKETS {
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("only {} of the extra sockets sent", sources.len()))
                .unwrap();
            assert_eq!(&buf[..n], b"ping");
            sources.insert(from.port());
        }
        // The peer answers one of them: it arrives tagged with its socket.
        let hit = SocketAddr::from(([127, 0, 0, 1], *sources.iter().nth(17).unwrap()));
        peer.send_to(b"pong", hit).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.from, &got.datagram[..]), (to, &b"pong"[..]));
        assert!(b.route(to).is_none(), "no route before the engine took it");
        b.heard(got.socket, got.from, now);
        let out = b.route(to).unwrap();
        assert_eq!(out.local_addr().unwrap().port(), hit.port());
        // The unused close after a while; the one in use stays.
        b.trim(now + KEEP_UNUSED);
        assert_eq!(b.extra.iter().flatten().count(), 1);
        assert!(b.route(to).is_some());
        // A later try fills the free slots again, and keeps the route.
        b.fan_out(to, b"again", now + KEEP_UNUSED).await;
        assert_eq!(b.extra.len(), FANOUT_SOCKETS);
        assert_eq!(b.extra.iter().flatten().count(), FANOUT_SOCKETS);
        let out = b.route(to).unwrap();
        assert_eq!(out.local_addr().unwrap().port(), hit.port());
        b.trim(now + KEEP_SILENT);
        assert!(b.route(to).is_none());
        assert!(b.extra.is_empty());
    }

    #[tokio::test]
    async fn the_first_socket_to_hear_a_peer_keeps_its_route_while_it_hears_it() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        let (mut b, _heard) = Birthdays::new();
        let now = Instant::now();
        b.fan_out(to, b"ping", now).await;
        let port = |b: &Birthdays| b.route(to).unwrap().local_addr().unwrap().port();
        let first = |i: usize| {
            b.extra[i]
                .as_ref()
                .unwrap()
                .socket
                .local_addr()
                .unwrap()
                .port()
        };
        let (one, two) = (first(3), first(9));
        // A spray got through to two sockets a moment apart: the first keeps it.
        b.heard(3, to, now);
        b.heard(9, to, now + Duration::from_millis(40));
        assert_eq!(port(&b), one);
        // Still heard on it: still its route, whatever else hears the peer.
        b.heard(3, to, now + Duration::from_secs(10));
        b.heard(9, to, now + Duration::from_secs(20));
        assert_eq!(port(&b), one);
        // Silent past the hold: the socket that hears the peer now takes it.
        b.heard(9, to, now + Duration::from_secs(10) + ROUTE_HOLD);
        assert_eq!(port(&b), two);
    }

    #[tokio::test]
    async fn a_spray_draws_distinct_ports_and_is_due_at_once() {
        let (mut b, _heard) = Birthdays::new();
        let now = Instant::now();
        b.spray(IpAddr::from([192, 0, 2, 1]), 1024, b"x".to_vec(), now);
        let spray = b.sprays.front().unwrap();
        let distinct: BTreeSet<u16> = spray.ports.iter().copied().collect();
        assert_eq!(distinct.len(), 1024);
        assert!(distinct.iter().all(|p| SPRAY_RANGE.contains(p)));
        assert_eq!(b.poll_timeout(), Some(now));
    }
}
