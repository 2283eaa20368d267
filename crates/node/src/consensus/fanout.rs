//! The proposer's side: send a block to every peer validator in parallel, count each
//! vote as it arrives, stop as soon as the block is final (the calls still running are
//! dropped, which cancels them), then announce the certificate.

use std::sync::Arc;

use bizra_ledger::attestation::Attestation;
use bizra_ledger::block::Block;
use bizra_ledger::proposal::Proposal;
use bizra_ledger::registry::RegistryEntry;
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use bizra_store::{Store, StoreError};
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};

use super::finality::count_vote;
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
    /// The validator's vote; null from a node outside the active set.
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
    #[error("stored registry entry {0} is unreadable")]
    Entry(u64),
    #[error("the registry entries stored with block {0} are not the ones it names")]
    Entries(Hash32),
}

/// The proposal for a stored block: the block, its attestations read from the store,
/// and `entries`, the registry entries it includes, in order.
pub(crate) async fn load_proposal(
    state: &Arc<Consensus>,
    block: Block,
    entries: Vec<RegistryEntry>,
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
    Ok(Proposal {
        block,
        attestations,
        entries,
    })
}

/// The registry entries a stored block includes, in filing order, which is block order
/// (the proposer files them in pending order, a validator in the block's). Checked
/// against the block's `entry_ids`, which a validator requires of the proposal. Reads
/// every entry: only for blocks asked for again (resolicit, catch-up), not for each new
/// block.
async fn included_entries(
    state: &Arc<Consensus>,
    block: &Block,
) -> Result<Vec<RegistryEntry>, LoadError> {
    let mut entries: Vec<(u64, RegistryEntry)> = Vec::new();
    for e in state.store.registry_entries().await? {
        if e.block_hash == Some(block.hash) {
            let entry = serde_json::from_value(e.body).map_err(|_| LoadError::Entry(e.seq))?;
            entries.push((e.seq, entry));
        }
    }
    entries.sort_by_key(|(seq, _)| *seq);
    let entries: Vec<RegistryEntry> = entries.into_iter().map(|(_, e)| e).collect();
    let ids = entries.iter().map(|e| e.digest().ok());
    if !ids.eq(block.entry_ids.iter().map(|id| Some(*id))) {
        return Err(LoadError::Entries(block.hash));
    }
    Ok(entries)
}

/// The proposal for `hash`, from the last one built when it is that block.
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
    let entries = included_entries(state, &sb.block).await?;
    let p = Arc::new(load_proposal(state, sb.block, entries).await?);
    state.network.cache_proposal(p.clone());
    Ok(p)
}

/// Starts asking the peer validators that have not voted for `proposal`'s block, unless a
/// fan-out for it is already running.
pub(crate) fn solicit(state: &Arc<Consensus>, proposal: Arc<Proposal>) {
    let hash = proposal.block.hash;
    if state.network.peers.is_empty() || !state.network.begin(hash) {
        return;
    }
    state.network.cache_proposal(proposal.clone());
    let task_state = state.clone();
    state.network.tasks.spawn(async move {
        task_state.metrics.peer_tasks.inc();
        gather_votes(&task_state, &proposal).await;
        task_state.network.end(&hash);
        task_state.metrics.peer_tasks.dec();
    });
}

/// Asks again for the newest block that is not final (validators that were down, or
/// catching up, vote now; finalizing it finalizes its ancestors).
pub(crate) async fn resolicit(state: &Arc<Consensus>) {
    if state.network.peers.is_empty() {
        return;
    }
    let head = state.head.load_full();
    let Some(tip) = head
        .tips
        .iter()
        .filter(|t| !t.finalized && t.height > 0)
        .max_by_key(|t| t.height)
    else {
        return;
    };
    if state.network.is_in_flight(&tip.hash) {
        return;
    }
    match proposal_for(state, &tip.hash).await {
        Ok(p) => solicit(state, p),
        Err(e) => tracing::warn!(block = %tip.hash, error = %e, "cannot rebuild a proposal"),
    }
}

async fn gather_votes(state: &Arc<Consensus>, proposal: &Arc<Proposal>) {
    let hash = proposal.block.hash;
    let targets: Vec<Arc<Peer>> = {
        let chain = state.chain.lock().await;
        let voted = chain.finality.voters(&hash);
        chain
            .active_set()
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != state.node_id && !voted.contains(id))
            .filter_map(|id| state.network.peers.by_validator(&id).cloned())
            .collect()
    };
    if targets.is_empty() {
        return;
    }
    let mut calls: FuturesUnordered<_> = targets
        .into_iter()
        .map(|peer| {
            let proposal = proposal.clone();
            async move {
                let answer = state
                    .network
                    .peers
                    .post_json::<_, SubmitBlockReply>(
                        &peer,
                        "/api/consensus/submit-block",
                        &*proposal,
                    )
                    .await;
                (peer, answer)
            }
        })
        .collect();
    let deadline = tokio::time::sleep(FANOUT_DEADLINE);
    tokio::pin!(deadline);
    let mut shutdown = state.shutdown.clone();
    loop {
        let (peer, answer) = tokio::select! {
            next = calls.next() => match next {
                Some(done) => done,
                None => break,
            },
            _ = &mut deadline => {
                tracing::debug!(block = %hash, "vote deadline passed");
                break;
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match answer {
            Ok(reply) => {
                let Some(vote) = reply.vote else { continue };
                if vote.block_hash != hash || Some(vote.validator_id) != peer.validator_id {
                    tracing::warn!(peer = %peer.url, "a vote for another block or by another validator was refused");
                    continue;
                }
                let mut chain = state.chain.lock().await;
                match count_vote(state, &mut chain, &vote).await {
                    Ok(Some(qc)) => {
                        state.metrics.votes_received.inc();
                        state.publish_head(&chain);
                        drop(chain);
                        announce(state, qc);
                        // Dropping `calls` cancels the calls still running.
                        break;
                    }
                    Ok(None) => {
                        state.metrics.votes_received.inc();
                        state.publish_head(&chain);
                    }
                    Err(e) => tracing::warn!(peer = %peer.url, error = %e, "vote refused"),
                }
            }
            Err(PeerError::Refused { code, detail, .. }) => {
                tracing::debug!(peer = %peer.url, code, detail, "proposal refused")
            }
            Err(e) => tracing::debug!(peer = %peer.url, error = %e, "no vote"),
        }
    }
}

/// Sends the certificate to every peer, in parallel, without waiting for it.
pub(crate) fn announce(state: &Arc<Consensus>, qc: QuorumCertificate) {
    let task_state = state.clone();
    state.network.tasks.spawn(async move {
        let state = &task_state;
        state.metrics.peer_tasks.inc();
        let qc = Arc::new(qc);
        let calls: FuturesUnordered<_> = state
            .network
            .peers
            .peers()
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
