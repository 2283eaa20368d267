//! A block proposal as the proposer sends it to the other validators (docs/protocol.md
//! §4.2, `submit-block`): the signed block, the attestations it places in block order, and
//! the registry entries it includes. Everything here is checkable without the DAG; parents
//! and height are the DAG's, and what the entries do is the registry's to judge when they
//! apply.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::attestation::{check_rules, Attestation, Checked, Rejection};
use crate::block::{Block, BlockError};
use crate::crypto::{verify_batch, PublicKey};
use crate::hash::Hash32;
use crate::params::NetworkAnchor;
use crate::registry::RegistryEntry;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub block: Block,
    pub attestations: Vec<Attestation>,
    /// Registry entries (register, exit, slash) the block includes, in block order: their
    /// digests are the block's `entry_ids`, which its header's `entries_root` commits to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<RegistryEntry>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposalError {
    #[error("the genesis block is never proposed")]
    Genesis,
    #[error("block is for chain {got}, this network is {expected}")]
    ChainId { expected: String, got: String },
    #[error("block was not proposed by the network's proposer {expected}")]
    NotProposer { expected: Hash32 },
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("block names {ids} attestations but {bodies} were sent")]
    Count { ids: usize, bodies: usize },
    #[error("attestation id {0} appears twice in the block")]
    DuplicateId(Hash32),
    #[error("attestation {index} does not pass the rules: {rejection}")]
    Attestation { index: usize, rejection: Rejection },
    #[error("attestation {index} has digest {got}, the block names {expected}")]
    IdMismatch {
        index: usize,
        expected: Hash32,
        got: Hash32,
    },
    #[error("attestation {index} signature does not verify")]
    BadSignature { index: usize },
    #[error("block names {ids} registry entries but {bodies} were sent")]
    EntryCount { ids: usize, bodies: usize },
    #[error("registry entry {index} does not have the digest the block names")]
    EntryMismatch { index: usize },
    #[error("block timestamp is not a valid time")]
    Timestamp,
}

impl Proposal {
    /// Checks the block (shape, hash, Merkle root, count, the proposer's identity and
    /// signature) and every attestation: rules 1–11 judged at the block's own timestamp,
    /// so every validator reaches the same verdict whenever it checks, then all
    /// signatures as one batch. Returns the attestations' checked forms, in block order.
    pub fn check(
        &self,
        proposer: &PublicKey,
        network: &NetworkAnchor,
    ) -> Result<Vec<Checked>, ProposalError> {
        let block = &self.block;
        if block.header.height == 0 {
            return Err(ProposalError::Genesis);
        }
        if block.header.chain_id != network.chain_id {
            return Err(ProposalError::ChainId {
                expected: network.chain_id.clone(),
                got: block.header.chain_id.clone(),
            });
        }
        if block.header.proposer != proposer.validator_id() {
            return Err(ProposalError::NotProposer {
                expected: proposer.validator_id(),
            });
        }
        block.check_integrity()?;
        block.verify_signature(proposer)?;
        if self.attestations.len() != block.attestation_ids.len() {
            return Err(ProposalError::Count {
                ids: block.attestation_ids.len(),
                bodies: self.attestations.len(),
            });
        }
        let mut seen = HashSet::with_capacity(block.attestation_ids.len());
        if let Some(dup) = block.attestation_ids.iter().find(|id| !seen.insert(**id)) {
            return Err(ProposalError::DuplicateId(*dup));
        }
        if self.entries.len() != block.entry_ids.len() {
            return Err(ProposalError::EntryCount {
                ids: block.entry_ids.len(),
                bodies: self.entries.len(),
            });
        }
        for (index, (entry, id)) in self.entries.iter().zip(&block.entry_ids).enumerate() {
            if entry.digest().ok().as_ref() != Some(id) {
                return Err(ProposalError::EntryMismatch { index });
            }
        }
        let at = i128::from(block.header.timestamp_ms) * 1_000_000;
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(at).map_err(|_| ProposalError::Timestamp)?;
        let mut checked = Vec::with_capacity(self.attestations.len());
        for (index, (att, id)) in self
            .attestations
            .iter()
            .zip(&block.attestation_ids)
            .enumerate()
        {
            let c = check_rules(att, network, at)
                .map_err(|rejection| ProposalError::Attestation { index, rejection })?;
            if c.digest != *id {
                return Err(ProposalError::IdMismatch {
                    index,
                    expected: *id,
                    got: c.digest,
                });
            }
            checked.push(c);
        }
        let items: Vec<_> = checked.iter().map(Checked::signature_item).collect();
        if let Some(index) = verify_batch(&items).iter().position(|ok| !ok) {
            return Err(ProposalError::BadSignature { index });
        }
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::sample::{now, resign, signed_sample};
    use crate::block::BlockContent;
    use crate::crypto::Keypair;

    fn proposal(n: u8) -> (Proposal, Keypair, NetworkAnchor) {
        let proposer = Keypair::from_seed([42; 32]);
        let atts: Vec<Attestation> = (0..n).map(|i| signed_sample(i + 1).0).collect();
        let ids = atts.iter().map(|a| a.digest().unwrap()).collect();
        let ts = (now().unix_timestamp_nanos() / 1_000_000) as u64;
        let block = Block::propose(
            BlockContent {
                chain_id: NetworkAnchor::default().chain_id,
                epoch: 0,
                height: 1,
                parents: vec![Hash32::digest(b"genesis")],
                attestation_ids: ids,
                entry_ids: vec![],
                timestamp_ms: ts,
            },
            &proposer,
        )
        .unwrap();
        (
            Proposal {
                block,
                attestations: atts,
                entries: vec![],
            },
            proposer,
            NetworkAnchor::default(),
        )
    }

    #[test]
    fn a_valid_proposal_checks() {
        let (p, key, net) = proposal(3);
        let checked = p.check(&key.public(), &net).unwrap();
        assert_eq!(checked.len(), 3);
        let back: Proposal = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_proposal_signed_by_someone_else_is_refused() {
        let (p, _, net) = proposal(1);
        let other = Keypair::from_seed([7; 32]);
        assert!(matches!(
            p.check(&other.public(), &net),
            Err(ProposalError::NotProposer { .. })
        ));
        // The header names the right proposer but another key signed it.
        let (mut p, key, net) = proposal(1);
        p.block.signature = Some(other.sign_tagged(crate::crypto::BLOCK_TAG, &p.block.hash));
        assert_eq!(
            p.check(&key.public(), &net).err(),
            Some(ProposalError::Block(BlockError::Signature))
        );
    }

    #[test]
    fn attestations_must_match_the_block() {
        let (mut p, key, net) = proposal(3);
        p.attestations.pop();
        assert!(matches!(
            p.check(&key.public(), &net),
            Err(ProposalError::Count { ids: 3, bodies: 2 })
        ));
        let (mut p, key, net) = proposal(2);
        p.attestations.swap(0, 1);
        assert!(matches!(
            p.check(&key.public(), &net),
            Err(ProposalError::IdMismatch { index: 0, .. })
        ));
    }

    #[test]
    fn a_forged_attestation_signature_is_found() {
        let (mut p, key, net) = proposal(3);
        // Re-signed by another key, keeping the attester's pubkey: the digest (which
        // leaves out the signature value) names a validly shaped but forged attestation.
        resign(&mut p.attestations[2], &Keypair::from_seed([99; 32]));
        let digest = p.attestations[2].digest().unwrap();
        let ids: Vec<Hash32> = p.attestations.iter().map(|a| a.digest().unwrap()).collect();
        assert_eq!(ids[2], digest);
        let block = Block::propose(
            BlockContent {
                chain_id: net.chain_id.clone(),
                epoch: 0,
                height: 1,
                parents: p.block.header.parents.clone(),
                attestation_ids: ids,
                entry_ids: vec![],
                timestamp_ms: p.block.header.timestamp_ms,
            },
            &key,
        )
        .unwrap();
        p.block = block;
        assert_eq!(
            p.check(&key.public(), &net).err(),
            Some(ProposalError::BadSignature { index: 2 })
        );
    }

    #[test]
    fn entries_must_match_the_block() {
        use crate::registry::{ExitRequest, RegistryEntry};
        let (p, key, net) = proposal(1);
        let exit = RegistryEntry::Exit(
            ExitRequest::sign(&net.chain_id, 0, &Keypair::from_seed([5; 32])).unwrap(),
        );
        let other = RegistryEntry::Exit(
            ExitRequest::sign(&net.chain_id, 1, &Keypair::from_seed([5; 32])).unwrap(),
        );
        let block = Block::propose(
            BlockContent {
                chain_id: net.chain_id.clone(),
                epoch: 0,
                height: 1,
                parents: p.block.header.parents.clone(),
                attestation_ids: p.block.attestation_ids.clone(),
                entry_ids: vec![exit.digest().unwrap()],
                timestamp_ms: p.block.header.timestamp_ms,
            },
            &key,
        )
        .unwrap();
        let mut with_entry = Proposal {
            block,
            attestations: p.attestations.clone(),
            entries: vec![exit],
        };
        with_entry.check(&key.public(), &net).unwrap();
        let sent = with_entry.entries.clone();
        with_entry.entries.clear();
        assert_eq!(
            with_entry.check(&key.public(), &net).err(),
            Some(ProposalError::EntryCount { ids: 1, bodies: 0 })
        );
        with_entry.entries = vec![other];
        assert_eq!(
            with_entry.check(&key.public(), &net).err(),
            Some(ProposalError::EntryMismatch { index: 0 })
        );
        with_entry.entries = sent;
        with_entry.check(&key.public(), &net).unwrap();
    }

    #[test]
    fn a_tampered_block_is_refused() {
        let (mut p, key, net) = proposal(2);
        p.block.attestation_ids.swap(0, 1);
        assert_eq!(
            p.check(&key.public(), &net).err(),
            Some(ProposalError::Block(BlockError::AttRoot))
        );
        let (mut p, key, mut net) = proposal(1);
        net.chain_id = "other".into();
        assert!(matches!(
            p.check(&key.public(), &net),
            Err(ProposalError::ChainId { .. })
        ));
        p.block.header.height = 0;
        net = NetworkAnchor::default();
        assert_eq!(
            p.check(&key.public(), &net).err(),
            Some(ProposalError::Genesis)
        );
    }
}
