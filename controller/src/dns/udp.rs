//! The DNS server's UDP side: each query through the handler, each answer
//! from the address the query was sent to. hickory's own UDP loop answers
//! from whatever address the route back picks, which the NAT in front of a
//! client drops when the controller's address is on loopback or a
//! secondary interface.

use std::time::Duration;

use warren_udp::{ReplySocket, RECV_BUFFER};

use super::handler::AuthoritativeHandler;

/// Answers queries on `socket` until the task is aborted. Zones are in
/// memory, so one query at a time keeps up; hickory's loop likewise reads
/// one datagram at a time.
pub async fn serve(socket: ReplySocket, handler: AuthoritativeHandler) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
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
        for query in got.datagrams(&buf) {
            let Some(answer) = warren_dns::answer_udp(&handler, query, got.source).await else {
                continue;
            };
            if let Err(e) = socket.reply(&got, &answer).await {
                tracing::debug!(source = %got.source, local = ?got.local, error = %e, "DNS answer not sent");
            }
        }
    }
}
