//! The validators of one epoch (docs/protocol.md §3.4–§3.6): who may propose and vote,
//! their weights, the two thresholds, and the leader of each leader height.

use std::collections::BTreeMap;

use crate::crypto::PublicKey;
use crate::hash::Hash32;
use crate::params::FINALITY_THRESHOLD_BPS;
use crate::vote::ActiveSet;

/// Basis points that a set of validators must exceed to include at least one honest one
/// when fewer than 1/3 of the weight is faulty (weight·10000 > total·3333).
pub const VALIDITY_THRESHOLD_BPS: u64 = 3333;

/// The active set fixed when an epoch began: every node that committed the same ledger
/// builds the same committee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    epoch: u64,
    /// By validator id: the order of the leader schedule.
    members: BTreeMap<Hash32, (PublicKey, u64)>,
    ids: Vec<Hash32>,
    total: u64,
}

impl Committee {
    /// The committee of `epoch` from its validators' keys and effective weights. A
    /// validator listed twice counts once (the last weight given).
    pub fn new(epoch: u64, members: impl IntoIterator<Item = (PublicKey, u64)>) -> Committee {
        let members: BTreeMap<Hash32, (PublicKey, u64)> = members
            .into_iter()
            .map(|(k, w)| (k.validator_id(), (k, w)))
            .collect();
        let total = members
            .values()
            .fold(0u64, |t, (_, w)| t.saturating_add(*w));
        Committee {
            epoch,
            ids: members.keys().copied().collect(),
            members,
            total,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Member ids in schedule order.
    pub fn ids(&self) -> &[Hash32] {
        &self.ids
    }

    pub fn contains(&self, id: &Hash32) -> bool {
        self.members.contains_key(id)
    }

    pub fn key(&self, id: &Hash32) -> Option<&PublicKey> {
        self.members.get(id).map(|(k, _)| k)
    }

    /// A member's weight; 0 for anyone else.
    pub fn weight(&self, id: &Hash32) -> u64 {
        self.members.get(id).map_or(0, |(_, w)| *w)
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The summed weight of distinct members among `ids` (non-members and repeats add
    /// nothing).
    pub fn weight_of<'a>(&self, ids: impl IntoIterator<Item = &'a Hash32>) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        ids.into_iter()
            .filter(|id| seen.insert(**id))
            .fold(0u64, |t, id| t.saturating_add(self.weight(id)))
    }

    /// weight·10000 ≥ total·6667: enough to certify a block or to be cited as parents.
    pub fn is_quorum(&self, weight: u64) -> bool {
        crate::vote::meets_threshold(weight, self.total, FINALITY_THRESHOLD_BPS)
    }

    /// weight·10000 > total·3333: enough support at h+1 to commit a leader directly.
    pub fn is_validity(&self, weight: u64) -> bool {
        self.total > 0
            && u128::from(weight) * 10_000
                > u128::from(self.total) * u128::from(VALIDITY_THRESHOLD_BPS)
    }

    /// The leader of `height`: even heights 2, 4, 6, … are leader heights, led in turn by
    /// the members in id order, starting with the first at height 2.
    pub fn leader(&self, height: u64) -> Option<Hash32> {
        if !is_leader_height(height) || self.ids.is_empty() {
            return None;
        }
        let turn = (height / 2 - 1) % self.ids.len() as u64;
        self.ids.get(usize::try_from(turn).ok()?).copied()
    }
}

/// Even heights from 2 up.
pub fn is_leader_height(height: u64) -> bool {
    height >= 2 && height.is_multiple_of(2)
}

impl ActiveSet for Committee {
    fn member(&self, validator_id: &Hash32) -> Option<(PublicKey, u64)> {
        self.members.get(validator_id).copied()
    }

    fn total_weight(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn committee(weights: &[u64]) -> Committee {
        Committee::new(
            0,
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| (Keypair::from_seed([i as u8 + 1; 32]).public(), *w)),
        )
    }

    #[test]
    fn thresholds_in_integers() {
        let c = committee(&[100, 100, 100, 100]);
        assert_eq!(c.total(), 400);
        assert!(c.is_quorum(300) && !c.is_quorum(200));
        // One of four is not more than a third; two are.
        assert!(!c.is_validity(100) && c.is_validity(200));
        let c = committee(&[1, 1, 1]);
        assert!(!c.is_quorum(2), "2/3 is 6666.6 bps");
        assert!(c.is_validity(1), "1/3 is 3333.3 bps, more than 3333");
        let empty = committee(&[]);
        assert!(!empty.is_quorum(0) && !empty.is_validity(0));
    }

    #[test]
    fn weights_count_members_once() {
        let c = committee(&[5, 7]);
        let ids = c.ids().to_vec();
        assert_eq!(c.weight_of(&[ids[0], ids[0], ids[1]]), 12);
        assert_eq!(c.weight_of(&[Hash32::digest(b"stranger")]), 0);
    }

    #[test]
    fn leaders_rotate_in_id_order_on_even_heights() {
        let c = committee(&[1, 1, 1]);
        let ids = c.ids().to_vec();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(c.leader(0), None);
        assert_eq!(c.leader(1), None);
        assert_eq!(c.leader(3), None);
        assert_eq!(c.leader(2), Some(ids[0]));
        assert_eq!(c.leader(4), Some(ids[1]));
        assert_eq!(c.leader(6), Some(ids[2]));
        assert_eq!(c.leader(8), Some(ids[0]));
        assert_eq!(committee(&[]).leader(2), None);
    }
}
