//! Storing a block and placing its attestations (and registry entries) in it, the parts
//! that do not depend on the driver: the block's checked column values, what a hash that
//! is already stored means, and why a placement did not place everything it was given.
//! Each backend keeps its statements and its transactions (one on PostgreSQL, several on
//! SQLite).

use std::collections::HashSet;

use bizra_ledger::block::Block;
use bizra_ledger::Hash32;

use crate::codec::{to_hash, to_i64};
use crate::error::StoreError;
use crate::types::{BlockInsert, StoredBlock};

/// A new block's column values besides its hash, signature and ids, checked before any
/// transaction begins.
pub(crate) struct NewBlockRow {
    pub header: String,
    pub height: i64,
    pub timestamp: i64,
    pub created: i64,
}

impl NewBlockRow {
    pub(crate) fn new(block: &Block, created_at_ms: u64) -> Result<NewBlockRow, StoreError> {
        // A block whose hash does not match its header would poison every later read.
        block
            .check_integrity()
            .map_err(|e| StoreError::Invalid(format!("block {}: {e}", block.hash)))?;
        Ok(NewBlockRow {
            header: serde_json::to_string(&block.header)
                .map_err(|e| StoreError::Invalid(format!("block {} header: {e}", block.hash)))?,
            height: to_i64(block.header.height, "block height")?,
            timestamp: to_i64(block.header.timestamp_ms, "block timestamp_ms")?,
            created: to_i64(created_at_ms, "created_at_ms")?,
        })
    }
}

/// What inserting `block` means when its hash is stored already, as `existing`: the
/// identical block again is idempotent, anything else under that hash a conflict.
pub(crate) fn already_stored(
    block: &Block,
    existing: Option<StoredBlock>,
) -> Result<BlockInsert, StoreError> {
    if existing.is_some_and(|e| e.block == *block) {
        Ok(BlockInsert::AlreadyStored)
    } else {
        Err(StoreError::Conflict(format!(
            "block {} is stored with different content",
            block.hash
        )))
    }
}

/// Why placing some of a block's attestations placed fewer rows than it was given. The
/// backend walks the digests in block order, asking [`Misplacement::repeated`] first and
/// then, with the row it looked up, [`Misplacement::owned`]; the first answer is the
/// error. Two steps so that a repeated digest costs no lookup.
pub(crate) struct Misplacement<'b> {
    block: &'b Block,
    seen: HashSet<Hash32>,
}

impl<'b> Misplacement<'b> {
    pub(crate) fn new(block: &'b Block) -> Misplacement<'b> {
        Misplacement {
            block,
            // Sized for a walk of the whole block (SQLite's check before placing), so
            // that walk allocates once.
            seen: HashSet::with_capacity(block.attestation_ids.len()),
        }
    }

    /// A conflict when `digest` came before in this walk.
    pub(crate) fn repeated(&mut self, digest: &Hash32) -> Option<StoreError> {
        (!self.seen.insert(*digest)).then(|| {
            StoreError::Conflict(format!(
                "attestation {digest} appears twice in block {}",
                self.block.hash
            ))
        })
    }

    /// What the row of `digest` says: `owner` is `None` when no attestation has that
    /// digest, else its `block_hash` column. A row already in this block is not a
    /// problem: the placement that failed may have placed it.
    pub(crate) fn owned(
        &self,
        digest: &Hash32,
        owner: Option<Option<&[u8]>>,
    ) -> Option<StoreError> {
        match owner {
            None => Some(StoreError::NotFound(format!("attestation {digest}"))),
            Some(Some(other)) if other != self.block.hash.as_bytes().as_slice() => {
                Some(StoreError::Conflict(format!(
                    "attestation {digest} is already in block {}",
                    // The message is the point here; a malformed column reads as "?".
                    to_hash(other, "block hash").map_or_else(|_| "?".to_string(), |h| h.to_hex())
                )))
            }
            Some(_) => None,
        }
    }

    /// When no digest explained it (rows changed between the placement and the walk).
    pub(crate) fn unexplained(&self) -> StoreError {
        StoreError::Conflict(format!(
            "the attestations of block {} could not all be placed",
            self.block.hash
        ))
    }
}

/// Why placing registry entry `seq` in a block changed no row: it is in another block
/// when it is `stored` (one already in this block matches the update, which keeps the
/// call idempotent), else it does not exist.
pub(crate) fn entry_not_placed(seq: u64, stored: bool) -> StoreError {
    if stored {
        StoreError::Conflict(format!("registry entry {seq} is already in another block"))
    } else {
        StoreError::NotFound(format!("registry entry {seq}"))
    }
}

#[cfg(test)]
mod tests {
    use bizra_ledger::block::BlockContent;
    use bizra_ledger::crypto::Keypair;

    use super::*;

    fn block(ids: Vec<Hash32>) -> Block {
        Block::propose(
            BlockContent {
                chain_id: "test".into(),
                epoch: 0,
                height: 1,
                parents: vec![Hash32::digest(b"parent")],
                attestation_ids: ids,
                entry_ids: vec![],
                timestamp_ms: 5,
            },
            &Keypair::from_seed([7; 32]),
        )
        .expect("a well-formed block")
    }

    fn stored(block: Block) -> StoredBlock {
        StoredBlock {
            block,
            finalized: false,
            finalized_at_ms: None,
            qc: None,
            created_at_ms: 1,
        }
    }

    #[test]
    fn a_block_is_checked_before_its_columns_are_made() {
        let b = block(vec![Hash32::digest(b"a")]);
        let row = NewBlockRow::new(&b, 9).expect("columns");
        assert_eq!((row.height, row.timestamp, row.created), (1, 5, 9));
        assert!(row.header.contains("\"att_count\":1"));

        let mut tampered = b.clone();
        tampered.header.timestamp_ms += 1;
        assert!(matches!(
            NewBlockRow::new(&tampered, 9),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            NewBlockRow::new(&b, u64::MAX),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn only_the_identical_block_is_already_stored() {
        let b = block(vec![Hash32::digest(b"a")]);
        assert_eq!(
            already_stored(&b, Some(stored(b.clone()))),
            Ok(BlockInsert::AlreadyStored)
        );
        let mut other = b.clone();
        other.signature = None;
        assert!(matches!(
            already_stored(&b, Some(stored(other))),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            already_stored(&b, None),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn the_first_misplaced_attestation_is_named() {
        let (a, c) = (Hash32::digest(b"a"), Hash32::digest(b"c"));
        let b = block(vec![a, c]);
        let elsewhere = Hash32::digest(b"another block");
        let mut why = Misplacement::new(&b);

        assert!(why.repeated(&a).is_none());
        // In no block yet, or already in this one (placed by the failed statement).
        assert!(why.owned(&a, Some(None)).is_none());
        assert!(why.owned(&a, Some(Some(b.hash.as_bytes()))).is_none());

        let Some(StoreError::Conflict(twice)) = why.repeated(&a) else {
            panic!("a second copy is a conflict");
        };
        assert_eq!(
            twice,
            format!("attestation {a} appears twice in block {}", b.hash)
        );
        assert_eq!(
            why.owned(&c, None),
            Some(StoreError::NotFound(format!("attestation {c}")))
        );
        assert_eq!(
            why.owned(&c, Some(Some(elsewhere.as_bytes()))),
            Some(StoreError::Conflict(format!(
                "attestation {c} is already in block {}",
                elsewhere.to_hex()
            )))
        );
        assert_eq!(
            why.owned(&c, Some(Some(&[1, 2, 3]))),
            Some(StoreError::Conflict(format!(
                "attestation {c} is already in block ?"
            )))
        );
        assert!(matches!(why.unexplained(), StoreError::Conflict(_)));
    }

    #[test]
    fn a_registry_entry_that_was_not_placed() {
        assert!(matches!(entry_not_placed(4, true), StoreError::Conflict(_)));
        assert_eq!(
            entry_not_placed(4, false),
            StoreError::NotFound("registry entry 4".into())
        );
    }
}
