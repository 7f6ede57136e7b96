//! Disco messages as a node reads them off its data socket: the sender's
//! key read before decryption, then the sealed message opened with the key
//! shared with that peer.
//!
//! The first byte picks what the rest is:
//! - even: a datagram off the wire, opened by node B with the key it
//!   shares with node A; one that opens seals back to the same bytes;
//! - odd: a message A builds from the fuzzer's fields (type, transaction
//!   ID, clock or address), sealed by A and opened by B unchanged.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;

use warren_proto::disco::{self, DiscoError, DiscoKey, DiscoMessage};
use warren_proto::{NodePrivateKey, NodePublicKey};

struct Pair {
    a: NodePublicKey,
    /// The key A seals with, and B opens with.
    ab: DiscoKey,
    ba: DiscoKey,
}

static PAIR: LazyLock<Pair> = LazyLock::new(|| {
    let a = NodePrivateKey::from_bytes([0xa1; 32]);
    let b = NodePrivateKey::from_bytes([0xb2; 32]);
    Pair {
        a: a.public_key(),
        ab: DiscoKey::derive(&a, &b.public_key()).expect("contributory keys"),
        ba: DiscoKey::derive(&b, &a.public_key()).expect("contributory keys"),
    }
});

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        wire(rest);
    } else {
        built(rest);
    }
}

fn wire(datagram: &[u8]) {
    let sender = disco::sender(datagram);
    if !disco::is_disco(datagram) {
        assert_eq!(sender, Err(DiscoError::NotDisco));
    }
    let Ok(message) = disco::decode(&PAIR.ba, datagram) else {
        return;
    };
    // Only A can seal for B, and the header (its key) is authenticated.
    assert_eq!(sender, Ok(PAIR.a));
    let nonce: [u8; 12] = datagram[38..50].try_into().expect("a nonce");
    assert_eq!(disco::encode(&PAIR.ab, &PAIR.a, nonce, &message), datagram);
}

fn built(fields: &[u8]) {
    let mut bytes = [0u8; 1 + 12 + 12 + 16 + 2];
    let n = fields.len().min(bytes.len());
    bytes[..n].copy_from_slice(&fields[..n]);
    let tx: [u8; 12] = bytes[1..13].try_into().expect("12 bytes");
    let nonce: [u8; 12] = bytes[13..25].try_into().expect("12 bytes");
    let message = if bytes[0] & 1 == 0 {
        let sent_at = u64::from_be_bytes(bytes[25..33].try_into().expect("8 bytes"));
        DiscoMessage::Ping { tx, sent_at }
    } else {
        let octets: [u8; 16] = bytes[25..41].try_into().expect("16 bytes");
        let port = u16::from_be_bytes([bytes[41], bytes[42]]);
        // What the receiver reports: an IPv4 address for a mapped one.
        let ip = Ipv6Addr::from(octets).to_canonical();
        let ip = if bytes[0] & 2 == 0 {
            ip
        } else {
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        DiscoMessage::Pong {
            tx,
            observed: SocketAddr::new(ip, port),
        }
    };
    let sealed = disco::encode(&PAIR.ab, &PAIR.a, nonce, &message);
    assert_eq!(disco::sender(&sealed), Ok(PAIR.a));
    let opened = disco::decode(&PAIR.ba, &sealed).expect("B opens what A sealed");
    let expected = match message {
        DiscoMessage::Pong { tx, observed } => DiscoMessage::Pong {
            tx,
            observed: SocketAddr::new(observed.ip().to_canonical(), observed.port()),
        },
        ping => ping,
    };
    assert_eq!(opened, expected);
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("disco", 64);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seal = |message: DiscoMessage| {
        [vec![0], disco::encode(&PAIR.ab, &PAIR.a, [3; 12], &message)].concat()
    };
    let fields = |kind: u8, rest: &[u8]| [&[1, kind][..], &[9; 24], rest].concat();
    vec![
        (
            "ping",
            seal(DiscoMessage::Ping {
                tx: [1; 12],
                sent_at: 1_764_000_000_000,
            }),
        ),
        (
            "pong-v4",
            seal(DiscoMessage::Pong {
                tx: [2; 12],
                observed: "203.0.113.7:40000".parse().expect("addr"),
            }),
        ),
        (
            "pong-v6",
            seal(DiscoMessage::Pong {
                tx: [3; 12],
                observed: "[2001:db8::1]:51820".parse().expect("addr"),
            }),
        ),
        ("wireguard", vec![0, 1, 0, 0, 0, 7, 7, 7, 7]),
        ("built-ping", fields(0, &1_764_000_000_000u64.to_be_bytes())),
        (
            "built-pong",
            fields(
                1,
                &[
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1, 0x1f, 0x90,
                ],
            ),
        ),
    ]
}
