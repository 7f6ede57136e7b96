//! The STUN server on a real controller on loopback: binding requests get
//! the requester's address back, anything else gets nothing, and netmaps
//! advertise the ports.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::node::TestNode;
use tokio::net::UdpSocket;
use warren_controller::server::{self, Running, ServerOptions};
use warren_proto::stun;

async fn controller(dir: &tempfile::TempDir) -> Running {
    let mut options = ServerOptions::loopback(dir.path().join("data"));
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    options.listen_stun = vec![any_port, any_port];
    server::start(options).await.unwrap()
}

/// Sends `datagram` to `to` and returns the answer, if one comes.
async fn ask(socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(datagram, to).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let wait = Duration::from_millis(500);
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((len, from))) => {
            assert_eq!(from, to, "the answer comes from the port asked");
            Some(buf[..len].to_vec())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_requests_are_answered_with_the_senders_address_on_every_port() {
    let dir = tempfile::tempdir().unwrap();
    let running = controller(&dir).await;
    assert_eq!(running.stun_addrs.len(), 2);
    assert_ne!(running.stun_addrs[0].port(), running.stun_addrs[1].port());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    for (i, &port) in running.stun_addrs.iter().enumerate() {
        let tx = [i as u8 + 1; 12];
        let answer = ask(&socket, port, &stun::binding_request(&tx))
            .await
            .expect("a binding response");
        let (got_tx, mapped) = stun::parse_response(&answer).unwrap();
        assert_eq!(got_tx, tx);
        assert_eq!(mapped, local, "the mapped address is where we sent from");
    }
    let metrics = running.hub.metrics();
    assert_eq!(metrics.stun_requests.load(Ordering::Relaxed), 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_but_a_binding_request_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let running = controller(&dir).await;
    let port = running.stun_addrs[0];
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tx = [5u8; 12];
    let request = stun::binding_request(&tx);
    let response = stun::binding_response(&tx, socket.local_addr().unwrap());
    let junk: Vec<&[u8]> = vec![
        b"\xde\xad",
        &request[..19],
        &response,
        &[0u8; 2000],
        // WireGuard handshake initiation type.
        &[1, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],
    ];
    for datagram in &junk {
        assert!(ask(&socket, port, datagram).await.is_none(), "{datagram:?}");
    }
    // Still serving.
    let answer = ask(&socket, port, &request).await.expect("an answer");
    assert_eq!(stun::parse_response(&answer).unwrap().0, tx);
    let metrics = running.hub.metrics();
    assert_eq!(
        metrics.stun_ignored.load(Ordering::Relaxed),
        junk.len() as u64
    );
    assert_eq!(metrics.stun_requests.load(Ordering::Relaxed), 1);
    let text = metrics.render();
    assert!(text.contains("warren_stun_requests_total 1"), "{text}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netmaps_carry_the_stun_ports() {
    let dir = tempfile::tempdir().unwrap();
    let running = controller(&dir).await;
    let store = running.hub.store().clone();
    let net = common::prod_network(&store).await;
    let mut node = TestNode::authenticated(running.quic_addr, &running.fingerprint).await;
    let (_, map) = node.join(net, "n", None).await;
    let ports: Vec<u16> = running.stun_addrs.iter().map(SocketAddr::port).collect();
    assert_eq!(map.unwrap().settings.stun_ports, ports);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_prefix_gets_a_bounded_number_of_answers() {
    let dir = tempfile::tempdir().unwrap();
    let running = controller(&dir).await;
    let port = running.stun_addrs[0];
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let request = stun::binding_request(&[7u8; 12]);
    // In bursts of 50 with a pause between: all 1,000 in one go can overflow
    // the controller's socket buffer on a loaded machine, and then the
    // kernel, not the limiter, drops the excess (seen in CI: 256 answered,
    // none limited). The pauses let the rate refill about 13 answers.
    for i in 0..1000 {
        socket.send_to(&request, port).await.unwrap();
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut answers = 0u32;
    let mut buf = vec![0u8; 1500];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await
    {
        answers += 1;
    }
    let metrics = running.hub.metrics();
    let limited = metrics.stun_limited.load(Ordering::Relaxed);
    println!("answered {answers}, limited {limited}");
    // The burst, plus what the rate refills while the flood is sent and
    // read (well under a second here).
    assert!(answers <= 400, "{answers} answers");
    assert!(limited > 0, "no request was limited");
    running.shutdown().await;
}
