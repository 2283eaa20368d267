//! Block headers, block hashes and proposer signatures (docs/protocol.md §3.1).

use serde::{Deserialize, Serialize};

use crate::canonical::{to_canonical_bytes, CanonicalError};
use crate::crypto::{self, Keypair, PublicKey, SignatureBytes, BLOCK_TAG};
use crate::hash::Hash32;
use crate::merkle;
use crate::params::MAX_PARENTS;

pub const BLOCK_VERSION: u32 = 2;

/// What a block commits to. Its hash is BLAKE3 of its RFC 8785 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockHeader {
    pub version: u32,
    pub chain_id: String,
    /// The epoch whose validator set checks, certifies and commits this block.
    pub epoch: u64,
    /// Round of the DAG: 0 for genesis, 1 for the first blocks of an epoch.
    pub height: u64,
    /// Sorted, unique; none for genesis, otherwise 1 to [`MAX_PARENTS`].
    pub parents: Vec<Hash32>,
    /// Merkle root of the block's attestation digests, in block order.
    pub att_root: Hash32,
    pub att_count: u64,
    /// Merkle root of the digests of the block's registry entries, in block order.
    pub entries_root: Hash32,
    pub entries_count: u64,
    /// Validator id of the proposer; for genesis, the digest of the genesis document.
    pub proposer: Hash32,
    pub timestamp_ms: u64,
}

/// What a proposer puts in a new block; [`Block::propose`] derives the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockContent {
    pub chain_id: String,
    pub epoch: u64,
    pub height: u64,
    /// Sorted and deduplicated by [`Block::propose`].
    pub parents: Vec<Hash32>,
    pub attestation_ids: Vec<Hash32>,
    /// [`crate::registry::RegistryEntry::digest`] of each entry, in block order.
    pub entry_ids: Vec<Hash32>,
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block version must be {BLOCK_VERSION}")]
    Version,
    #[error("epoch, height, counts and timestamp_ms must be at most 2^53 - 1")]
    UnsafeInteger,
    #[error("a block needs 1 to {MAX_PARENTS} parents")]
    ParentCount,
    #[error("parents must be sorted and unique")]
    ParentOrder,
    #[error("att_count {header} does not match {actual} attestation ids")]
    AttCount { header: u64, actual: usize },
    #[error("att_root does not match the attestation ids")]
    AttRoot,
    #[error("entries_count {header} does not match {actual} entry ids")]
    EntriesCount { header: u64, actual: usize },
    #[error("entries_root does not match the entry ids")]
    EntriesRoot,
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
        if [
            self.epoch,
            self.height,
            self.att_count,
            self.entries_count,
            self.timestamp_ms,
        ]
        .iter()
        .any(|v| *v > max)
        {
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

/// A header with its hash, the proposer's signature and the ids of what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub hash: Hash32,
    pub header: BlockHeader,
    /// Over `b"bizra/block/v2"` ‖ hash; `None` only for genesis.
    pub signature: Option<SignatureBytes>,
    pub attestation_ids: Vec<Hash32>,
    /// Digests of the block's registry entries, in block order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_ids: Vec<Hash32>,
}

impl Block {
    /// Builds and signs a block over `content`.
    pub fn propose(content: BlockContent, proposer: &Keypair) -> Result<Block, BlockError> {
        let BlockContent {
            chain_id,
            epoch,
            height,
            mut parents,
            attestation_ids,
            entry_ids,
            timestamp_ms,
        } = content;
        parents.sort();
        parents.dedup();
        let header = BlockHeader {
            version: BLOCK_VERSION,
            chain_id,
            epoch,
            height,
            parents,
            att_root: merkle::root(&attestation_ids),
            att_count: attestation_ids.len() as u64,
            entries_root: merkle::root(&entry_ids),
            entries_count: entry_ids.len() as u64,
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
            entry_ids,
        })
    }

    /// Everything a block says about itself: shape, hash, both roots and counts.
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
        if self.header.entries_count != self.entry_ids.len() as u64 {
            return Err(BlockError::EntriesCount {
                header: self.header.entries_count,
                actual: self.entry_ids.len(),
            });
        }
        // Genesis holds nothing: its roots are the empty tree's, checked like any other.
        if merkle::root(&self.attestation_ids) != self.header.att_root {
            return Err(BlockError::AttRoot);
        }
        if merkle::root(&self.entry_ids) != self.header.entries_root {
            return Err(BlockError::EntriesRoot);
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

    fn content(parents: Vec<Hash32>, n: u32) -> BlockContent {
        BlockContent {
            chain_id: "c".into(),
            epoch: 0,
            height: 1,
            parents,
            attestation_ids: (0..n).map(|i| Hash32::digest(&i.to_be_bytes())).collect(),
            entry_ids: vec![Hash32::digest(b"entry")],
            timestamp_ms: 1000,
        }
    }

    fn block(parents: Vec<Hash32>, n: u32) -> Block {
        Block::propose(content(parents, n), &Keypair::from_seed([1; 32])).unwrap()
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
        // The entries are bound like the attestations.
        let mut b = block(vec![Hash32::digest(b"p")], 3);
        b.entry_ids[0] = Hash32::digest(b"other entry");
        assert_eq!(b.check_integrity(), Err(BlockError::EntriesRoot));
        let mut b = block(vec![Hash32::digest(b"p")], 3);
        b.entry_ids.clear();
        assert!(matches!(
            b.check_integrity(),
            Err(BlockError::EntriesCount { .. })
        ));
    }

    #[test]
    fn a_block_without_entries_serializes_without_the_field() {
        let mut c = content(vec![Hash32::digest(b"p")], 1);
        c.entry_ids.clear();
        let b = Block::propose(c, &Keypair::from_seed([1; 32])).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert!(v.get("entry_ids").is_none());
        assert_eq!(v["header"]["entries_count"], 0);
        let back: Block = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
        back.check_integrity().unwrap();
    }

    #[test]
    fn parent_rules() {
        let kp = Keypair::from_seed([1; 32]);
        assert_eq!(
            Block::propose(content(vec![], 0), &kp).unwrap_err(),
            BlockError::ParentCount
        );
        let too_many = (0..=MAX_PARENTS as u32)
            .map(|i| Hash32::digest(&i.to_be_bytes()))
            .collect();
        assert_eq!(
            Block::propose(content(too_many, 0), &kp).unwrap_err(),
            BlockError::ParentCount
        );
        let mut h = block(vec![Hash32::digest(b"a"), Hash32::digest(b"b")], 0).header;
        h.parents.reverse();
        assert_eq!(h.check_shape(), Err(BlockError::ParentOrder));
    }
}
