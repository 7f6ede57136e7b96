#![allow(clippy::unwrap_used)]

use std::future::poll_fn;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::AsyncUdpSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ByteStream, Limits, StreamSocket, Wrap};

async fn listening(limits: Limits) -> std::sync::Arc<StreamSocket> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    StreamSocket::listen(listener, limits, None).unwrap()
}

fn send(socket: &StreamSocket, to: SocketAddr, datagram: &[u8]) {
    socket
        .try_send(&Transmit {
            destination: to,
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip: None,
        })
        .unwrap();
}

/// The next datagram, within a second.
async fn recv(socket: &StreamSocket) -> (SocketAddr, Vec<u8>) {
    let mut buf = vec![0u8; 65535];
    let mut meta = [RecvMeta::default()];
    let n = tokio::time::timeout(
        Duration::from_secs(1),
        poll_fn(|cx| socket.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)),
    )
    .await
    .expect("a datagram within a second")
    .unwrap();
    assert_eq!(n, 1);
    (meta[0].addr, buf[..meta[0].len].to_vec())
}

/// Waits until the server end closes `stream`, within a second.
async fn closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte))
        .await
        .expect("closed within a second");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn datagrams_go_both_ways_each_whole() {
    let server = listening(Limits::default()).await;
    let stream = TcpStream::connect(server.local_addr().unwrap())
        .await
        .unwrap();
    let client = StreamSocket::client(stream).unwrap();
    let server_addr = server.local_addr().unwrap();
    let big = vec![7u8; 1400];
    send(&client, server_addr, b"hello");
    send(&client, server_addr, &big);
    let (from, first) = recv(&server).await;
    assert_eq!(first, b"hello");
    assert_eq!(from, client.local_addr().unwrap());
    assert_eq!(recv(&server).await.1, big);
    send(&server, from, b"answer");
    assert_eq!(recv(&client).await, (server_addr, b"answer".to_vec()));
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn an_empty_frame_closes_that_connection_only() {
    let server = listening(Limits::default()).await;
    let addr = server.local_addr().unwrap();
    let mut hostile = TcpStream::connect(addr).await.unwrap();
    hostile.write_all(&[0, 0]).await.unwrap();
    closed(&mut hostile).await;
    let client = StreamSocket::client(TcpStream::connect(addr).await.unwrap()).unwrap();
    send(&client, addr, b"still here");
    assert_eq!(recv(&server).await.1, b"still here");
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_closed() {
    let limits = Limits {
        max_per_ip: 2,
        ..Limits::default()
    };
    let server = listening(limits).await;
    let addr = server.local_addr().unwrap();
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    closed(&mut third).await;
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_silent_connection_is_closed_when_idle() {
    let limits = Limits {
        idle: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = listening(limits).await;
    let mut silent = TcpStream::connect(server.local_addr().unwrap())
        .await
        .unwrap();
    closed(&mut silent).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_send_to_no_connection_is_dropped_not_an_error() {
    let server = listening(Limits::default()).await;
    send(&server, "127.0.0.1:9".parse().unwrap(), b"nobody");
}

/// A wrap that wants the byte `W` first, as a TLS handshake wants a hello.
fn wants_w() -> Wrap {
    std::sync::Arc::new(|mut stream: TcpStream| {
        Box::pin(async move {
            let mut hello = [0u8; 1];
            stream.read_exact(&mut hello).await?;
            if hello != *b"W" {
                return Err(std::io::Error::other("no hello"));
            }
            Ok(Box::new(stream) as Box<dyn ByteStream>)
        })
    })
}

#[tokio::test]
async fn a_wrapped_listener_carries_datagrams_only_after_its_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = StreamSocket::listen(listener, Limits::default(), Some(wants_w())).unwrap();
    let addr = server.local_addr().unwrap();

    let mut wrong = TcpStream::connect(addr).await.unwrap();
    wrong.write_all(b"X").await.unwrap();
    closed(&mut wrong).await;

    let mut right = TcpStream::connect(addr).await.unwrap();
    right.write_all(b"W").await.unwrap();
    let (local, remote) = (right.local_addr().unwrap(), right.peer_addr().unwrap());
    let client = StreamSocket::client_over(right, local, remote);
    send(&client, addr, b"after the hello");
    assert_eq!(recv(&server).await, (local, b"after the hello".to_vec()));
}
