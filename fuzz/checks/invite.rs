//! Invite codes as `warren join` reads them from a person's paste.
//!
//! The first byte picks what the rest is:
//! - even: text, decoded as it was pasted; a code that decodes encodes
//!   back to one that decodes to the same invite;
//! - odd: a payload, given its CRC and base32 as a hostile encoder would,
//!   so that the fields behind the checksum are reached too.

use data_encoding::{Encoding, Specification};
use warren_proto::invite::{Invite, PREFIX};

/// The codes' alphabet, as `warren_proto::invite` spells it.
fn base32() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("0123456789abcdefghjkmnpqrstvwxyz");
    spec.encoding().expect("a valid specification")
}

/// `payload` with its CRC-32, as a code.
fn seal(payload: &[u8]) -> String {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(payload);
    let bytes = [payload, &crc.to_le_bytes()].concat();
    format!("{PREFIX}{}", base32().encode(&bytes))
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        seal(rest)
    };
    if let Ok(invite) = Invite::decode(&text) {
        let again = invite.encode().expect("a decoded invite encodes");
        assert_eq!(Invite::decode(&again).as_ref(), Ok(&invite));
        assert!(!invite.controllers.is_empty());
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("invite", 64);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let invite = |key: Option<&str>, addresses: &[&str]| Invite {
        network_id: "8056c2e21c000001".parse().expect("an ID"),
        fingerprint: [0xab; 32],
        controllers: addresses
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect(),
        preauth_key: key.map(str::to_owned),
    };
    let text = |invite: Invite| [vec![0], invite.encode().expect("a code").into_bytes()].concat();
    let payload = |invite: Invite| {
        let code = invite.encode().expect("a code");
        let bytes = base32()
            .decode(&code.as_bytes()[PREFIX.len()..])
            .expect("base32");
        [vec![1], bytes[..bytes.len() - 4].to_vec()].concat()
    };
    let key = "wk_WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo";
    vec![
        ("v4", text(invite(None, &["192.0.2.10:7443"]))),
        ("key", text(invite(Some(key), &["192.0.2.10:7443"]))),
        (
            "many",
            text(invite(
                Some("a-text-key"),
                &["[2001:db8::1]:7443", "ctl.example.org:443"],
            )),
        ),
        ("payload-v4", payload(invite(None, &["192.0.2.10:7443"]))),
        (
            "payload-host-key",
            payload(invite(Some("k"), &["ctl.example.org:7443"])),
        ),
        (
            "network-id",
            [vec![0], b"8056c2e21c000001".to_vec()].concat(),
        ),
    ]
}
