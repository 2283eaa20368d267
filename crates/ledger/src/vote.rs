//! Votes and quorum certificates (docs/protocol.md §3.4).

use serde::{Deserialize, Serialize};

use crate::crypto::{self, Keypair, PublicKey, SignatureBytes, VOTE_TAG};
use crate::hash::Hash32;

/// A validator's signature over `b"bizra/vote/v2"` ‖ block hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    pub block_hash: Hash32,
    pub validator_id: Hash32,
    pub signature: SignatureBytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("vote key does not belong to validator {0}")]
    WrongKey(Hash32),
    #[error("vote signature does not verify")]
    BadSignature,
}

impl Vote {
    pub fn sign(block_hash: Hash32, key: &Keypair) -> Vote {
        Vote {
            block_hash,
            validator_id: key.public().validator_id(),
            signature: key.sign_tagged(VOTE_TAG, &block_hash),
        }
    }

    /// Checks the signature with the validator's registered key.
    pub fn verify(&self, key: &PublicKey) -> Result<(), VoteError> {
        if key.validator_id() != self.validator_id {
            return Err(VoteError::WrongKey(self.validator_id));
        }
        crypto::verify_tagged(key, &self.signature, VOTE_TAG, &self.block_hash)
            .map_err(|_| VoteError::BadSignature)
    }
}

/// The votes that finalized a block, and the weight they carried when counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCertificate {
    pub block_hash: Hash32,
    pub votes: Vec<QcVote>,
    pub weight: u64,
    pub total_weight: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QcVote {
    pub validator_id: Hash32,
    pub signature: SignatureBytes,
}

/// weight·10000 ≥ total·threshold_bps, in integers wide enough never to overflow.
pub fn meets_threshold(weight: u64, total: u64, threshold_bps: u64) -> bool {
    total > 0 && (weight as u128) * 10_000 >= (total as u128) * (threshold_bps as u128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::FINALITY_THRESHOLD_BPS as T;

    #[test]
    fn sign_and_verify() {
        let kp = Keypair::from_seed([3; 32]);
        let v = Vote::sign(Hash32::digest(b"b"), &kp);
        v.verify(&kp.public()).unwrap();
        let other = Keypair::from_seed([4; 32]).public();
        assert!(matches!(v.verify(&other), Err(VoteError::WrongKey(_))));
        let mut forged = v.clone();
        forged.block_hash = Hash32::digest(b"c");
        assert_eq!(forged.verify(&kp.public()), Err(VoteError::BadSignature));
    }

    #[test]
    fn threshold_is_two_thirds_in_integers() {
        assert!(meets_threshold(1, 1, T));
        assert!(meets_threshold(3, 4, T));
        assert!(meets_threshold(6667, 10_000, T));
        assert!(!meets_threshold(6666, 10_000, T));
        // Two of three equal votes are 6666.6 bps: not enough.
        assert!(!meets_threshold(2, 3, T));
        assert!(!meets_threshold(0, 0, T));
        assert!(meets_threshold(u64::MAX, u64::MAX, T));
    }
}
