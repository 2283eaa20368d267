//! Weighted finality (docs/protocol.md §3.4, §3.6): votes accumulate per block; a block is
//! final when its voters hold ≥ 2/3 of the active weight, and finalizing a block finalizes
//! every ancestor. The finalized set only grows.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::crypto::{PublicKey, SignatureBytes};
use crate::dag::Dag;
use crate::hash::Hash32;
use crate::params::FINALITY_THRESHOLD_BPS;
use crate::vote::{meets_threshold, QcVote, QuorumCertificate, Vote, VoteError};

/// The validators whose votes count, with their keys and effective weights.
pub trait ActiveSet {
    /// Key and weight of an active (or exiting) validator; `None` for anyone else.
    fn member(&self, validator_id: &Hash32) -> Option<(PublicKey, u64)>;
    fn total_weight(&self) -> u64;
}

/// An [`ActiveSet`] as a plain table: what a node builds from its registry each epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightTable {
    members: BTreeMap<Hash32, (PublicKey, u64)>,
    total: u64,
}

impl WeightTable {
    pub fn new(members: impl IntoIterator<Item = (PublicKey, u64)>) -> WeightTable {
        let members: BTreeMap<_, _> = members
            .into_iter()
            .map(|(k, w)| (k.validator_id(), (k, w)))
            .collect();
        let total = members
            .values()
            .fold(0u64, |t, (_, w)| t.saturating_add(*w));
        WeightTable { members, total }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Hash32, &(PublicKey, u64))> {
        self.members.iter()
    }
}

impl ActiveSet for WeightTable {
    fn member(&self, validator_id: &Hash32) -> Option<(PublicKey, u64)> {
        self.members.get(validator_id).copied()
    }
    fn total_weight(&self) -> u64 {
        self.total
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinalityError {
    #[error("block {0} is unknown")]
    UnknownBlock(Hash32),
    #[error("validator {0} is not in the active set")]
    NotActive(Hash32),
    #[error(transparent)]
    Vote(#[from] VoteError),
    #[error("certificate is for block {got}, not {expected}")]
    QcBlock { expected: Hash32, got: Hash32 },
    #[error("certificate counts validator {0} twice")]
    QcDuplicateVoter(Hash32),
    #[error("certificate weight {weight} of {total} is below the threshold")]
    QcBelowThreshold { weight: u64, total: u64 },
}

/// What a vote changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Counted; the block's voters now hold `weight`.
    Counted { weight: u64 },
    /// This validator's vote for this block was already counted.
    AlreadyCounted,
    /// The block was already final; the vote is kept for the record.
    AlreadyFinal,
    /// The block reached the threshold: these blocks (it and its ancestors not final
    /// before) are now final, highest first is not guaranteed.
    Finalized {
        certificate: QuorumCertificate,
        newly_final: Vec<Hash32>,
    },
}

/// Votes per block, the finalized set, and the certificates that finalized blocks.
#[derive(Debug, Clone, Default)]
pub struct Finality {
    votes: HashMap<Hash32, BTreeMap<Hash32, SignatureBytes>>,
    finalized: HashSet<Hash32>,
    certificates: HashMap<Hash32, QuorumCertificate>,
    finalized_height: u64,
    threshold_bps: u64,
}

impl Finality {
    /// Genesis is final by definition.
    pub fn new(dag: &Dag) -> Finality {
        Finality {
            finalized: [dag.genesis()].into(),
            threshold_bps: FINALITY_THRESHOLD_BPS,
            ..Default::default()
        }
    }

    pub fn threshold_bps(&self) -> u64 {
        self.threshold_bps
    }

    pub fn is_final(&self, hash: &Hash32) -> bool {
        self.finalized.contains(hash)
    }

    /// Height of the highest final block.
    pub fn finalized_height(&self) -> u64 {
        self.finalized_height
    }

    pub fn finalized_count(&self) -> usize {
        self.finalized.len()
    }

    /// The certificate stored with a block that was finalized by its own votes (not as
    /// an ancestor).
    pub fn certificate(&self, hash: &Hash32) -> Option<&QuorumCertificate> {
        self.certificates.get(hash)
    }

    /// Current weight of the voters for `hash` under `active`.
    pub fn weight(&self, hash: &Hash32, active: &impl ActiveSet) -> u64 {
        self.votes.get(hash).map_or(0, |vs| {
            vs.keys()
                .filter_map(|v| active.member(v))
                .fold(0u64, |t, (_, w)| t.saturating_add(w))
        })
    }

    /// Ids of the validators that voted for `hash`.
    pub fn voters(&self, hash: &Hash32) -> Vec<Hash32> {
        self.votes
            .get(hash)
            .map(|vs| vs.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Checks and counts one vote.
    pub fn add_vote(
        &mut self,
        dag: &Dag,
        vote: &Vote,
        active: &impl ActiveSet,
    ) -> Result<VoteOutcome, FinalityError> {
        let header = dag
            .header(&vote.block_hash)
            .ok_or(FinalityError::UnknownBlock(vote.block_hash))?;
        let height = header.height;
        let (key, _) = active
            .member(&vote.validator_id)
            .ok_or(FinalityError::NotActive(vote.validator_id))?;
        vote.verify(&key)?;
        let votes = self.votes.entry(vote.block_hash).or_default();
        if votes.insert(vote.validator_id, vote.signature).is_some() {
            return Ok(VoteOutcome::AlreadyCounted);
        }
        if self.finalized.contains(&vote.block_hash) {
            return Ok(VoteOutcome::AlreadyFinal);
        }
        let weight = self.weight(&vote.block_hash, active);
        let total = active.total_weight();
        if !meets_threshold(weight, total, self.threshold_bps) {
            return Ok(VoteOutcome::Counted { weight });
        }
        let certificate = QuorumCertificate {
            block_hash: vote.block_hash,
            votes: self.votes[&vote.block_hash]
                .iter()
                .filter(|(v, _)| active.member(v).is_some())
                .map(|(v, s)| QcVote {
                    validator_id: *v,
                    signature: *s,
                })
                .collect(),
            weight,
            total_weight: total,
        };
        let newly_final = self.finalize(dag, vote.block_hash, height);
        self.certificates
            .insert(vote.block_hash, certificate.clone());
        Ok(VoteOutcome::Finalized {
            certificate,
            newly_final,
        })
    }

    /// Checks a certificate received from the proposer (or read back from the store)
    /// and finalizes its block. Returns the newly final blocks.
    pub fn apply_certificate(
        &mut self,
        dag: &Dag,
        qc: &QuorumCertificate,
        active: &impl ActiveSet,
    ) -> Result<Vec<Hash32>, FinalityError> {
        let header = dag
            .header(&qc.block_hash)
            .ok_or(FinalityError::UnknownBlock(qc.block_hash))?;
        let height = header.height;
        let weight = verify_certificate(qc, active)?;
        let votes = self.votes.entry(qc.block_hash).or_default();
        for v in &qc.votes {
            votes.insert(v.validator_id, v.signature);
        }
        if self.finalized.contains(&qc.block_hash) {
            return Ok(vec![]);
        }
        let newly = self.finalize(dag, qc.block_hash, height);
        let mut stored = qc.clone();
        stored.weight = weight;
        stored.total_weight = active.total_weight();
        self.certificates.insert(qc.block_hash, stored);
        Ok(newly)
    }

    /// Marks a block final as this node's own store recorded it, without checking the
    /// certificate again: the store only holds finality this node already verified.
    pub fn restore_final(&mut self, dag: &Dag, hash: Hash32, qc: Option<QuorumCertificate>) {
        let Some(height) = dag.header(&hash).map(|h| h.height) else {
            return;
        };
        if let Some(qc) = qc {
            let votes = self.votes.entry(hash).or_default();
            for v in &qc.votes {
                votes.insert(v.validator_id, v.signature);
            }
            self.certificates.insert(hash, qc);
        }
        if !self.finalized.contains(&hash) {
            self.finalize(dag, hash, height);
        }
    }

    /// Marks `hash` and its not-yet-final ancestors final. The finalized set is closed
    /// under ancestry, so the walk stops at the first final block on each path.
    fn finalize(&mut self, dag: &Dag, hash: Hash32, height: u64) -> Vec<Hash32> {
        let finalized = &self.finalized;
        let mut newly = dag.ancestors_while(&hash, |h| !finalized.contains(h));
        newly.push(hash);
        self.finalized.extend(newly.iter().copied());
        self.finalized_height = self.finalized_height.max(height);
        newly
    }
}

/// Checks every vote of `qc` against `active` and the threshold; returns the weight.
pub fn verify_certificate(
    qc: &QuorumCertificate,
    active: &impl ActiveSet,
) -> Result<u64, FinalityError> {
    let mut seen = HashSet::new();
    let mut weight = 0u64;
    for v in &qc.votes {
        if !seen.insert(v.validator_id) {
            return Err(FinalityError::QcDuplicateVoter(v.validator_id));
        }
        let (key, w) = active
            .member(&v.validator_id)
            .ok_or(FinalityError::NotActive(v.validator_id))?;
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
        return Err(FinalityError::QcBelowThreshold { weight, total });
    }
    Ok(weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::dag::tests::{child, genesis_block, random_dag};
    use proptest::prelude::*;

    fn validators(n: u8) -> (Vec<Keypair>, WeightTable) {
        let keys: Vec<_> = (0..n).map(|i| Keypair::from_seed([100 + i; 32])).collect();
        let table = WeightTable::new(keys.iter().map(|k| (k.public(), 100)));
        (keys, table)
    }

    #[test]
    fn three_of_four_finalize_with_ancestors() {
        let g = genesis_block();
        let mut dag = Dag::new(&g).unwrap();
        let a = child(&dag, vec![g.hash], 1);
        dag.insert(&a).unwrap();
        let b = child(&dag, vec![a.hash], 2);
        dag.insert(&b).unwrap();
        let (keys, active) = validators(4);
        let mut f = Finality::new(&dag);
        for (i, k) in keys.iter().take(2).enumerate() {
            let out = f.add_vote(&dag, &Vote::sign(b.hash, k), &active).unwrap();
            assert_eq!(
                out,
                VoteOutcome::Counted {
                    weight: 100 * (i as u64 + 1)
                }
            );
        }
        assert_eq!(
            f.add_vote(&dag, &Vote::sign(b.hash, &keys[0]), &active),
            Ok(VoteOutcome::AlreadyCounted)
        );
        assert!(!f.is_final(&b.hash));
        match f
            .add_vote(&dag, &Vote::sign(b.hash, &keys[2]), &active)
            .unwrap()
        {
            VoteOutcome::Finalized {
                certificate,
                mut newly_final,
            } => {
                newly_final.sort();
                let mut want = vec![a.hash, b.hash];
                want.sort();
                assert_eq!(newly_final, want);
                assert_eq!(certificate.weight, 300);
                assert_eq!(verify_certificate(&certificate, &active), Ok(300));
            }
            other => panic!("{other:?}"),
        }
        assert!(f.is_final(&a.hash) && f.is_final(&b.hash));
        assert_eq!(f.finalized_height(), 2);
        assert_eq!(
            f.add_vote(&dag, &Vote::sign(b.hash, &keys[3]), &active),
            Ok(VoteOutcome::AlreadyFinal)
        );
    }

    #[test]
    fn refuses_outsiders_forgeries_and_unknown_blocks() {
        let g = genesis_block();
        let mut dag = Dag::new(&g).unwrap();
        let a = child(&dag, vec![g.hash], 1);
        dag.insert(&a).unwrap();
        let (keys, active) = validators(3);
        let mut f = Finality::new(&dag);
        let outsider = Keypair::from_seed([7; 32]);
        assert!(matches!(
            f.add_vote(&dag, &Vote::sign(a.hash, &outsider), &active),
            Err(FinalityError::NotActive(_))
        ));
        let mut forged = Vote::sign(a.hash, &keys[0]);
        forged.signature = Vote::sign(g.hash, &keys[0]).signature;
        assert!(matches!(
            f.add_vote(&dag, &forged, &active),
            Err(FinalityError::Vote(VoteError::BadSignature))
        ));
        assert!(matches!(
            f.add_vote(&dag, &Vote::sign(Hash32::digest(b"x"), &keys[0]), &active),
            Err(FinalityError::UnknownBlock(_))
        ));
        // Nothing was counted.
        assert_eq!(f.weight(&a.hash, &active), 0);
    }

    #[test]
    fn certificates_are_checked() {
        let g = genesis_block();
        let mut dag = Dag::new(&g).unwrap();
        let a = child(&dag, vec![g.hash], 1);
        dag.insert(&a).unwrap();
        let (keys, active) = validators(3);
        let vote = |k: &Keypair| {
            let v = Vote::sign(a.hash, k);
            QcVote {
                validator_id: v.validator_id,
                signature: v.signature,
            }
        };
        let mut qc = QuorumCertificate {
            block_hash: a.hash,
            votes: vec![vote(&keys[0]), vote(&keys[1])],
            weight: 0,
            total_weight: 0,
        };
        // 2 of 3 equal weights is below 6667 bps.
        assert!(matches!(
            verify_certificate(&qc, &active),
            Err(FinalityError::QcBelowThreshold { .. })
        ));
        qc.votes.push(vote(&keys[1]));
        assert!(matches!(
            verify_certificate(&qc, &active),
            Err(FinalityError::QcDuplicateVoter(_))
        ));
        qc.votes[2] = vote(&keys[2]);
        let mut f = Finality::new(&dag);
        assert_eq!(f.apply_certificate(&dag, &qc, &active), Ok(vec![a.hash]));
        assert!(f.is_final(&a.hash));
    }

    proptest! {
        /// Votes in any order: the finalized set only grows, stays closed under ancestry,
        /// and a block is final once a quorum voted for it or a descendant.
        #[test]
        fn finality_is_monotone(
            choices in prop::collection::vec(prop::collection::vec(0usize..1000, 1..=3), 1..25),
            votes in prop::collection::vec((0usize..1000, 0u8..4), 0..80),
        ) {
            let (dag, order) = random_dag(&choices);
            let (keys, active) = validators(4);
            let mut f = Finality::new(&dag);
            let mut before: HashSet<Hash32> = order.iter().copied().filter(|h| f.is_final(h)).collect();
            for (b, v) in votes {
                let block = order[b % order.len()];
                f.add_vote(&dag, &Vote::sign(block, &keys[v as usize]), &active).unwrap();
                let now: HashSet<Hash32> = order.iter().copied().filter(|h| f.is_final(h)).collect();
                prop_assert!(before.is_subset(&now));
                for h in &now {
                    for a in dag.ancestors(h) {
                        prop_assert!(now.contains(&a));
                    }
                }
                if f.weight(&block, &active) >= 300 {
                    prop_assert!(f.is_final(&block));
                }
                before = now;
            }
        }
    }
}
