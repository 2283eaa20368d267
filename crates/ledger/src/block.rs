//! Block headers, block hashes and proposer signatures (docs/protocol.md §3.1).

use serde::{Deserialize, Serialize};

use crate::canonical::{to_canonical_bytes, CanonicalError};
use crate::crypto::{self, Keypair, PublicKey, SignatureBytes, BLOCK_TAG};
use crate::hash::Hash32;
use crate::merkle;
use crate::params::MAX_PARENTS;

pub const BLOCK_VERSION: u32 = 1;

/// What a block commits to. Its hash is BLAKE3 of its RFC 8785 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockHeader {
    pub version: u32,
    pub chain_id: String,
    pub height: u64,
    /// Sorted, unique; 1–8 entries, none for genesis.
    pub parents: Vec<Hash32>,
    /// Merkle root of the block's attestation digests, in block order.
    pub att_root: Hash32,
    pub att_count: u64,
    /// Validator id of the proposer; for genesis, the digest of the genesis document.
    pub proposer: Hash32,
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block version must be {BLOCK_VERSION}")]
    Version,
    #[error("height, att_count and timestamp_ms must be at most 2^53 - 1")]
    UnsafeInteger,
    #[error("a block needs 1 to {MAX_PARENTS} parents")]
    ParentCount,
    #[error("parents must be sorted and unique")]
    ParentOrder,
    #[error("att_count {header} does not match {actual} attestation ids")]
    AttCount { header: u64, actual: usize },
    #[error("att_root does not match the attestation ids")]
    AttRoot,
    #[error("block hash does not match the header")]
    Hash,
    #[error("block has no proposer signature")]
    Unsigned,
    #[error("proposer signature does not verify")]
    Signature,
    #[error("proposer key does not match the header's proposer id")]
    ProposerKey,
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

impl BlockHeader {
    pub fn hash(&self) -> Result<Hash32, CanonicalError> {
        Ok(Hash32::digest(&to_canonical_bytes(self)?))
    }

    /// Version and parent-list rules that need no other block.
    pub fn check_shape(&self) -> Result<(), BlockError> {
        if self.version != BLOCK_VERSION {
            return Err(BlockError::Version);
        }
        // Larger integers would be rounded by RFC 8785 and the hash would differ between
        // implementations.
        let max = crate::attestation::schema::MAX_SAFE_INTEGER;
        if self.height > max || self.att_count > max || self.timestamp_ms > max {
            return Err(BlockError::UnsafeInteger);
        }
        if self.height > 0 && !(1..=MAX_PARENTS).contains(&self.parents.len()) {
            return Err(BlockError::ParentCount);
        }
        if self.height == 0 && !self.parents.is_empty() {
            return Err(BlockError::ParentCount);
        }
        if self.parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err(BlockError::ParentOrder);
        }
        Ok(())
    }
}

/// A header with its hash, the proposer's signature and the ids of its attestations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub hash: Hash32,
    pub header: BlockHeader,
    /// Over `b"bizra/block/v1"` ‖ hash; `None` only for genesis.
    pub signature: Option<SignatureBytes>,
    pub attestation_ids: Vec<Hash32>,
}

impl Block {
    /// Builds and signs a block over `attestation_ids`; `parents` are sorted here.
    pub fn propose(
        chain_id: &str,
        height: u64,
        mut parents: Vec<Hash32>,
        attestation_ids: Vec<Hash32>,
        timestamp_ms: u64,
        proposer: &Keypair,
    ) -> Result<Block, BlockError> {
        parents.sort();
        parents.dedup();
        let header = BlockHeader {
            version: BLOCK_VERSION,
            chain_id: chain_id.to_string(),
            height,
            parents,
            att_root: merkle::root(&attestation_ids),
            att_count: attestation_ids.len() as u64,
            proposer: proposer.public().validator_id(),
            timestamp_ms,
        };
        header.check_shape()?;
        let hash = header.hash()?;
        Ok(Block {
            hash,
            signature: Some(proposer.sign_tagged(BLOCK_TAG, &hash)),
            header,
            attestation_ids,
        })
    }

    /// Everything a block says about itself: shape, hash, attestation root and count.
    pub fn check_integrity(&self) -> Result<(), BlockError> {
        self.header.check_shape()?;
        if self.header.hash()? != self.hash {
            return Err(BlockError::Hash);
        }
        if self.header.att_count != self.attestation_ids.len() as u64 {
            return Err(BlockError::AttCount {
                header: self.header.att_count,
                actual: self.attestation_ids.len(),
            });
        }
        if self.header.height > 0 && merkle::root(&self.attestation_ids) != self.header.att_root {
            return Err(BlockError::AttRoot);
        }
        Ok(())
    }

    /// The proposer's signature, by `key`, whose id must be the header's proposer.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), BlockError> {
        if key.validator_id() != self.header.proposer {
            return Err(BlockError::ProposerKey);
        }
        let sig = self.signature.as_ref().ok_or(BlockError::Unsigned)?;
        crypto::verify_tagged(key, sig, BLOCK_TAG, &self.hash).map_err(|_| BlockError::Signature)
    }

    /// The inclusion proof of the attestation at `index`.
    pub fn proof(&self, index: usize) -> Option<merkle::InclusionProof> {
        merkle::prove(&self.attestation_ids, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(parents: Vec<Hash32>, n: u32) -> Block {
        let ids = (0..n).map(|i| Hash32::digest(&i.to_be_bytes())).collect();
        Block::propose("c", 1, parents, ids, 1000, &Keypair::from_seed([1; 32])).unwrap()
    }

    #[test]
    fn propose_then_check() {
        let kp = Keypair::from_seed([1; 32]);
        let b = block(vec![Hash32::digest(b"p2"), Hash32::digest(b"p1")], 5);
        assert!(b.header.parents.windows(2).all(|w| w[0] < w[1]));
        b.check_integrity().unwrap();
        b.verify_signature(&kp.public()).unwrap();
        assert_eq!(
            b.verify_signature(&Keypair::from_seed([2; 32]).public()),
            Err(BlockError::ProposerKey)
        );
        let p = b.proof(3).unwrap();
        assert!(p.verify(&b.attestation_ids[3], &b.header.att_root));
    }

    #[test]
    fn tampering_is_caught() {
        let mut b = block(vec![Hash32::digest(b"p")], 3);
        b.attestation_ids.swap(0, 1);
        assert_eq!(b.check_integrity(), Err(BlockError::AttRoot));
        let mut b = block(vec![Hash32::digest(b"p")], 3);
        b.header.timestamp_ms += 1;
        assert_eq!(b.check_integrity(), Err(BlockError::Hash));
        let mut b = block(vec![Hash32::digest(b"p")], 3);
        b.attestation_ids.pop();
        assert!(matches!(
            b.check_integrity(),
            Err(BlockError::AttCount { .. })
        ));
    }

    #[test]
    fn parent_rules() {
        let kp = Keypair::from_seed([1; 32]);
        assert_eq!(
            Block::propose("c", 1, vec![], vec![], 0, &kp).unwrap_err(),
            BlockError::ParentCount
        );
        let nine = (0..9u8).map(|i| Hash32::digest(&[i])).collect();
        assert_eq!(
            Block::propose("c", 1, nine, vec![], 0, &kp).unwrap_err(),
            BlockError::ParentCount
        );
        let mut h = block(vec![Hash32::digest(b"a"), Hash32::digest(b"b")], 0).header;
        h.parents.reverse();
        assert_eq!(h.check_shape(), Err(BlockError::ParentOrder));
    }
}
