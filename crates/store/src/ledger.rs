//! The ledger (docs/protocol.md §3.6), the parts that do not depend on the driver: a
//! commit batch checked and turned into column values before any transaction, the
//! verdicts on what a commit or a revive refers to, and the rows the ledger reads return. Each backend
//! keeps its statements and runs a commit as one transaction.
//!
//! What a commit may not do, whatever the backend (nothing is written then):
//! - leave a gap in the ledger or rewrite it: the first `log_index` must be the ledger's
//!   length, the rest follow one by one (`Conflict`);
//! - commit a block twice, or an unknown one (`Conflict`, `NotFound`), or a registry entry
//!   twice, or an unknown one;
//! - name an attestation the store does not hold (`NotFound`), or a block for a ledger or
//!   rejected row that is not committed by the end of the batch (`Conflict`);
//! - put a rejected digest in the ledger, or reject one that is in it (`Conflict`).
//!
//! A rejected row for a digest rejected before is kept as it was (the ledger order meets
//! a rejected attestation again in every later block that holds it; the first verdict is
//! the one recorded, and the owner of a key and nonce never changes).

use std::collections::{HashMap, HashSet};

use bizra_ledger::crypto::PublicKey;
use bizra_ledger::Hash32;

use crate::codec::{to_hash, to_i64, to_pubkey, to_u64};
use crate::error::StoreError;
use crate::rows::NonceOwners;
use crate::types::{CommitBatch, LedgerRow};

/// A [`CommitBatch`] checked in itself, with the column values a backend binds.
pub(crate) struct Commit<'b> {
    pub batch: &'b CommitBatch,
    /// `finalized_at_ms` of the blocks.
    pub at: i64,
    /// `log_index` and `block_index` of each appended row.
    pub log_indexes: Vec<i64>,
    pub appended_indexes: Vec<i64>,
    /// `block_index` of each rejected row.
    pub rejected_indexes: Vec<i64>,
    pub entries: Vec<i64>,
    /// `batch.state` as stored.
    pub state: String,
    /// The blocks the rows name that the batch does not commit: they must be committed
    /// already.
    pub outside: Vec<Hash32>,
    /// Every digest the rows name, once each: each must be stored.
    pub digests: Vec<Hash32>,
    /// The attestations to place where the ledger met them if they are in no block here
    /// (after a `revive`): (digest, block, index), appended rows then rejected ones.
    pub placements: Vec<(Hash32, Hash32, i64)>,
}

impl<'b> Commit<'b> {
    pub(crate) fn new(batch: &'b CommitBatch) -> Result<Commit<'b>, StoreError> {
        let at = to_i64(batch.at_ms, "finalized_at_ms")?;
        let mut blocks = HashSet::with_capacity(batch.blocks.len());
        if let Some(twice) = batch.blocks.iter().find(|h| !blocks.insert(**h)) {
            return Err(StoreError::Conflict(format!(
                "block {twice} is twice in one commit"
            )));
        }
        let mut log_indexes = Vec::with_capacity(batch.appended.len());
        let mut appended_indexes = Vec::with_capacity(batch.appended.len());
        let mut appended = HashSet::with_capacity(batch.appended.len());
        for (i, row) in batch.appended.iter().enumerate() {
            if let Some(prev) = i.checked_sub(1).map(|p| batch.appended[p].log_index) {
                if prev.checked_add(1) != Some(row.log_index) {
                    return Err(StoreError::Conflict(format!(
                        "log_index {} does not follow {prev} in one commit",
                        row.log_index
                    )));
                }
            }
            if !appended.insert(row.digest) {
                return Err(StoreError::Conflict(format!(
                    "attestation {} is appended twice in one commit",
                    row.digest
                )));
            }
            log_indexes.push(to_i64(row.log_index, "log_index")?);
            appended_indexes.push(to_i64(row.block_index, "block_index")?);
        }
        let mut rejected_indexes = Vec::with_capacity(batch.rejected.len());
        for row in &batch.rejected {
            if appended.contains(&row.digest) {
                return Err(StoreError::Conflict(format!(
                    "attestation {} is both appended and rejected in one commit",
                    row.digest
                )));
            }
            rejected_indexes.push(to_i64(row.block_index, "block_index")?);
        }
        let mut entries = Vec::with_capacity(batch.entries.len());
        let mut seen = HashSet::with_capacity(batch.entries.len());
        for &seq in &batch.entries {
            if !seen.insert(seq) {
                return Err(StoreError::Conflict(format!(
                    "registry entry {seq} is twice in one commit"
                )));
            }
            entries.push(to_i64(seq, "registry seq")?);
        }
        let state = serde_json::to_string(&batch.state)
            .map_err(|e| StoreError::Invalid(format!("commit state: {e}")))?;

        let named = batch
            .appended
            .iter()
            .map(|r| r.block_hash)
            .chain(batch.rejected.iter().map(|r| r.block_hash));
        let mut outside_seen = HashSet::new();
        let outside = named
            .filter(|h| !blocks.contains(h) && outside_seen.insert(*h))
            .collect();
        let mut digest_seen = HashSet::with_capacity(appended.len() + batch.rejected.len());
        let digests = batch
            .appended
            .iter()
            .map(|r| r.digest)
            .chain(batch.rejected.iter().map(|r| r.digest))
            .filter(|d| digest_seen.insert(*d))
            .collect();
        let placements = batch
            .appended
            .iter()
            .zip(&appended_indexes)
            .map(|(r, i)| (r.digest, r.block_hash, *i))
            .chain(
                batch
                    .rejected
                    .iter()
                    .zip(&rejected_indexes)
                    .map(|(r, i)| (r.digest, r.block_hash, *i)),
            )
            .collect();
        Ok(Commit {
            batch,
            at,
            log_indexes,
            appended_indexes,
            rejected_indexes,
            entries,
            state,
            outside,
            digests,
            placements,
        })
    }

    /// The ledger holds `len` attestations: the batch's first `log_index` must be `len`.
    pub(crate) fn check_continues(&self, len: u64) -> Result<(), StoreError> {
        match self.batch.appended.first() {
            Some(first) if first.log_index != len => Err(StoreError::Conflict(format!(
                "log_index {} does not continue the ledger, which holds {len}",
                first.log_index
            ))),
            _ => Ok(()),
        }
    }
}

/// Why block `hash` could not be committed: `committed` is what its row says (`None`: no
/// such block).
pub(crate) fn block_not_committed(hash: &Hash32, committed: Option<bool>) -> StoreError {
    match committed {
        None => StoreError::NotFound(format!("block {hash}")),
        Some(true) => StoreError::Conflict(format!("block {hash} is already committed")),
        Some(false) => StoreError::Conflict(format!("block {hash} could not be committed")),
    }
}

/// Why registry entry `seq` could not be committed.
pub(crate) fn entry_not_committed(seq: u64, committed: Option<bool>) -> StoreError {
    match committed {
        None => StoreError::NotFound(format!("registry entry {seq}")),
        Some(true) => StoreError::Conflict(format!("registry entry {seq} is already committed")),
        Some(false) => StoreError::Conflict(format!("registry entry {seq} could not be committed")),
    }
}

/// Why block `hash` cannot be revived (released as dead): `committed` is what its row
/// says (`None`: no such block). A committed block never reverts.
pub(crate) fn not_revivable(hash: &Hash32, committed: Option<bool>) -> Option<StoreError> {
    match committed {
        None => Some(StoreError::NotFound(format!("block {hash}"))),
        Some(true) => Some(StoreError::Conflict(format!(
            "block {hash} is committed; it cannot be revived"
        ))),
        Some(false) => None,
    }
}

/// A ledger or rejected row names block `hash`, which is neither in the batch nor
/// committed.
pub(crate) fn block_outside(hash: &Hash32) -> StoreError {
    StoreError::Conflict(format!(
        "the commit places attestations in block {hash}, which is not committed"
    ))
}

/// The first of `digests` that `known` lacks: an attestation the store does not hold.
pub(crate) fn check_stored(digests: &[Hash32], known: &HashSet<Hash32>) -> Result<(), StoreError> {
    match digests.iter().find(|d| !known.contains(*d)) {
        Some(d) => Err(StoreError::NotFound(format!("attestation {d}"))),
        None => Ok(()),
    }
}

/// An appended digest that the ledger order rejected before.
pub(crate) fn was_rejected(digest: &Hash32) -> StoreError {
    StoreError::Conflict(format!(
        "attestation {digest} was rejected; it cannot join the ledger"
    ))
}

/// A rejected row whose digest is in the ledger, or whose owner is not.
pub(crate) fn bad_rejection(digest: &Hash32, owner: &Hash32, in_ledger: bool) -> StoreError {
    if in_ledger {
        StoreError::Conflict(format!(
            "attestation {digest} is in the ledger; it cannot be rejected"
        ))
    } else {
        StoreError::Conflict(format!(
            "attestation {digest} is rejected for {owner}, which is not in the ledger"
        ))
    }
}

/// The stored consensus state, parsed.
pub(crate) fn commit_state(text: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::corrupt(format!("meta commit_state: {e}")))
    })
    .transpose()
}

/// The columns of a ledger row.
pub(crate) struct LedgerColumns<'r> {
    pub log_index: i64,
    pub digest: &'r [u8],
    pub block_hash: &'r [u8],
    pub block_index: i64,
}

impl LedgerColumns<'_> {
    pub(crate) fn into_row(self) -> Result<LedgerRow, StoreError> {
        Ok(LedgerRow {
            log_index: to_u64(self.log_index, "log_index")?,
            digest: to_hash(self.digest, "ledger digest")?,
            block_hash: to_hash(self.block_hash, "ledger block_hash")?,
            block_index: to_u64(self.block_index, "ledger block_index")?,
        })
    }
}

/// What [`crate::Store::ledger_lookup`] found: the asked digests that are in the ledger,
/// and the ledger digest of each asked (key, nonce).
#[derive(Default)]
pub(crate) struct Lookup {
    pub in_ledger: HashSet<Hash32>,
    pub owners: NonceOwners,
}

impl Lookup {
    /// One answer per asked digest and per asked pair, in the order asked.
    pub(crate) fn answer(
        &self,
        digests: &[Hash32],
        pairs: &[(PublicKey, String)],
    ) -> (Vec<bool>, Vec<Option<Hash32>>) {
        (
            digests.iter().map(|d| self.in_ledger.contains(d)).collect(),
            crate::rows::owners_in_order(pairs, &self.owners),
        )
    }
}

/// The columns of an attestation's key and nonce.
pub(crate) struct KeyColumns<'r> {
    pub digest: &'r [u8],
    pub attester_pubkey: &'r [u8],
    pub nonce: String,
}

/// What [`KeyColumns`] found, by digest.
pub(crate) type Keys = HashMap<Hash32, (PublicKey, String)>;

impl KeyColumns<'_> {
    pub(crate) fn add_to(self, found: &mut Keys) -> Result<(), StoreError> {
        let digest = to_hash(self.digest, "attestation digest")?;
        let key = to_pubkey(self.attester_pubkey, "attester pubkey")?;
        found.insert(digest, (key, self.nonce));
        Ok(())
    }
}

/// One answer per asked digest, in order.
pub(crate) fn keys_in_order(digests: &[Hash32], found: &Keys) -> Vec<Option<(PublicKey, String)>> {
    digests.iter().map(|d| found.get(d).cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RejectedRow;

    fn h(s: &str) -> Hash32 {
        Hash32::digest(s.as_bytes())
    }

    fn row(log_index: u64, digest: &str, block: &str) -> LedgerRow {
        LedgerRow {
            log_index,
            digest: h(digest),
            block_hash: h(block),
            block_index: log_index,
        }
    }

    fn batch() -> CommitBatch {
        CommitBatch {
            blocks: vec![h("b1"), h("b2")],
            appended: vec![row(5, "x", "b1"), row(6, "y", "old"), row(7, "z", "b2")],
            rejected: vec![RejectedRow {
                digest: h("w"),
                owner: h("x"),
                block_hash: h("old"),
                block_index: 3,
            }],
            entries: vec![4, 2],
            state: serde_json::json!({"epoch": 1}),
            at_ms: 99,
        }
    }

    #[test]
    fn a_batch_becomes_columns() {
        let b = batch();
        let c = Commit::new(&b).unwrap();
        assert_eq!((c.at, c.log_indexes.as_slice()), (99, &[5, 6, 7][..]));
        assert_eq!(c.rejected_indexes, [3]);
        assert_eq!(c.entries, [4, 2]);
        assert_eq!(c.state, r#"{"epoch":1}"#);
        // "old" is named twice and is not in the batch: committed before, or an error.
        assert_eq!(c.outside, [h("old")]);
        assert_eq!(c.digests, [h("x"), h("y"), h("z"), h("w")]);
        assert_eq!(c.placements.len(), 4);
        assert_eq!(c.placements[3], (h("w"), h("old"), 3));
        assert_eq!(c.check_continues(5), Ok(()));
        assert!(matches!(c.check_continues(4), Err(StoreError::Conflict(_))));
        assert!(matches!(c.check_continues(6), Err(StoreError::Conflict(_))));
        // No appended row: any ledger length.
        let empty = CommitBatch::default();
        assert_eq!(Commit::new(&empty).unwrap().check_continues(42), Ok(()));
    }

    #[test]
    fn a_batch_that_contradicts_itself_is_refused() {
        let conflict = |b: CommitBatch| match Commit::new(&b) {
            Err(StoreError::Conflict(why)) => why,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted"),
        };
        let mut gap = batch();
        gap.appended[2].log_index = 8;
        assert_eq!(conflict(gap), "log_index 8 does not follow 6 in one commit");
        let mut twice = batch();
        twice.blocks.push(h("b1"));
        conflict(twice);
        let mut twice = batch();
        twice.appended[1].digest = h("x");
        conflict(twice);
        let mut both = batch();
        both.rejected[0].digest = h("y");
        conflict(both);
        let mut twice = batch();
        twice.entries.push(4);
        conflict(twice);
        let mut far = batch();
        far.at_ms = u64::MAX;
        assert!(matches!(Commit::new(&far), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn verdicts_name_what_is_wrong() {
        let b = h("b");
        assert_eq!(
            block_not_committed(&b, None),
            StoreError::NotFound(format!("block {b}"))
        );
        assert!(matches!(
            block_not_committed(&b, Some(true)),
            StoreError::Conflict(_)
        ));
        assert_eq!(not_revivable(&b, Some(false)), None);
        assert!(matches!(
            not_revivable(&b, Some(true)),
            Some(StoreError::Conflict(_))
        ));
        assert!(matches!(
            not_revivable(&b, None),
            Some(StoreError::NotFound(_))
        ));
        assert!(matches!(
            entry_not_committed(3, None),
            StoreError::NotFound(_)
        ));
        assert!(matches!(
            entry_not_committed(3, Some(true)),
            StoreError::Conflict(_)
        ));
        let known: HashSet<Hash32> = [h("x")].into();
        assert_eq!(check_stored(&[h("x")], &known), Ok(()));
        assert_eq!(
            check_stored(&[h("x"), h("q")], &known),
            Err(StoreError::NotFound(format!("attestation {}", h("q"))))
        );
        assert_eq!(commit_state(None), Ok(None));
        assert_eq!(
            commit_state(Some(r#"{"a":1}"#.into())),
            Ok(Some(serde_json::json!({"a": 1})))
        );
        assert!(matches!(
            commit_state(Some("{".into())),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn rows_and_answers() {
        let r = LedgerColumns {
            log_index: 3,
            digest: h("x").as_bytes(),
            block_hash: h("b").as_bytes(),
            block_index: 1,
        }
        .into_row()
        .unwrap();
        assert_eq!(
            r,
            LedgerRow {
                log_index: 3,
                digest: h("x"),
                block_hash: h("b"),
                block_index: 1,
            }
        );
        let (x, b) = (h("x"), h("b"));
        let bad = LedgerColumns {
            log_index: -1,
            digest: x.as_bytes(),
            block_hash: b.as_bytes(),
            block_index: 1,
        };
        assert!(matches!(bad.into_row(), Err(StoreError::Corrupt(_))));

        let k = PublicKey([1; 32]);
        let mut lookup = Lookup::default();
        lookup.in_ledger.insert(h("x"));
        lookup.owners.insert((k, "n".into()), h("x"));
        assert_eq!(
            lookup.answer(&[h("y"), h("x")], &[(k, "n".into()), (k, "m".into())]),
            (vec![false, true], vec![Some(h("x")), None])
        );

        let mut keys = Keys::new();
        KeyColumns {
            digest: h("x").as_bytes(),
            attester_pubkey: &k.0,
            nonce: "n".into(),
        }
        .add_to(&mut keys)
        .unwrap();
        assert_eq!(
            keys_in_order(&[h("q"), h("x")], &keys),
            vec![None, Some((k, "n".to_string()))]
        );
    }
}
