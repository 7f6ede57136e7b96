//! Relay frames and records as the relay and the node read them, and the
//! replay window that screens their sequence numbers.
//!
//! The first byte picks what the rest is:
//! - 0: one frame, as a QUIC datagram carries it;
//! - 1: a stream of records (`length | frame`), read one after another;
//! - 2: a run of big-endian u64 sequence numbers for one replay window.
//!
//! A frame that decodes encodes back to the same bytes; a record stream
//! stops at the first bad length, as the reader does; the replay window
//! takes a number exactly when it is new and within the window.

use std::collections::BTreeSet;

use warren_proto::relay::{self, RelayError, RelayFrame, ReplayWindow};

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => frame(rest),
        1 => records(rest),
        _ => replay_window(rest),
    }
}

fn frame(bytes: &[u8]) {
    let Ok(frame) = RelayFrame::decode(bytes) else {
        return;
    };
    assert!(bytes.len() <= relay::MAX_FRAME);
    assert_eq!(frame.encode(), bytes, "a decoded frame encodes back");
    assert_eq!(frame.is_absence_notice(), bytes.len() == relay::HEADER_LEN);
    let record = frame.encode_record();
    let prefix: [u8; relay::RECORD_PREFIX_LEN] = record[..relay::RECORD_PREFIX_LEN]
        .try_into()
        .expect("a record starts with its length");
    assert_eq!(relay::record_len(prefix), Ok(bytes.len()));
}

fn records(mut stream: &[u8]) {
    while let Some((prefix, rest)) = stream.split_first_chunk::<{ relay::RECORD_PREFIX_LEN }>() {
        let len = match relay::record_len(*prefix) {
            Ok(len) => len,
            Err(e) => {
                assert!(matches!(e, RelayError::TooLarge | RelayError::Truncated));
                return;
            }
        };
        assert!((relay::HEADER_LEN..=relay::MAX_FRAME).contains(&len));
        let Some((body, after)) = rest.split_at_checked(len) else {
            return;
        };
        if let Ok(frame) = RelayFrame::decode(body) {
            let record = frame.encode_record();
            assert_eq!(record[..relay::RECORD_PREFIX_LEN], prefix[..]);
            assert_eq!(&record[relay::RECORD_PREFIX_LEN..], body);
        }
        stream = after;
    }
}

fn replay_window(bytes: &[u8]) {
    let mut window = ReplayWindow::default();
    let mut seen = BTreeSet::new();
    let mut highest: Option<u64> = None;
    for chunk in bytes.chunks_exact(8) {
        let seq = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
        let fresh = match highest {
            Some(h) if seq <= h => h - seq < ReplayWindow::WIDTH && !seen.contains(&seq),
            _ => true,
        };
        assert_eq!(
            window.accept(seq),
            fresh,
            "sequence {seq} after {highest:?}"
        );
        if fresh {
            seen.insert(seq);
            highest = highest.max(Some(seq));
        }
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("relay", 64);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let frame = |seq: u64, payload: Vec<u8>| RelayFrame {
        network_id: "8056c2e21c000001".parse().expect("a network ID"),
        peer: warren_proto::NodePrivateKey::from_bytes([7; 32]).public_key(),
        seq,
        payload,
    };
    // A WireGuard handshake initiation's length, and a data packet's.
    let initiation = frame(1, [vec![1, 0, 0, 0], vec![0xab; 144]].concat());
    let data = frame(2, [vec![4, 0, 0, 0], vec![0xcd; 92]].concat());
    let notice = RelayFrame::absence_notice(data.network_id, data.peer, 3);
    let with = |mode: u8, bytes: Vec<u8>| [vec![mode], bytes].concat();
    let seqs = |s: &[u64]| s.iter().flat_map(|n| n.to_be_bytes()).collect::<Vec<u8>>();
    vec![
        ("frame-initiation", with(0, initiation.encode())),
        ("frame-data", with(0, data.encode())),
        ("frame-absence", with(0, notice.encode())),
        (
            "records",
            with(
                1,
                [
                    initiation.encode_record(),
                    data.encode_record(),
                    notice.encode_record(),
                ]
                .concat(),
            ),
        ),
        ("record-too-long", with(1, u32::MAX.to_be_bytes().to_vec())),
        ("window-in-order", with(2, seqs(&[0, 1, 2, 3, 4, 5]))),
        (
            "window-replays",
            with(2, seqs(&[10, 10, 12, 11, 11, 5000, 3016, 3017, 12])),
        ),
        (
            "window-far-jump",
            with(2, seqs(&[1, u64::MAX, 1, u64::MAX - 1984, u64::MAX - 1983])),
        ),
    ]
}
