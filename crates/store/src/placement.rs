//! Storing a block and placing its attestations (and registry entries) in it, the parts
//! that do not depend on the driver: the block's checked column values, what a hash that
//! is already stored means, which attestations a block may not hold, and what another
//! validator's block must arrive with ([`check_peer_parts`]). An attestation
//! keeps its first placement: a block holding one already placed in another block (two
//! validators included it) places only the others, and a contested attestation (carried
//! by another validator's block) is never placed. Each backend keeps its statements and
//! its transactions (one on PostgreSQL, several on SQLite).

use std::collections::HashSet;

use bizra_ledger::block::Block;
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::Hash32;

use crate::codec::to_i64;
use crate::error::StoreError;
use crate::types::{BlockInsert, NewAttestation, StoredBlock};

/// A new block's column values besides its hash, signature and ids, checked before any
/// transaction begins.
pub(crate) struct NewBlockRow {
    pub header: String,
    pub epoch: i64,
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
            epoch: to_i64(block.header.epoch, "block epoch")?,
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

/// A block may hold an attestation once. Checked before any transaction, so that a
/// repeated digest costs no lookup: a `Conflict` naming the first one repeated.
pub(crate) fn check_repeats(block: &Block) -> Result<(), StoreError> {
    let mut seen = HashSet::with_capacity(block.attestation_ids.len());
    match block.attestation_ids.iter().find(|d| !seen.insert(**d)) {
        Some(digest) => Err(StoreError::Conflict(format!(
            "attestation {digest} appears twice in block {}",
            block.hash
        ))),
        None => Ok(()),
    }
}

/// A block may hold only stored attestations (submitted here, or carried by a block and
/// stored with [`crate::Store::insert_block_attestations`], contested ones included):
/// `NotFound` naming the first of `ids` (in block order) that `known` lacks.
pub(crate) fn check_known(ids: &[Hash32], known: &HashSet<Hash32>) -> Result<(), StoreError> {
    match ids.iter().find(|d| !known.contains(*d)) {
        Some(digest) => Err(StoreError::NotFound(format!("attestation {digest}"))),
        None => Ok(()),
    }
}

/// What another validator's block arrives with ([`crate::Store::insert_peer_block`]) must
/// be its own: exactly its attestations, in block order (their digests are
/// `block.attestation_ids`), and a certificate, when given, for this block. `Invalid`
/// otherwise, checked before any transaction.
pub(crate) fn check_peer_parts(
    block: &Block,
    attestations: &[NewAttestation],
    qc: Option<&QuorumCertificate>,
) -> Result<(), StoreError> {
    let ids = &block.attestation_ids;
    if attestations.len() != ids.len() {
        return Err(StoreError::Invalid(format!(
            "block {} holds {} attestations, {} were given",
            block.hash,
            ids.len(),
            attestations.len()
        )));
    }
    if let Some((i, (id, given))) = ids
        .iter()
        .zip(attestations)
        .enumerate()
        .find(|(_, (id, given))| **id != given.digest)
    {
        return Err(StoreError::Invalid(format!(
            "attestation {i} of block {} is {id}, {} was given",
            block.hash, given.digest
        )));
    }
    match qc {
        Some(qc) if qc.block_hash != block.hash => Err(StoreError::Invalid(format!(
            "the certificate given with block {} is for block {}",
            block.hash, qc.block_hash
        ))),
        _ => Ok(()),
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
            certified: false,
            certified_at_ms: None,
            commit_seq: None,
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
    fn a_block_holds_each_attestation_once_and_only_stored_ones() {
        let (a, c) = (Hash32::digest(b"a"), Hash32::digest(b"c"));
        assert_eq!(check_repeats(&block(vec![a, c])), Ok(()));
        let twice = block(vec![a, c, a]);
        assert_eq!(
            check_repeats(&twice),
            Err(StoreError::Conflict(format!(
                "attestation {a} appears twice in block {}",
                twice.hash
            )))
        );
        let known: HashSet<Hash32> = [a].into();
        assert_eq!(check_known(&[a, a], &known), Ok(()));
        assert_eq!(
            check_known(&[a, c], &known),
            Err(StoreError::NotFound(format!("attestation {c}")))
        );
    }

    fn item(digest: Hash32) -> NewAttestation {
        NewAttestation {
            digest,
            attester_pubkey: bizra_ledger::crypto::PublicKey([1; 32]),
            attester_id: "a".into(),
            nonce: "n".into(),
            body: Vec::new(),
            impact_score: 0.5,
            received_at_ms: 1,
        }
    }

    #[test]
    fn a_peer_block_comes_with_its_own_attestations_and_certificate() {
        let (a, c) = (Hash32::digest(b"a"), Hash32::digest(b"c"));
        let b = block(vec![a, c]);
        let qc = |hash: Hash32| QuorumCertificate {
            block_hash: hash,
            votes: vec![],
            weight: 1,
            total_weight: 1,
        };
        assert_eq!(check_peer_parts(&b, &[item(a), item(c)], None), Ok(()));
        assert_eq!(
            check_peer_parts(&b, &[item(a), item(c)], Some(&qc(b.hash))),
            Ok(())
        );
        assert_eq!(check_peer_parts(&block(vec![]), &[], None), Ok(()));
        for (given, want) in [
            (vec![item(a)], "holds 2 attestations, 1 were given"),
            (
                vec![item(a), item(c), item(a)],
                "holds 2 attestations, 3 were given",
            ),
            (vec![item(c), item(a)], "attestation 0 of block"),
            (vec![item(a), item(a)], "attestation 1 of block"),
        ] {
            match check_peer_parts(&b, &given, None) {
                Err(StoreError::Invalid(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        let other = Hash32::digest(b"other");
        assert_eq!(
            check_peer_parts(&b, &[item(a), item(c)], Some(&qc(other))),
            Err(StoreError::Invalid(format!(
                "the certificate given with block {} is for block {other}",
                b.hash
            )))
        );
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
