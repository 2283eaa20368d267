//! Votes and quorum certificates (docs/protocol.md §3.4).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::crypto::{self, Keypair, PublicKey, SignatureBytes, VOTE_TAG};
use crate::hash::Hash32;
use crate::params::FINALITY_THRESHOLD_BPS;

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

/// The validators whose votes count, with their keys and effective weights.
pub trait ActiveSet {
    /// Key and weight of a member; `None` for anyone else.
    fn member(&self, validator_id: &Hash32) -> Option<(PublicKey, u64)>;
    fn total_weight(&self) -> u64;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("validator {0} is not in the active set")]
    NotActive(Hash32),
    #[error(transparent)]
    Vote(#[from] VoteError),
    #[error("certificate counts validator {0} twice")]
    DuplicateVoter(Hash32),
    #[error("certificate weight {weight} of {total} is below the threshold")]
    BelowThreshold { weight: u64, total: u64 },
}

/// Checks every vote of `qc` against `active` and the 2/3 threshold; returns the weight.
pub fn verify_certificate(
    qc: &QuorumCertificate,
    active: &impl ActiveSet,
) -> Result<u64, CertificateError> {
    let mut seen = HashSet::new();
    let mut weight = 0u64;
    for v in &qc.votes {
        if !seen.insert(v.validator_id) {
            return Err(CertificateError::DuplicateVoter(v.validator_id));
        }
        let (key, w) = active
            .member(&v.validator_id)
            .ok_or(CertificateError::NotActive(v.validator_id))?;
        Vote {
            block_hash: qc.block_hash,
            validator_id: v.validator_id,
            signature: v.signature,
        }
        .verify(&key)?;
        weight = weight.saturating_add(w);
    }
    let total = active.total_weight();
    if !meets_threshold(weight, total, FINALITY_THRESHOLD_BPS) {
        return Err(CertificateError::BelowThreshold { weight, total });
    }
    Ok(weight)
}

/// The votes that certified a block, and the weight they carried when counted.
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

    struct Members(Vec<(PublicKey, u64)>);

    impl ActiveSet for Members {
        fn member(&self, id: &Hash32) -> Option<(PublicKey, u64)> {
            self.0
                .iter()
                .find(|(k, _)| k.validator_id() == *id)
                .copied()
        }
        fn total_weight(&self) -> u64 {
            self.0.iter().map(|(_, w)| w).sum()
        }
    }

    #[test]
    fn certificates_are_checked() {
        let keys: Vec<Keypair> = (0..3u8)
            .map(|i| Keypair::from_seed([100 + i; 32]))
            .collect();
        let active = Members(keys.iter().map(|k| (k.public(), 100)).collect());
        let block = Hash32::digest(b"block");
        let vote = |k: &Keypair| {
            let v = Vote::sign(block, k);
            QcVote {
                validator_id: v.validator_id,
                signature: v.signature,
            }
        };
        let mut qc = QuorumCertificate {
            block_hash: block,
            votes: vec![vote(&keys[0]), vote(&keys[1])],
            weight: 0,
            total_weight: 0,
        };
        // 2 of 3 equal weights is below 6667 bps.
        assert!(matches!(
            verify_certificate(&qc, &active),
            Err(CertificateError::BelowThreshold { .. })
        ));
        qc.votes.push(vote(&keys[1]));
        assert!(matches!(
            verify_certificate(&qc, &active),
            Err(CertificateError::DuplicateVoter(_))
        ));
        qc.votes[2] = vote(&keys[2]);
        assert_eq!(verify_certificate(&qc, &active), Ok(300));
        let outsider = Keypair::from_seed([7; 32]);
        qc.votes[2] = vote(&outsider);
        assert!(matches!(
            verify_certificate(&qc, &active),
            Err(CertificateError::NotActive(_))
        ));
        let mut forged = vote(&keys[2]);
        forged.signature = Vote::sign(Hash32::digest(b"other"), &keys[2]).signature;
        qc.votes[2] = forged;
        assert!(matches!(
            verify_certificate(&qc, &active),
            Err(CertificateError::Vote(VoteError::BadSignature))
        ));
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
