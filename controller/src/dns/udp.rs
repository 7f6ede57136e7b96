//! The DNS server's UDP side: each query through the handler, each answer
//! from the address the query was sent to. hickory's own UDP loop answers
//! from whatever address the route back picks, which the NAT in front of a
//! client drops when the controller's address is on loopback or a
//! secondary interface.

use std::sync::Arc;
use std::time::Duration;

use hickory_server::server::RequestHandler;
use tokio::task::{JoinError, JoinSet};
use warren_udp::{Received, ReplySocket, RECV_BUFFER};

/// Queries answered at once. At the limit the loop reads nothing more
/// until one answer is out: later queries wait in the socket's receive
/// buffer, and past it the kernel drops them, as for any UDP server under
/// load. Each answer in flight holds one query (one datagram) and a task.
pub const MAX_IN_FLIGHT: usize = 64;

/// Answers queries on `socket` until the task is aborted, which also
/// aborts the answers in flight. Each query is answered in a task of its
/// own, at most [`MAX_IN_FLIGHT`] at a time, so an answer that waits
/// holds back no other.
pub async fn serve<H: RequestHandler>(socket: ReplySocket, handler: H) {
    let socket = Arc::new(socket);
    let handler = Arc::new(handler);
    let mut answering = JoinSet::new();
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        while let Some(done) = answering.try_join_next() {
            answered(done);
        }
        let got = match socket.recv(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // Transient on an unconnected socket (ICMP reports, buffer
                // pressure): never stop serving for them.
                tracing::debug!(error = %e, "DNS receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Nothing can be answered to port 0 (hickory drops these too).
        if got.source.port() == 0 {
            continue;
        }
        // One read may hold many datagrams (GRO): the limit holds per query.
        for query in got.datagrams(&buf) {
            if answering.len() >= MAX_IN_FLIGHT {
                if let Some(done) = answering.join_next().await {
                    answered(done);
                }
            }
            let (socket, handler, query) = (socket.clone(), handler.clone(), query.to_vec());
            answering.spawn(async move { answer(&socket, &*handler, got, &query).await });
        }
    }
}

async fn answer(socket: &ReplySocket, handler: &impl RequestHandler, got: Received, query: &[u8]) {
    let Some(answer) = warren_dns::answer_udp(handler, query, got.source).await else {
        return;
    };
    if let Err(e) = socket.reply(&got, &answer).await {
        tracing::debug!(source = %got.source, local = ?got.local, error = %e, "DNS answer not sent");
    }
}

/// A task that panicked took only its own query with it.
fn answered(done: Result<(), JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "DNS answer task failed");
    }
}

#[cfg(test)]
mod tests;
