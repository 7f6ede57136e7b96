//! The NAT lab checks its own routers: each behaviour of NATLAB.md must map
//! and filter exactly as its RFC 4787 name says, or NAT-traversal results
//! of the agent would mean nothing.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::nat::Nat;
use warren_lab::topology::NatLab;
use warren_lab::{e2e, Netns};

const HOST_PORT: u16 = 4000;
const WAIT: Duration = Duration::from_millis(400);

fn bind(ns: &Netns, addr: SocketAddrV4) -> anyhow::Result<UdpSocket> {
    let sock = ns
        .run(|| UdpSocket::bind(addr))?
        .with_context(|| format!("binding {addr} in {}", ns.name()))?;
    sock.set_read_timeout(Some(WAIT))?;
    Ok(sock)
}

/// The next datagram's sender, or `None` if nothing arrives in time.
fn recv_from(sock: &UdpSocket) -> anyhow::Result<Option<SocketAddr>> {
    let mut buf = [0u8; 64];
    match warren_lab::eintr::restart(|| sock.recv_from(&mut buf)) {
        Ok((_, from)) => Ok(Some(from)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a behaviour must show.
struct Expect {
    /// Unsolicited packet to the public port before the host sent anything.
    unsolicited_in: bool,
    /// Same mapping towards two destinations (endpoint-independent mapping).
    same_mapping: bool,
    /// The mapping keeps the host's port.
    keeps_port: bool,
    /// A packet from a contacted address but new port gets in.
    same_addr_new_port_in: bool,
    /// A packet from an address never contacted gets in.
    new_addr_in: bool,
}

fn check_nat(test: &str, nat: Nat, expect: Expect) {
    e2e(test, |lab| {
        let net = NatLab::build(lab, nat, Nat::PortRestricted)?;
        let server = |port| SocketAddrV4::new(NatLab::SERVER, port);
        let host = bind(&net.host_a, SocketAddrV4::new(NatLab::HOST_A, HOST_PORT))?;
        let s1 = bind(&net.internet, server(3478))?;
        let s2 = bind(&net.internet, server(3479))?;
        let s_same_addr = bind(&net.internet, server(3480))?;
        let s_new_addr = bind(&net.internet, SocketAddrV4::new(NatLab::SERVER2, 3478))?;
        let public = SocketAddr::from((NatLab::ROUTER_A_WAN, HOST_PORT));

        s_new_addr.send_to(b"early", public)?;
        let got = recv_from(&host)?.is_some();
        ensure!(
            got == expect.unsolicited_in,
            "unsolicited packet delivered: {got}"
        );

        host.send_to(b"hi", s1.local_addr()?)?;
        let m1 = recv_from(&s1)?.context("host -> server 1 lost")?;
        host.send_to(b"hi", s2.local_addr()?)?;
        let m2 = recv_from(&s2)?.context("host -> server 2 lost")?;
        println!("{test}: mapped to {m1} and {m2}");
        ensure!(m1.ip() == NatLab::ROUTER_A_WAN, "not translated: {m1}");
        ensure!((m1 == m2) == expect.same_mapping, "mappings {m1} vs {m2}");
        ensure!(
            (m1.port() == HOST_PORT) == expect.keeps_port,
            "mapping {m1}"
        );

        s1.send_to(b"reply", m1)?;
        ensure!(
            recv_from(&host)?.is_some(),
            "reply from the contacted server lost"
        );
        s_same_addr.send_to(b"x", m1)?;
        let got = recv_from(&host)?.is_some();
        ensure!(
            got == expect.same_addr_new_port_in,
            "same address, new port delivered: {got}"
        );
        s_new_addr.send_to(b"x", m1)?;
        let got = recv_from(&host)?.is_some();
        ensure!(got == expect.new_addr_in, "new address delivered: {got}");
        Ok(())
    });
}

#[test]
fn full_cone() {
    check_nat(
        "nat_selftest::full_cone",
        Nat::FullCone { port: HOST_PORT },
        Expect {
            unsolicited_in: true,
            same_mapping: true,
            keeps_port: true,
            same_addr_new_port_in: true,
            new_addr_in: true,
        },
    );
}

#[test]
fn restricted_cone() {
    check_nat(
        "nat_selftest::restricted_cone",
        Nat::RestrictedCone { port: HOST_PORT },
        Expect {
            unsolicited_in: false,
            same_mapping: true,
            keeps_port: true,
            same_addr_new_port_in: true,
            new_addr_in: false,
        },
    );
}

#[test]
fn port_restricted_cone() {
    check_nat(
        "nat_selftest::port_restricted",
        Nat::PortRestricted,
        Expect {
            unsolicited_in: false,
            same_mapping: true,
            keeps_port: true,
            same_addr_new_port_in: false,
            new_addr_in: false,
        },
    );
}

fn symmetric() -> Expect {
    Expect {
        unsolicited_in: false,
        same_mapping: false,
        keeps_port: false,
        same_addr_new_port_in: false,
        new_addr_in: false,
    }
}

#[test]
fn symmetric_random() {
    check_nat("nat_selftest::symmetric", Nat::Symmetric, symmetric());
}

#[test]
fn symmetric_fully_random() {
    check_nat(
        "nat_selftest::symmetric_fully",
        Nat::SymmetricFullyRandom,
        symmetric(),
    );
}

#[test]
fn private_addresses_do_not_cross_the_internet() {
    e2e("nat_selftest::no_nat", |lab| {
        let net = NatLab::build(lab, Nat::None, Nat::None)?;
        let host = bind(&net.host_a, SocketAddrV4::new(NatLab::HOST_A, HOST_PORT))?;
        let server = bind(&net.internet, SocketAddrV4::new(NatLab::SERVER, 3478))?;
        host.send_to(b"hi", server.local_addr()?)?;
        let from = recv_from(&server)?.context("un-NATed packet did not reach the internet")?;
        ensure!(
            from.ip() == NatLab::HOST_A,
            "source was rewritten to {from}"
        );
        // The internet has no route to 10/8: the reply fails at once (or,
        // were there a default route, would have to die on the way).
        match server.send_to(b"reply", from) {
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => ensure!(
                recv_from(&host)?.is_none(),
                "a private address was routable from the internet"
            ),
        }
        Ok(())
    });
}
