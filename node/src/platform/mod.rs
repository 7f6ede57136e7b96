//! OS seams: the TUN device, the UDP socket and the socket options they need.

pub mod ifaddrs;
pub mod sockopt;
pub mod tun;
pub mod udp;
