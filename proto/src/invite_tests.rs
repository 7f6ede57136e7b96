//! Tests of invite codes: round trips, typos, cuts and hostile input.

use super::*;

fn net() -> NetworkId {
    "8056c2e21c000001".parse().unwrap()
}

fn invite(key: Option<&str>, addresses: &[&str]) -> Invite {
    Invite {
        network_id: net(),
        fingerprint: core::array::from_fn(|i| i as u8 * 7 + 3),
        controllers: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        preauth_key: key.map(str::to_owned),
    }
}

/// A key as the controller makes them.
fn controller_key() -> String {
    format!("wk_{}", URL_SAFE_NO_PAD.encode([0x5a; 32]))
}

/// `payload` with its CRC, as a code: what a hostile encoder could make.
fn seal(payload: &[u8]) -> String {
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(&CRC32.checksum(payload).to_le_bytes());
    format!("{PREFIX}{}", BASE32.encode(&bytes))
}

/// A small deterministic generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn samples() -> Vec<Invite> {
    vec![
        invite(None, &["192.0.2.10:7443"]),
        invite(Some(&controller_key()), &["192.0.2.10:7443"]),
        invite(
            Some("not-a-controller-key!"),
            &[
                "[2001:db8::1]:7443",
                "ctl.example.org:443",
                "198.51.100.7:7443",
            ],
        ),
    ]
}

#[test]
fn codes_round_trip() {
    for invite in samples() {
        let code = invite.encode().unwrap();
        assert!(code.starts_with(PREFIX), "{code}");
        assert!(
            code[PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{code}"
        );
        assert_eq!(Invite::decode(&code).unwrap(), invite);
        assert_eq!(code.parse::<Invite>().unwrap(), invite);
        assert_eq!(invite.to_string(), code);
        // As people paste it: around spaces, in capitals.
        let pasted = format!("  {}\n", code.to_ascii_uppercase());
        assert_eq!(Invite::decode(&pasted).unwrap(), invite);
    }
}

#[test]
fn a_code_is_short_enough_to_paste() {
    let without = invite(None, &["192.0.2.10:7443"]).encode().unwrap();
    let with = invite(Some(&controller_key()), &["192.0.2.10:7443"])
        .encode()
        .unwrap();
    assert!(
        without.len() <= 92,
        "{} characters: {without}",
        without.len()
    );
    assert!(with.len() <= 145, "{} characters: {with}", with.len());
}

#[test]
fn the_controllers_own_keys_travel_as_raw_bytes() {
    let key = controller_key();
    assert_eq!(compact_key(&key), Some([0x5a; 32]));
    // Not canonical (spare bits set), or another prefix: sent as text.
    let mut odd = key.clone();
    odd.pop();
    odd.push('B');
    assert_eq!(compact_key(&odd), None);
    assert_eq!(compact_key(&key.replacen("wk_", "wt_", 1)), None);
    let decoded = Invite::decode(&invite(Some(&odd), &["192.0.2.1:1"]).encode().unwrap());
    assert_eq!(decoded.unwrap().preauth_key.as_deref(), Some(odd.as_str()));
}

#[test]
fn crockford_look_alikes_read_as_the_digits() {
    let invite = invite(None, &["192.0.2.10:7443"]);
    let code = invite.encode().unwrap();
    let body = &code[PREFIX.len()..];
    let looks: String = body
        .chars()
        .map(|c| match c {
            '1' => 'l',
            '0' => 'O',
            c => c,
        })
        .collect();
    assert_eq!(Invite::decode(&format!("{PREFIX}{looks}")).unwrap(), invite);
}

#[test]
fn every_one_character_typo_is_detected() {
    let alphabet: Vec<char> = "0123456789abcdefghjkmnpqrstvwxyzu_-!é".chars().collect();
    for invite in samples() {
        let code = invite.encode().unwrap();
        let chars: Vec<char> = code.chars().collect();
        let mut tried = 0;
        for at in 0..chars.len() {
            for &c in &alphabet {
                if c == chars[at] {
                    continue;
                }
                let mut typo = chars.clone();
                typo[at] = c;
                let typo: String = typo.into_iter().collect();
                tried += 1;
                assert!(Invite::decode(&typo).is_err(), "{typo} decoded");
            }
            // A character dropped, or one added.
            let mut dropped = chars.clone();
            dropped.remove(at);
            let dropped: String = dropped.into_iter().collect();
            assert!(Invite::decode(&dropped).is_err(), "{dropped} decoded");
            let mut added = chars.clone();
            added.insert(at, 'q');
            let added: String = added.into_iter().collect();
            assert!(
                Invite::decode(&added).is_err_and(|e| e != InviteError::TooLong),
                "{added}"
            );
        }
        // Two neighbours swapped.
        for at in PREFIX.len()..chars.len() - 1 {
            if chars[at] == chars[at + 1] {
                continue;
            }
            let mut swapped = chars.clone();
            swapped.swap(at, at + 1);
            let swapped: String = swapped.into_iter().collect();
            assert!(Invite::decode(&swapped).is_err(), "{swapped} decoded");
        }
        assert!(tried > 3000);
    }
}

#[test]
fn a_typo_in_the_body_says_check_for_a_typo() {
    let code = invite(None, &["192.0.2.10:7443"]).encode().unwrap();
    let mut typo: Vec<char> = code.chars().collect();
    let at = PREFIX.len() + 20;
    typo[at] = if typo[at] == 'z' { 'y' } else { 'z' };
    let typo: String = typo.into_iter().collect();
    let error = Invite::decode(&typo).unwrap_err();
    assert_eq!(error, InviteError::Checksum);
    assert_eq!(
        error.to_string(),
        "invite code checksum does not match: check for a typo, or for a part lost in copying"
    );
    let mut bad: Vec<char> = code.chars().collect();
    bad[PREFIX.len() + 3] = 'u';
    let bad: String = bad.into_iter().collect();
    assert_eq!(
        Invite::decode(&bad).unwrap_err(),
        InviteError::BadCharacter {
            got: 'u',
            position: PREFIX.len() + 4
        }
    );
}

#[test]
fn every_cut_is_an_error() {
    for invite in samples() {
        let code = invite.encode().unwrap();
        for end in 0..code.len() {
            assert!(Invite::decode(&code[..end]).is_err(), "{}", &code[..end]);
        }
    }
}

#[test]
fn other_text_is_not_a_code_and_says_what_is() {
    for text in [
        "",
        "0123456789abcdef",
        "warren",
        "wj",
        "wj_abc",
        "https://x",
    ] {
        let error = Invite::decode(text).unwrap_err();
        assert!(
            matches!(error, InviteError::NotACode { .. }),
            "{text}: {error}"
        );
        assert!(error.to_string().contains("start with wj1_"), "{error}");
    }
    let error = Invite::decode("WJ2_abcdef").unwrap_err();
    assert_eq!(
        error,
        InviteError::NewerFormat {
            prefix: "wj2_".into()
        }
    );
    assert!(matches!(
        Invite::decode(&format!("{PREFIX}{}", "0".repeat(5000))),
        Err(InviteError::TooLong)
    ));
}

#[test]
fn hostile_payloads_with_a_good_checksum_are_refused_not_panicked_on() {
    let good = {
        let code = invite(Some("k"), &["ctl.example.org:443"])
            .encode()
            .unwrap();
        let bytes = BASE32.decode(&code.as_bytes()[PREFIX.len()..]).unwrap();
        bytes[..bytes.len() - 4].to_vec()
    };
    // Every cut of a good payload, sealed again.
    for end in 0..good.len() {
        assert!(Invite::decode(&seal(&good[..end])).is_err(), "cut at {end}");
    }
    let mut bad = Vec::new();
    // Zero and nine addresses; unknown kinds; port 0; a bad host; trailing bytes.
    let head = |count: u8| [&[1u8][..], &[0; 8], &[0xab; 32], &[count]].concat();
    bad.push([head(0), vec![0]].concat());
    bad.push([head(9), [1, 192, 0, 2, 1, 0, 1].repeat(9), vec![0]].concat());
    bad.push([head(1), vec![7, 1, 2, 3], vec![0]].concat());
    bad.push([head(1), vec![1, 192, 0, 2, 1, 0, 0], vec![0]].concat());
    bad.push([head(1), vec![3, 3], b"-ab".to_vec(), vec![0, 1, 0]].concat());
    bad.push([head(1), vec![3, 3], b"a\x1bb".to_vec(), vec![0, 1, 0]].concat());
    bad.push([head(1), vec![3, 0, 0, 1], vec![0]].concat());
    bad.push([head(1), vec![1, 192, 0, 2, 1, 0, 1], vec![0, 9]].concat());
    bad.push([head(1), vec![1, 192, 0, 2, 1, 0, 1], vec![2, 2, b' ', b'x']].concat());
    bad.push([head(1), vec![1, 192, 0, 2, 1, 0, 1], vec![2, 0]].concat());
    bad.push([head(1), vec![1, 192, 0, 2, 1, 0, 1], vec![3]].concat());
    bad.push([vec![2], head(1)[1..].to_vec(), vec![1, 1, 1, 1, 1, 0, 1, 0]].concat());
    for payload in bad {
        let error = Invite::decode(&seal(&payload)).unwrap_err();
        assert!(
            matches!(error, InviteError::Malformed(_)),
            "{payload:?}: {error}"
        );
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let symbols = b"0123456789abcdefghjkmnpqrstvwxyzILOUu_-\xff ";
    for round in 0..20_000 {
        let len = (rng.next() % 200) as usize;
        match round % 3 {
            // Random payloads, sealed: they pass the checksum.
            0 => {
                let mut payload = rng.bytes(len);
                if let Some(first) = payload.first_mut() {
                    *first = 1;
                }
                let _ = Invite::decode(&seal(&payload));
            }
            // Random symbols after the prefix.
            1 => {
                let body: Vec<u8> = (0..len)
                    .map(|_| symbols[(rng.next() % symbols.len() as u64) as usize])
                    .collect();
                let text = format!("{PREFIX}{}", String::from_utf8_lossy(&body));
                let _ = Invite::decode(&text);
            }
            // Random bytes as text.
            _ => {
                let bytes = rng.bytes(len);
                let _ = Invite::decode(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}

#[test]
fn what_cannot_be_encoded_says_why() {
    assert_eq!(
        invite(None, &[]).encode(),
        Err(InviteError::AddressCount(0))
    );
    let nine = ["192.0.2.1:7443"; 9];
    assert_eq!(
        invite(None, &nine).encode(),
        Err(InviteError::AddressCount(9))
    );
    assert_eq!(
        invite(Some("has space"), &["192.0.2.1:7443"]).encode(),
        Err(InviteError::BadKey)
    );
    for bad in [
        "ctl.example.org",
        "ctl:0",
        "-ctl:7443",
        "c tl:1",
        ":7443",
        "[::1]",
    ] {
        assert!(bad.parse::<ControllerAddress>().is_err(), "{bad}");
    }
    let host: ControllerAddress = "CTL.Example.org:7443".parse().unwrap();
    assert_eq!(host.to_string(), "ctl.example.org:7443");
    assert!(host.is_dialable());
    let any: ControllerAddress = "[::]:7443".parse().unwrap();
    assert!(!any.is_dialable());
    assert!(!"0.0.0.0:7443"
        .parse::<ControllerAddress>()
        .unwrap()
        .is_dialable());
}
