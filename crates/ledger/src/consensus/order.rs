//! The ledger order (docs/protocol.md §3.6): what each attestation of a committed block
//! becomes, block by block in commit order. An attestation new to the ledger gets the
//! next `log_index`; one whose digest the ledger holds already is a duplicate (the same
//! attestation included by two validators); one whose (attester key, nonce) the ledger
//! holds under another digest is rejected as `duplicate_nonce`. Every node places the
//! same attestations in the same order, so every node reaches the same verdicts.

use std::collections::HashMap;

use crate::crypto::PublicKey;
use crate::hash::Hash32;

/// What the ledger says about one attestation before this batch.
pub trait LedgerView {
    /// Whether the digest has a `log_index`.
    fn contains(&self, digest: &Hash32) -> bool;
    /// The digest with a `log_index` that used this (key, nonce), if any.
    fn nonce_owner(&self, key: &PublicKey, nonce: &str) -> Option<Hash32>;
    /// The next `log_index`: how many attestations the ledger holds.
    fn next_index(&self) -> u64;
}

/// The fields of an attestation the ledger order looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub digest: Hash32,
    pub key: &'a PublicKey,
    pub nonce: &'a str,
}

/// The verdict on one attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// New to the ledger, at this index.
    Appended { log_index: u64 },
    /// Already in the ledger (or earlier in this batch): nothing new.
    Duplicate,
    /// Its (key, nonce) is in the ledger under `owner`: `duplicate_nonce`.
    Rejected { owner: Hash32 },
}

/// Places `entries`, in order, after what `view` holds. Entries earlier in the batch
/// count as in the ledger for the ones after them.
pub fn place<'a>(
    view: &impl LedgerView,
    entries: impl IntoIterator<Item = Entry<'a>>,
) -> Vec<Placement> {
    let mut next = view.next_index();
    let mut digests: HashMap<Hash32, ()> = HashMap::new();
    let mut nonces: HashMap<(&'a PublicKey, &'a str), Hash32> = HashMap::new();
    let mut out = Vec::new();
    for e in entries {
        if digests.contains_key(&e.digest) || view.contains(&e.digest) {
            out.push(Placement::Duplicate);
            continue;
        }
        let owner = nonces
            .get(&(e.key, e.nonce))
            .copied()
            .or_else(|| view.nonce_owner(e.key, e.nonce));
        if let Some(owner) = owner {
            out.push(Placement::Rejected { owner });
            continue;
        }
        digests.insert(e.digest, ());
        nonces.insert((e.key, e.nonce), e.digest);
        out.push(Placement::Appended { log_index: next });
        next += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    #[derive(Default)]
    struct Ledger {
        digests: HashMap<Hash32, (PublicKey, String)>,
    }

    impl LedgerView for Ledger {
        fn contains(&self, digest: &Hash32) -> bool {
            self.digests.contains_key(digest)
        }
        fn nonce_owner(&self, key: &PublicKey, nonce: &str) -> Option<Hash32> {
            self.digests
                .iter()
                .find(|(_, (k, n))| k == key && n == nonce)
                .map(|(d, _)| *d)
        }
        fn next_index(&self) -> u64 {
            self.digests.len() as u64
        }
    }

    #[test]
    fn appends_deduplicates_and_rejects_in_order() {
        let a = Keypair::from_seed([1; 32]).public();
        let b = Keypair::from_seed([2; 32]).public();
        let d = |s: &str| Hash32::digest(s.as_bytes());
        let mut ledger = Ledger::default();
        ledger.digests.insert(d("old"), (a, "n0".into()));
        let batch = [
            Entry {
                digest: d("x"),
                key: &a,
                nonce: "n1",
            },
            // The same attestation from a second proposer's block.
            Entry {
                digest: d("x"),
                key: &a,
                nonce: "n1",
            },
            // Another body under the same key and nonce, later in ledger order.
            Entry {
                digest: d("y"),
                key: &a,
                nonce: "n1",
            },
            // The nonce is the key's: another key may use it.
            Entry {
                digest: d("z"),
                key: &b,
                nonce: "n1",
            },
            Entry {
                digest: d("old"),
                key: &a,
                nonce: "n0",
            },
            Entry {
                digest: d("w"),
                key: &a,
                nonce: "n0",
            },
        ];
        assert_eq!(
            place(&ledger, batch),
            vec![
                Placement::Appended { log_index: 1 },
                Placement::Duplicate,
                Placement::Rejected { owner: d("x") },
                Placement::Appended { log_index: 2 },
                Placement::Duplicate,
                Placement::Rejected { owner: d("old") },
            ]
        );
    }
}
