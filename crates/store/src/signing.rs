//! The signing guard (docs/protocol.md §3.4), the part that does not depend on the
//! driver: a validator signs at most one block per (epoch, height, proposer), its own block
//! or its vote for another's. Each backend takes a slot with an atomic
//! `INSERT … ON CONFLICT DO NOTHING`, then reads the row it met; [`Slot::verdict`] says what
//! that means. Rows are never deleted, so a slot once taken stays taken.

use bizra_ledger::block::Block;
use bizra_ledger::Hash32;

use crate::codec::{to_hash, to_i64};
use crate::error::StoreError;
use crate::types::Signing;

/// A slot and the block to record for it, as column values.
pub(crate) struct Slot {
    pub epoch: i64,
    pub height: i64,
    pub proposer: Hash32,
    pub block: Hash32,
    pub at: i64,
}

impl Slot {
    pub(crate) fn new(
        epoch: u64,
        height: u64,
        proposer: &Hash32,
        block: &Hash32,
        at_ms: u64,
    ) -> Result<Slot, StoreError> {
        Ok(Slot {
            epoch: to_i64(epoch, "epoch")?,
            height: to_i64(height, "height")?,
            proposer: *proposer,
            block: *block,
            at: to_i64(at_ms, "signed at_ms")?,
        })
    }

    /// The slot of a block its proposer signs.
    pub(crate) fn of_block(block: &Block, at_ms: u64) -> Result<Slot, StoreError> {
        Slot::new(
            block.header.epoch,
            block.header.height,
            &block.header.proposer,
            &block.hash,
            at_ms,
        )
    }

    /// `inserted`: the insert took the slot; else `stored` is the block hash of the row it
    /// met.
    pub(crate) fn verdict(
        &self,
        inserted: bool,
        stored: Option<&[u8]>,
    ) -> Result<Signing, StoreError> {
        if inserted {
            return Ok(Signing::First);
        }
        let signed = stored
            .map(|h| to_hash(h, "signed block_hash"))
            .transpose()?
            .ok_or_else(|| {
                StoreError::corrupt(format!(
                    "slot ({}, {}, {}) was taken, but its row is not stored",
                    self.epoch, self.height, self.proposer
                ))
            })?;
        Ok(if signed == self.block {
            Signing::Again
        } else {
            Signing::Conflict { signed }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let (p, b, other) = (
            Hash32::digest(b"p"),
            Hash32::digest(b"b"),
            Hash32::digest(b"o"),
        );
        let slot = Slot::new(1, 2, &p, &b, 3).unwrap();
        assert_eq!(slot.verdict(true, None), Ok(Signing::First));
        assert_eq!(slot.verdict(false, Some(b.as_bytes())), Ok(Signing::Again));
        assert_eq!(
            slot.verdict(false, Some(other.as_bytes())),
            Ok(Signing::Conflict { signed: other })
        );
        assert!(matches!(
            slot.verdict(false, None),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            slot.verdict(false, Some(&[1, 2])),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            Slot::new(u64::MAX, 0, &p, &b, 0),
            Err(StoreError::Invalid(_))
        ));
    }
}
