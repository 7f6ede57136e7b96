//! How long a tracked flow may stay idle, by its state: the TCP states a flow passes through and the four timeout classes.

use std::time::Duration;

use super::flow::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// How long a flow may stay idle, by class.
pub const TCP_ESTABLISHED_IDLE: Duration = Duration::from_secs(3600);
pub const TCP_TRANSITORY_IDLE: Duration = Duration::from_secs(60);
pub const UDP_IDLE: Duration = Duration::from_secs(120);
pub const ICMP_IDLE: Duration = Duration::from_secs(30);

/// The timeout classes, each with its own list in the flow table.
pub(crate) const CLASSES: usize = 4;

/// Where a tracked flow stands; its class sets its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// A SYN was seen, no answer yet.
    TcpOpening,
    TcpEstablished,
    /// A FIN or a reset was seen.
    TcpClosing,
    /// UDP, or a protocol with no ports.
    Datagram,
    IcmpEcho,
}

impl State {
    pub(crate) fn class(self) -> usize {
        match self {
            State::TcpEstablished => 0,
            State::TcpOpening | State::TcpClosing => 1,
            State::Datagram => 2,
            State::IcmpEcho => 3,
        }
    }

    /// The state after a TCP segment with `flags`, sent by the flow's
    /// initiator or not.
    pub(crate) fn after_tcp(self, flags: u8, from_initiator: bool) -> State {
        if flags & (TCP_RST | TCP_FIN) != 0 {
            State::TcpClosing
        } else if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 && from_initiator {
            // A new connection on the tuple of an old one, or a retransmission.
            State::TcpOpening
        } else if self == State::TcpOpening && !from_initiator {
            State::TcpEstablished
        } else {
            self
        }
    }
}

/// How long a flow of `class` may stay idle.
pub(crate) fn idle(class: usize) -> Duration {
    [
        TCP_ESTABLISHED_IDLE,
        TCP_TRANSITORY_IDLE,
        UDP_IDLE,
        ICMP_IDLE,
    ][class]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_states_follow_the_handshake_and_the_close() {
        let s = State::TcpOpening.after_tcp(TCP_SYN, true);
        assert_eq!(s, State::TcpOpening);
        let s = s.after_tcp(TCP_SYN | TCP_ACK, false);
        assert_eq!(s, State::TcpEstablished);
        assert_eq!(s.after_tcp(TCP_ACK, true), State::TcpEstablished);
        assert_eq!(s.after_tcp(TCP_FIN | TCP_ACK, false), State::TcpClosing);
        assert_eq!(s.after_tcp(TCP_RST, true), State::TcpClosing);
        assert_eq!(
            State::TcpClosing.after_tcp(TCP_SYN, true),
            State::TcpOpening
        );
    }
}
