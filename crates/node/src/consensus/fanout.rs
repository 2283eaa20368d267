//! Sending this validator's block to the others (docs/protocol.md §5.3): to every peer
//! validator in parallel, each vote checked and counted as it arrives; once the votes
//! hold 2/3 of the weight the block is certified here and the certificate goes to every
//! peer. The calls still running are then dropped, which cancels them.
//!
//! A breaker never costs quorum: peers whose breakers are open are skipped at first, and
//! asked too (as half-open probes) once the others cannot bring the block to 2/3.

use std::collections::BTreeMap;
use std::sync::Arc;

use bizra_ledger::attestation::Attestation;
use bizra_ledger::block::Block;
use bizra_ledger::crypto::SignatureBytes;
use bizra_ledger::proposal::Proposal;
use bizra_ledger::registry::RegistryEntry;
use bizra_ledger::vote::{QcVote, QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use bizra_store::{Store, StoreError};
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};

use super::certify::certify;
use super::network::FANOUT_DEADLINE;
use super::Consensus;
use crate::peers::set::{Peer, PeerError};

/// A validator's answer to `submit-block`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct SubmitBlockReply {
    #[schema(value_type = String)]
    pub(crate) block_hash: Hash32,
    /// `new` when this call stored the block, `known` when it was stored before.
    pub(crate) stored: String,
    /// The validator's vote; null from a node outside the committee.
    #[schema(value_type = Option<Object>)]
    pub(crate) vote: Option<Vote>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("block {0} is not stored here")]
    UnknownBlock(Hash32),
    #[error("stored attestation {0} is missing or unreadable")]
    Attestation(Hash32),
    #[error("stored registry entry {0} is missing or unreadable")]
    Entry(Hash32),
}

/// The proposal of a stored block: the block, its attestations and its registry entries
/// read from the store, in block order.
pub(crate) async fn load_proposal(
    state: &Arc<Consensus>,
    block: Block,
) -> Result<Proposal, LoadError> {
    let mut attestations = Vec::with_capacity(block.attestation_ids.len());
    for id in &block.attestation_ids {
        let record = state
            .store
            .get_attestation(id)
            .await?
            .ok_or(LoadError::Attestation(*id))?;
        let att: Attestation =
            serde_json::from_slice(&record.body).map_err(|_| LoadError::Attestation(*id))?;
        attestations.push(att);
    }
    let mut entries = Vec::with_capacity(block.entry_ids.len());
    if !block.entry_ids.is_empty() {
        let mut by_digest = std::collections::HashMap::new();
        for e in state.store.registry_entries().await? {
            if let Ok(parsed) = serde_json::from_value::<RegistryEntry>(e.body) {
                if let Ok(d) = parsed.digest() {
                    by_digest.entry(d).or_insert(parsed);
                }
            }
        }
        for id in &block.entry_ids {
            entries.push(by_digest.get(id).cloned().ok_or(LoadError::Entry(*id))?);
        }
    }
    Ok(Proposal {
        block,
        attestations,
        entries,
    })
}

/// The proposal for `hash`, from the cache when it was built lately.
pub(crate) async fn proposal_for(
    state: &Arc<Consensus>,
    hash: &Hash32,
) -> Result<Arc<Proposal>, LoadError> {
    if let Some(p) = state.network.cached_proposal(hash) {
        return Ok(p);
    }
    let sb = state
        .store
        .get_block(hash)
        .await?
        .ok_or(LoadError::UnknownBlock(*hash))?;
    let p = Arc::new(load_proposal(state, sb.block).await?);
    state.network.cache_proposal(p.clone());
    Ok(p)
}

/// Starts asking the peer validators for votes on this node's `proposal`, unless a
/// fan-out for it already runs. `own` is this node's vote.
pub(crate) fn solicit(state: &Arc<Consensus>, proposal: Arc<Proposal>, own: Vote) {
    let hash = proposal.block.hash;
    if !state.network.begin(hash) {
        return;
    }
    state.network.cache_proposal(proposal.clone());
    let task_state = state.clone();
    state.network.tasks.spawn(async move {
        task_state.metrics.peer_tasks.inc();
        gather_votes(&task_state, &proposal, own).await;
        task_state.network.end(&hash);
        task_state.metrics.peer_tasks.dec();
    });
}

async fn gather_votes(state: &Arc<Consensus>, proposal: &Arc<Proposal>, own: Vote) {
    let hash = proposal.block.hash;
    let (committee, epoch) = {
        let chain = state.chain.lock().await;
        (chain.engine.committee().clone(), chain.engine.epoch())
    };
    if proposal.block.header.epoch != epoch {
        return;
    }
    let mut votes: BTreeMap<Hash32, SignatureBytes> = [(own.validator_id, own.signature)].into();
    let targets: Vec<Arc<Peer>> = committee
        .ids()
        .iter()
        .filter(|id| **id != state.node_id)
        .filter_map(|id| state.network.peers.by_validator(id))
        .collect();
    // Closed breakers first; the open ones only if the rest cannot make a quorum.
    let (open, closed): (Vec<_>, Vec<_>) = targets
        .into_iter()
        .partition(|p| p.breaker_state() == crate::peers::breaker::BreakerState::Open);
    let mut calls = FuturesUnordered::new();
    // Validators asked whose answer has not come yet.
    let mut outstanding: std::collections::HashSet<Hash32> = std::collections::HashSet::new();
    for peer in closed {
        outstanding.extend(peer.validator_id);
        calls.push(ask(state, peer, proposal.clone(), false));
    }
    let mut probing = open;
    let deadline = tokio::time::sleep(FANOUT_DEADLINE);
    tokio::pin!(deadline);
    let mut shutdown = state.shutdown.clone();
    loop {
        if committee.is_quorum(committee.weight_of(votes.keys())) {
            break;
        }
        // The calls still running cannot make a quorum even if all of them vote: ask
        // the peers behind open breakers now, not after their breakers' timeout.
        let possible = committee.weight_of(votes.keys().chain(outstanding.iter()));
        if !committee.is_quorum(possible) && !probing.is_empty() {
            tracing::debug!(block = %hash, peers = probing.len(), "asking peers with open breakers too");
            for peer in probing.drain(..) {
                outstanding.extend(peer.validator_id);
                calls.push(ask(state, peer, proposal.clone(), true));
            }
        }
        let (peer, answer) = tokio::select! {
            next = calls.next() => match next {
                Some(done) => done,
                None => break,
            },
            _ = &mut deadline => {
                tracing::debug!(block = %hash, "vote deadline passed");
                break;
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        if let Some(id) = &peer.validator_id {
            outstanding.remove(id);
        }
        match answer {
            Ok(reply) => {
                let Some(vote) = reply.vote else { continue };
                let Some(key) = committee.key(&vote.validator_id) else {
                    continue;
                };
                if vote.block_hash != hash
                    || Some(vote.validator_id) != peer.validator_id
                    || vote.verify(key).is_err()
                {
                    tracing::warn!(peer = %peer.url, "a vote for another block, by another validator or with a bad signature was refused");
                    continue;
                }
                state.metrics.votes_received.inc();
                votes.insert(vote.validator_id, vote.signature);
            }
            Err(PeerError::Refused { code, detail, .. }) => {
                tracing::debug!(peer = %peer.url, code, detail, "proposal refused")
            }
            Err(e) => tracing::debug!(peer = %peer.url, error = %e, "no vote"),
        }
    }
    drop(calls);
    let weight = committee.weight_of(votes.keys());
    if !committee.is_quorum(weight) {
        return;
    }
    let qc = QuorumCertificate {
        block_hash: hash,
        votes: votes
            .iter()
            .map(|(v, s)| QcVote {
                validator_id: *v,
                signature: *s,
            })
            .collect(),
        weight,
        total_weight: committee.total(),
    };
    let mut chain = state.chain.lock().await;
    match certify(state, &mut chain, &proposal.block, &qc).await {
        Ok(_) => {
            drop(chain);
            announce(state, qc);
        }
        Err(e) => tracing::warn!(block = %hash, error = %e, "own block not certified"),
    }
}

async fn ask(
    state: &Arc<Consensus>,
    peer: Arc<Peer>,
    proposal: Arc<Proposal>,
    probe: bool,
) -> (Arc<Peer>, Result<SubmitBlockReply, PeerError>) {
    let peers = &state.network.peers;
    let answer = if probe {
        peers
            .post_json_probe::<_, SubmitBlockReply>(
                &peer,
                "/api/consensus/submit-block",
                &*proposal,
            )
            .await
    } else {
        peers
            .post_json::<_, SubmitBlockReply>(&peer, "/api/consensus/submit-block", &*proposal)
            .await
    };
    (peer, answer)
}

/// Sends the certificate to every peer, in parallel, without waiting for it.
pub(crate) fn announce(state: &Arc<Consensus>, qc: QuorumCertificate) {
    let task_state = state.clone();
    state.network.tasks.spawn(async move {
        let state = &task_state;
        state.metrics.peer_tasks.inc();
        let qc = Arc::new(qc);
        let peers = state.network.peers.peers();
        let calls: FuturesUnordered<_> = peers
            .iter()
            .map(|peer| {
                let qc = qc.clone();
                async move {
                    let r = state
                        .network
                        .peers
                        .post_json::<_, serde_json::Value>(peer, "/api/consensus/qc", &*qc)
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(peer = %peer.url, error = %e, "certificate not delivered");
                    }
                }
            })
            .collect();
        let mut shutdown = state.shutdown.clone();
        tokio::select! {
            _ = tokio::time::timeout(FANOUT_DEADLINE, calls.collect::<Vec<()>>()) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        state.metrics.peer_tasks.dec();
    });
}
