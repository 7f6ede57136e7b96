//! One network's stub server: hickory-server on UDP and TCP at the
//! network's first overlay IPv4 address.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use super::handler::StubHandler;

/// A TCP client that sends nothing for this long is dropped.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_RESPONSE_BUFFER: usize = 32;

pub struct StubServer {
    pub listen: SocketAddr,
    server: Server<StubHandler>,
}

impl StubServer {
    /// Binds both sockets; the address must be on an interface already.
    pub async fn bind(listen: SocketAddr, handler: StubHandler) -> anyhow::Result<StubServer> {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding DNS stub on udp {listen}"))?;
        let tcp = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding DNS stub on tcp {listen}"))?;
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!(%listen, "DNS stub listening");
        Ok(StubServer { listen, server })
    }

    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!(listen = %self.listen, error = %e, "DNS stub stopped with an error");
        }
    }
}
