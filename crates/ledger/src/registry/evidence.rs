//! Equivocation evidence: two conflicting signed objects from one validator
//! (docs/protocol.md §3.5).

use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockError, BlockHeader};
use crate::canonical::CanonicalError;
use crate::crypto::PublicKey;
use crate::hash::Hash32;
use crate::vote::Vote;

/// A vote with the header of the block it names, so that the block's height can be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderVote {
    pub vote: Vote,
    pub header: BlockHeader,
}

/// Proof that a validator equivocated. It checks on its own, given the validator's key,
/// so any node can include it and every node reaches the same verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Evidence {
    /// Two blocks signed by the same proposer at the same epoch and height. Only the
    /// header, hash and signature are checked: a reporter may empty `attestation_ids` and
    /// `entry_ids` to keep the evidence small.
    DoubleProposal { first: Block, second: Block },
    /// Two votes by the same validator for different blocks of one proposer at the same
    /// epoch and height.
    DoubleVote {
        first: HeaderVote,
        second: HeaderVote,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("both objects name the same block")]
    SameBlock,
    #[error("the blocks are at different heights ({first} and {second})")]
    HeightMismatch { first: u64, second: u64 },
    #[error("the blocks belong to different chains")]
    ChainMismatch,
    #[error("the blocks are in different epochs ({first} and {second})")]
    EpochMismatch { first: u64, second: u64 },
    #[error("the blocks have different proposers")]
    ProposerMismatch,
    #[error("the two objects are signed by different validators")]
    DifferentSigners,
    #[error("a block hash does not match its header")]
    HeaderHash,
    #[error("validator {0} is not in the registry")]
    UnknownValidator(Hash32),
    #[error("a block carries no signature")]
    Unsigned,
    #[error("a signature does not verify")]
    BadSignature,
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

impl Evidence {
    pub fn double_proposal(first: Block, second: Block) -> Evidence {
        Evidence::DoubleProposal { first, second }
    }

    pub fn double_vote(
        first_vote: Vote,
        first_header: BlockHeader,
        second_vote: Vote,
        second_header: BlockHeader,
    ) -> Evidence {
        Evidence::DoubleVote {
            first: HeaderVote {
                vote: first_vote,
                header: first_header,
            },
            second: HeaderVote {
                vote: second_vote,
                header: second_header,
            },
        }
    }

    /// The validator the evidence accuses, before any check.
    pub fn accused(&self) -> Hash32 {
        match self {
            Evidence::DoubleProposal { first, .. } => first.header.proposer,
            Evidence::DoubleVote { first, .. } => first.vote.validator_id,
        }
    }

    /// The height at which the offense happened (that of the first object; a checked
    /// piece of evidence has both at the same height).
    pub fn height(&self) -> u64 {
        self.headers().0.height
    }

    /// The chain the offense happened on.
    pub fn chain_id(&self) -> &str {
        &self.headers().0.chain_id
    }

    fn headers(&self) -> (&BlockHeader, &BlockHeader) {
        match self {
            Evidence::DoubleProposal { first, second } => (&first.header, &second.header),
            Evidence::DoubleVote { first, second } => (&first.header, &second.header),
        }
    }

    /// Checks the evidence and returns the offender's id. `key_of` gives the registered key
    /// of a validator id. Shape is checked before signatures, so malformed evidence costs
    /// no signature check.
    pub fn check(
        &self,
        key_of: impl Fn(&Hash32) -> Option<PublicKey>,
    ) -> Result<Hash32, EvidenceError> {
        let (h1, h2) = self.headers();
        if h1.chain_id != h2.chain_id {
            return Err(EvidenceError::ChainMismatch);
        }
        if h1.epoch != h2.epoch {
            return Err(EvidenceError::EpochMismatch {
                first: h1.epoch,
                second: h2.epoch,
            });
        }
        if h1.height != h2.height {
            return Err(EvidenceError::HeightMismatch {
                first: h1.height,
                second: h2.height,
            });
        }
        // Every validator proposes at every height: only two blocks of one proposer
        // conflict.
        if h1.proposer != h2.proposer {
            return Err(EvidenceError::ProposerMismatch);
        }
        match self {
            Evidence::DoubleProposal { first, second } => {
                let offender = first.header.proposer;
                if first.header.hash()? != first.hash || second.header.hash()? != second.hash {
                    return Err(EvidenceError::HeaderHash);
                }
                if first.hash == second.hash {
                    return Err(EvidenceError::SameBlock);
                }
                let key = key_of(&offender).ok_or(EvidenceError::UnknownValidator(offender))?;
                for b in [first, second] {
                    b.verify_signature(&key).map_err(|e| match e {
                        BlockError::Unsigned => EvidenceError::Unsigned,
                        _ => EvidenceError::BadSignature,
                    })?;
                }
                Ok(offender)
            }
            Evidence::DoubleVote { first, second } => {
                let offender = first.vote.validator_id;
                if second.vote.validator_id != offender {
                    return Err(EvidenceError::DifferentSigners);
                }
                if first.header.hash()? != first.vote.block_hash
                    || second.header.hash()? != second.vote.block_hash
                {
                    return Err(EvidenceError::HeaderHash);
                }
                if first.vote.block_hash == second.vote.block_hash {
                    return Err(EvidenceError::SameBlock);
                }
                let key = key_of(&offender).ok_or(EvidenceError::UnknownValidator(offender))?;
                for hv in [first, second] {
                    hv.vote
                        .verify(&key)
                        .map_err(|_| EvidenceError::BadSignature)?;
                }
                Ok(offender)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockContent, BLOCK_VERSION};
    use crate::crypto::Keypair;

    fn kp(seed: u8) -> Keypair {
        Keypair::from_seed([seed; 32])
    }

    fn keys(id: &Hash32) -> Option<PublicKey> {
        (1..=3u8)
            .map(|s| kp(s).public())
            .find(|k| k.validator_id() == *id)
    }

    fn block(seed: u8, height: u64, ts: u64) -> Block {
        Block::propose(
            BlockContent {
                chain_id: "bizra-testnet-001".into(),
                epoch: 0,
                height,
                parents: vec![Hash32::digest(b"parent")],
                attestation_ids: vec![Hash32::digest(&ts.to_be_bytes())],
                entry_ids: vec![],
                timestamp_ms: ts,
            },
            &kp(seed),
        )
        .unwrap()
    }

    fn header(height: u64, ts: u64) -> BlockHeader {
        BlockHeader {
            version: BLOCK_VERSION,
            chain_id: "bizra-testnet-001".into(),
            epoch: 0,
            height,
            parents: vec![Hash32::digest(b"parent")],
            att_root: Hash32::digest(b"root"),
            att_count: 0,
            entries_root: Hash32::digest(b""),
            entries_count: 0,
            proposer: kp(9).public().validator_id(),
            timestamp_ms: ts,
        }
    }

    fn double_vote(seed: u8, h1: BlockHeader, h2: BlockHeader) -> Evidence {
        let v1 = Vote::sign(h1.hash().unwrap(), &kp(seed));
        let v2 = Vote::sign(h2.hash().unwrap(), &kp(seed));
        Evidence::double_vote(v1, h1, v2, h2)
    }

    #[test]
    fn double_proposal_accepted() {
        let e = Evidence::double_proposal(block(1, 5, 100), block(1, 5, 200));
        assert_eq!(e.check(keys), Ok(kp(1).public().validator_id()));
        assert_eq!(e.height(), 5);
        assert_eq!(e.accused(), kp(1).public().validator_id());
        // Emptied attestation lists do not matter.
        let Evidence::DoubleProposal { mut first, second } = e else {
            unreachable!()
        };
        first.attestation_ids.clear();
        first.entry_ids.clear();
        assert!(Evidence::double_proposal(first, second).check(keys).is_ok());
    }

    #[test]
    fn double_proposal_rejected() {
        let b = block(1, 5, 100);
        assert_eq!(
            Evidence::double_proposal(b.clone(), b.clone()).check(keys),
            Err(EvidenceError::SameBlock)
        );
        assert_eq!(
            Evidence::double_proposal(b.clone(), block(1, 6, 200)).check(keys),
            Err(EvidenceError::HeightMismatch {
                first: 5,
                second: 6
            })
        );
        // Two proposers at one height is how every height looks.
        assert_eq!(
            Evidence::double_proposal(b.clone(), block(2, 5, 200)).check(keys),
            Err(EvidenceError::ProposerMismatch)
        );
        let mut next_epoch = block(1, 5, 200);
        next_epoch.header.epoch = 1;
        next_epoch.hash = next_epoch.header.hash().unwrap();
        assert_eq!(
            Evidence::double_proposal(b.clone(), next_epoch).check(keys),
            Err(EvidenceError::EpochMismatch {
                first: 0,
                second: 1
            })
        );
        // A signature made by another key over the second block.
        let mut forged = block(1, 5, 200);
        forged.signature = Some(kp(2).sign_tagged(crate::crypto::BLOCK_TAG, &forged.hash));
        assert_eq!(
            Evidence::double_proposal(b.clone(), forged).check(keys),
            Err(EvidenceError::BadSignature)
        );
        // A header changed after signing, with its hash recomputed to match.
        let mut moved = block(1, 5, 200);
        moved.header.timestamp_ms = 300;
        assert_eq!(
            Evidence::double_proposal(b.clone(), moved.clone()).check(keys),
            Err(EvidenceError::HeaderHash)
        );
        moved.hash = moved.header.hash().unwrap();
        assert_eq!(
            Evidence::double_proposal(b.clone(), moved).check(keys),
            Err(EvidenceError::BadSignature)
        );
        let mut unsigned = block(1, 5, 200);
        unsigned.signature = None;
        assert_eq!(
            Evidence::double_proposal(b.clone(), unsigned).check(keys),
            Err(EvidenceError::Unsigned)
        );
        let mut other_chain = block(1, 5, 200);
        other_chain.header.chain_id = "other".into();
        assert_eq!(
            Evidence::double_proposal(b.clone(), other_chain).check(keys),
            Err(EvidenceError::ChainMismatch)
        );
        let stranger = Evidence::double_proposal(block(7, 5, 100), block(7, 5, 200));
        assert_eq!(
            stranger.check(keys),
            Err(EvidenceError::UnknownValidator(
                kp(7).public().validator_id()
            ))
        );
    }

    #[test]
    fn double_vote_accepted() {
        let e = double_vote(2, header(8, 1), header(8, 2));
        assert_eq!(e.check(keys), Ok(kp(2).public().validator_id()));
        assert_eq!(e.height(), 8);
    }

    #[test]
    fn double_vote_rejected() {
        assert_eq!(
            double_vote(2, header(8, 1), header(8, 1)).check(keys),
            Err(EvidenceError::SameBlock)
        );
        assert_eq!(
            double_vote(2, header(8, 1), header(9, 2)).check(keys),
            Err(EvidenceError::HeightMismatch {
                first: 8,
                second: 9
            })
        );
        // Votes by two different validators.
        let (h1, h2) = (header(8, 1), header(8, 2));
        let e = Evidence::double_vote(
            Vote::sign(h1.hash().unwrap(), &kp(1)),
            h1.clone(),
            Vote::sign(h2.hash().unwrap(), &kp(2)),
            h2.clone(),
        );
        assert_eq!(e.check(keys), Err(EvidenceError::DifferentSigners));
        // Votes for blocks of two proposers at one height are what an honest validator
        // gives every height.
        let mut other_proposer = header(8, 2);
        other_proposer.proposer = kp(8).public().validator_id();
        assert_eq!(
            double_vote(2, header(8, 1), other_proposer).check(keys),
            Err(EvidenceError::ProposerMismatch)
        );
        // A header that is not the block the vote names.
        let e = Evidence::double_vote(
            Vote::sign(h1.hash().unwrap(), &kp(2)),
            h1.clone(),
            Vote::sign(h2.hash().unwrap(), &kp(2)),
            header(8, 3),
        );
        assert_eq!(e.check(keys), Err(EvidenceError::HeaderHash));
        // A vote whose signature was made by another key.
        let mut forged = Vote::sign(h2.hash().unwrap(), &kp(1));
        forged.validator_id = kp(2).public().validator_id();
        let e = Evidence::double_vote(
            Vote::sign(h1.hash().unwrap(), &kp(2)),
            h1.clone(),
            forged,
            h2.clone(),
        );
        assert_eq!(e.check(keys), Err(EvidenceError::BadSignature));
        assert_eq!(
            double_vote(8, h1, h2).check(keys),
            Err(EvidenceError::UnknownValidator(
                kp(8).public().validator_id()
            ))
        );
    }

    #[test]
    fn serde_round_trip() {
        let e = double_vote(2, header(8, 1), header(8, 2));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "double_vote");
        assert_eq!(serde_json::from_value::<Evidence>(v).unwrap(), e);
        let e = Evidence::double_proposal(block(1, 5, 100), block(1, 5, 200));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "double_proposal");
        assert_eq!(serde_json::from_value::<Evidence>(v).unwrap(), e);
    }
}
