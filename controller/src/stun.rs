//! The STUN server: answers RFC 5389 binding requests on plain UDP with the
//! address each request came from, so a node learns how its NAT maps its
//! data-plane socket. Nothing else on these ports is ever answered, and
//! answers are rate-limited per source prefix: a spoofed flood cannot turn
//! the server into a reflector aimed at someone else's network.
//!
//! Each answer leaves from the address its request was sent to
//! ([`ReplySocket`]): on a multi-homed host or one whose public address is
//! on loopback, an answer from the address the route back picks would be
//! dropped by the NAT in front of the node.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use warren_proto::stun::answer;
use warren_udp::{Received, ReplySocket, RECV_BUFFER};

use crate::control::admission::Buckets;
use crate::listen::{bind_udp, BindError};
use crate::metrics::Metrics;

/// Answers per source prefix (IPv4 /24, IPv6 /48) and port: a burst, then
/// this many a second. A node sends a few requests every half minute; a
/// whole office behind one /24 stays well inside.
const ANSWER_BURST: f64 = 256.0;
const ANSWER_RATE: f64 = 64.0;

/// The prefix a source's answers count against.
fn source_prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into()),
    }
}

/// Whether a request from `source` may be answered now.
pub struct AnswerLimit(Buckets<IpAddr>);

impl Default for AnswerLimit {
    fn default() -> Self {
        Self(Buckets::new(ANSWER_BURST, ANSWER_RATE))
    }
}

impl AnswerLimit {
    pub fn allow(&mut self, source: SocketAddr, now: Instant) -> bool {
        self.0.take(source_prefix(source.ip()), now)
    }
}

/// Binds every STUN address. `fallback_v4` is for the built-in defaults:
/// an unbindable `[::]` becomes `0.0.0.0`.
pub fn bind(addrs: &[SocketAddr], fallback_v4: bool) -> Result<Vec<ReplySocket>, BindError> {
    addrs
        .iter()
        .map(|&addr| {
            let socket = bind_udp(addr, fallback_v4)?;
            ReplySocket::new(socket).map_err(|source| BindError { addr, source })
        })
        .collect()
}

/// Answers binding requests on `socket` until the task is aborted.
pub async fn serve(socket: ReplySocket, metrics: Arc<Metrics>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut limit = AnswerLimit::default();
    loop {
        let got = match socket.recv(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // Errors on an unconnected UDP socket are transient (ICMP
                // reports, buffer pressure); never stop serving for them.
                tracing::debug!(error = %e, "STUN receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // One sender's requests, several when GRO coalesced them.
        for datagram in got.datagrams(&buf) {
            answer_one(&socket, &got, datagram, &mut limit, &metrics).await;
        }
    }
}

async fn answer_one(
    socket: &ReplySocket,
    request: &Received,
    datagram: &[u8],
    limit: &mut AnswerLimit,
    metrics: &Metrics,
) {
    let source = request.source;
    let Some(response) = answer(datagram, source) else {
        metrics.stun_ignored.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(%source, len = datagram.len(), "ignored a datagram on the STUN port");
        return;
    };
    if !limit.allow(source, Instant::now()) {
        metrics.stun_limited.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(%source, "STUN answer over its prefix's rate");
        return;
    }
    metrics.stun_requests.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = socket.reply(request, &response).await {
        tracing::debug!(%source, local = ?request.local, error = %e, "STUN response not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::stun;

    #[test]
    fn answers_binding_requests_with_the_source() {
        let tx = [9u8; 12];
        let request = stun::binding_request(&tx);
        for source in ["198.51.100.7:40000", "[2001:db8::1]:51820"] {
            let source: SocketAddr = source.parse().unwrap();
            let response = answer(&request, source).unwrap();
            assert_eq!(stun::parse_response(&response).unwrap(), (tx, source));
        }
    }

    #[test]
    fn reports_ipv4_clients_of_a_dual_stack_socket_as_ipv4() {
        let tx = [1u8; 12];
        let mapped: SocketAddr = "[::ffff:203.0.113.5]:3000".parse().unwrap();
        let response = answer(&stun::binding_request(&tx), mapped).unwrap();
        let (_, seen) = stun::parse_response(&response).unwrap();
        assert_eq!(seen, "203.0.113.5:3000".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn answers_are_limited_per_source_prefix() {
        let mut limit = AnswerLimit::default();
        let now = Instant::now();
        let mut answered = 0;
        for port in 1..=1000u16 {
            // Many hosts of one /24, as a spoofed flood would use.
            let host = (port % 250) as u8 + 1;
            let source = SocketAddr::from(([198, 51, 100, host], port));
            answered += u32::from(limit.allow(source, now));
        }
        assert_eq!(answered, ANSWER_BURST as u32);
        assert!(limit.allow("198.51.101.1:1".parse().unwrap(), now));
        assert!(limit.allow("[2001:db8:1::1]:1".parse().unwrap(), now));
        let later = now + std::time::Duration::from_secs(1);
        assert!(limit.allow("198.51.100.9:9".parse().unwrap(), later));
    }

    /// 127.0.0.2 is not the address the route back to 127.0.0.1 picks:
    /// an answer from it shows the server answers from the address asked.
    #[tokio::test]
    async fn a_wildcard_server_answers_from_the_address_asked() {
        let wildcard: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let [socket] = <[ReplySocket; 1]>::try_from(bind(&[wildcard], false).unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let server = tokio::spawn(serve(socket, Arc::new(Metrics::default())));
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let asked = SocketAddr::from(([127, 0, 0, 2], port));
        let tx = [7u8; 12];
        client
            .send_to(&stun::binding_request(&tx), asked)
            .await
            .unwrap();
        let mut buf = [0u8; 128];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("a STUN answer within 5 s")
            .unwrap();
        server.abort();
        assert_eq!(from, asked);
        let (got_tx, seen) = stun::parse_response(&buf[..len]).unwrap();
        assert_eq!((got_tx, seen), (tx, client.local_addr().unwrap()));
    }

    #[test]
    fn never_answers_anything_else() {
        let source: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let tx = [2u8; 12];
        // A response (reflecting one would make us a loop), garbage, a
        // truncated request, WireGuard's handshake type.
        let response = stun::binding_response(&tx, source);
        assert!(answer(&response, source).is_none());
        let request = stun::binding_request(&tx);
        assert!(answer(&request[..19], source).is_none());
        assert!(answer(&[1, 0, 0, 0, 7, 7, 7, 7], source).is_none());
        assert!(answer(&[], source).is_none());
        let mut wrong_length = request.clone();
        wrong_length[3] = 4;
        assert!(answer(&wrong_length, source).is_none());
    }
}
