//! The canonical serialization and hash of one audit-log entry.
//!
//! Each entry's hash covers the previous entry's hash and every stored field,
//! each length-prefixed so no two different entries serialize alike. The
//! fields are hashed exactly as stored (before/after as their JSON text), so
//! verification never depends on how a JSON library orders keys.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation, so the chain's hashes mean nothing elsewhere.
const DOMAIN: &[u8] = b"warren-audit-v1";

/// The fields of an entry that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    pub id: i64,
    pub at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub network_id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
}

fn put(hasher: &mut Sha256, field: Option<&[u8]>) {
    match field {
        None => hasher.update([0u8]),
        Some(bytes) => {
            hasher.update([1u8]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
    }
}

/// SHA-256 over the previous hash and the entry, lowercase hex.
pub fn entry_hash(prev_hash: &str, entry: &EntryFields<'_>) -> String {
    let mut h = Sha256::new();
    put(&mut h, Some(DOMAIN));
    put(&mut h, Some(prev_hash.as_bytes()));
    put(&mut h, Some(&entry.id.to_be_bytes()));
    put(&mut h, Some(entry.at.as_bytes()));
    put(&mut h, Some(entry.actor.as_bytes()));
    put(&mut h, Some(entry.action.as_bytes()));
    put(&mut h, entry.network_id.map(str::as_bytes));
    put(&mut h, entry.target.map(str::as_bytes));
    put(&mut h, entry.before.map(str::as_bytes));
    put(&mut h, entry.after.map(str::as_bytes));
    hex::encode(h.finalize())
}

/// Walks a chain incrementally; feed entries in id order.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    prev_hash: String,
    prev_id: i64,
    checked: u64,
    first_bad: Option<i64>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS.to_string(),
            prev_id: 0,
            checked: 0,
            first_bad: None,
        }
    }
}

impl ChainVerifier {
    /// Checks one entry against the chain so far: consecutive id, link to the
    /// previous hash, and its own hash.
    pub fn push(&mut self, entry: &EntryFields<'_>, prev_hash: &str, hash: &str) {
        self.checked += 1;
        let good = entry.id == self.prev_id + 1
            && prev_hash == self.prev_hash
            && entry_hash(prev_hash, entry) == hash;
        if !good && self.first_bad.is_none() {
            self.first_bad = Some(entry.id);
        }
        self.prev_id = entry.id;
        self.prev_hash = hash.to_string();
    }

    pub fn entries(&self) -> u64 {
        self.checked
    }

    pub fn first_bad(&self) -> Option<i64> {
        self.first_bad
    }

    /// The id and hash of the last entry pushed (0 and [`GENESIS`] before any).
    pub fn head(&self) -> (i64, &str) {
        (self.prev_id, &self.prev_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(id: i64, after: Option<&str>) -> EntryFields<'_> {
        EntryFields {
            id,
            at: "2026-01-01T00:00:00Z",
            actor: "system",
            action: "network.create",
            network_id: Some("8056c2e21c000001"),
            target: None,
            before: None,
            after,
        }
    }

    #[test]
    fn a_valid_chain_verifies_and_an_edit_is_found() {
        let h1 = entry_hash(GENESIS, &fields(1, Some("{}")));
        let h2 = entry_hash(&h1, &fields(2, Some("{\"a\":1}")));
        let mut v = ChainVerifier::default();
        v.push(&fields(1, Some("{}")), GENESIS, &h1);
        v.push(&fields(2, Some("{\"a\":1}")), &h1, &h2);
        assert_eq!((v.entries(), v.first_bad()), (2, None));

        let mut v = ChainVerifier::default();
        v.push(&fields(1, Some("{}")), GENESIS, &h1);
        v.push(&fields(2, Some("{\"a\":2}")), &h1, &h2);
        assert_eq!(v.first_bad(), Some(2));
    }

    #[test]
    fn none_and_empty_hash_differently() {
        assert_ne!(
            entry_hash(GENESIS, &fields(1, None)),
            entry_hash(GENESIS, &fields(1, Some("")))
        );
    }

    #[test]
    fn a_removed_entry_breaks_the_chain() {
        let h1 = entry_hash(GENESIS, &fields(1, None));
        let h2 = entry_hash(&h1, &fields(2, None));
        let h3 = entry_hash(&h2, &fields(3, None));
        let mut v = ChainVerifier::default();
        v.push(&fields(1, None), GENESIS, &h1);
        v.push(&fields(3, None), &h2, &h3);
        assert_eq!(v.first_bad(), Some(3));
    }
}
