//! A validator's side of a proposal: check everything, store the block and its
//! attestations, and vote. Catch-up stores blocks through the same checks.

use std::sync::Arc;

use bizra_ledger::block::Block;
use bizra_ledger::dag::DagError;
use bizra_ledger::proposal::{Proposal, ProposalError};
use bizra_ledger::registry::{Evidence, RegistryEntry};
use bizra_ledger::vote::Vote;
use bizra_ledger::Hash32;
use bizra_store::{InsertOutcome, NewAttestation, Store, StoreError};
use serde_json::json;

use super::finality::{count_vote, FinalityStepError};
use super::Consensus;
use crate::clock::now_ms;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptError {
    #[error(transparent)]
    Invalid(#[from] ProposalError),
    #[error("parent blocks not known here: {}", list(.0))]
    UnknownParents(Vec<Hash32>),
    #[error("the proposer already signed block {existing} at height {height}; the two blocks are kept as slashing evidence")]
    Equivocation { existing: Hash32, height: u64 },
    #[error("block does not fit the DAG: {0}")]
    Dag(#[from] DagError),
    #[error("attestation {0} reuses a nonce of another attestation stored here")]
    NonceConflict(Hash32),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the check was cancelled (shutting down)")]
    Stopped,
}

fn list(hashes: &[Hash32]) -> String {
    hashes
        .iter()
        .map(|h| h.to_hex())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the block was new here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    New,
    Known,
}

/// Checks `proposal` and stores it. The signature checks run on the blocking pool
/// before the chain lock is taken, so a large block does not stall finality.
pub(crate) async fn accept(
    state: &Arc<Consensus>,
    proposal: Arc<Proposal>,
) -> Result<Stored, AcceptError> {
    let hash = proposal.block.hash;
    if state.chain.lock().await.dag.contains(&hash) {
        return Ok(Stored::Known);
    }
    let proposer = state.network.proposer;
    let anchor = state.anchor.clone();
    let to_check = proposal.clone();
    let checked = tokio::task::spawn_blocking(move || to_check.check(&proposer, &anchor))
        .await
        .map_err(|_| AcceptError::Stopped)??;
    state
        .metrics
        .signature_batch_size
        .observe(checked.len() as f64);

    let mut chain = state.chain.lock().await;
    if chain.dag.contains(&hash) {
        return Ok(Stored::Known);
    }
    let block = &proposal.block;
    let missing: Vec<Hash32> = block
        .header
        .parents
        .iter()
        .filter(|p| !chain.dag.contains(p))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(AcceptError::UnknownParents(missing));
    }
    if let Some(existing) = same_height(state, block).await? {
        report_equivocation(state, &existing, block).await;
        return Err(AcceptError::Equivocation {
            existing: existing.hash,
            height: block.header.height,
        });
    }
    chain.dag.check(block)?;

    let received = now_ms();
    let mut rows = Vec::with_capacity(checked.len());
    for (att, c) in proposal.attestations.iter().zip(&checked) {
        rows.push(NewAttestation::new(att, c.digest, received)?);
    }
    if !rows.is_empty() {
        for outcome in state.store.insert_attestations(&rows).await? {
            if let InsertOutcome::DuplicateNonce { existing_digest } = outcome {
                return Err(AcceptError::NonceConflict(existing_digest));
            }
        }
    }
    state.store.insert_block(block, received).await?;
    // The registry moves to the block's epoch, as on the proposer when it made it, and
    // takes the block's entries there: every node derives the same registry.
    let epoch = chain.epoch_at(block.header.timestamp_ms);
    chain.advance_registry(epoch);
    let entries = store_entries(state, &hash, &proposal.entries, epoch).await?;
    chain.dag.insert(block)?;
    chain.note_block(block);
    for (seq, result) in chain.apply_entries(&entries) {
        let event = match result {
            Ok(applied) => json!({"entry_seq": seq, "block_hash": hash, "applied": applied}),
            Err(e) => json!({"entry_seq": seq, "block_hash": hash, "rejected": e.to_string()}),
        };
        state.events.publish("validator_update", event);
    }
    state.metrics.blocks_accepted.inc();
    state.events.publish(
        "block_proposed",
        json!({"hash": hash, "height": block.header.height, "att_count": block.header.att_count, "timestamp_ms": block.header.timestamp_ms}),
    );
    state.publish_head(&chain);
    Ok(Stored::New)
}

/// Files the block's registry entries in this node's store as included in `block`, in
/// block order, so a restart replays them at the block as the proposer does. Returns
/// them with their seqs.
///
/// Each entry is stored once however often this runs for one block: an earlier run that
/// did not get the block into the DAG (its request was dropped once the proposer had its
/// quorum, or a later step failed) may have filed some of them as pending, or all of
/// them as included (one transaction marks them), and those rows are used again.
async fn store_entries(
    state: &Arc<Consensus>,
    block: &Hash32,
    entries: &[RegistryEntry],
    epoch: u64,
) -> Result<Vec<(u64, RegistryEntry)>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let invalid = |err: &dyn std::fmt::Display| StoreError::Invalid(err.to_string());
    let ids = entries
        .iter()
        .map(|e| e.digest().map_err(|err| invalid(&err)))
        .collect::<Result<Vec<Hash32>, _>>()?;
    let digest_of = |body: serde_json::Value| {
        serde_json::from_value::<RegistryEntry>(body)
            .ok()
            .and_then(|e| e.digest().ok())
    };
    let mut in_block = Vec::new();
    let mut pending: Vec<(u64, Option<Hash32>)> = Vec::new();
    for row in state.store.registry_entries().await? {
        match row.block_hash {
            Some(b) if b == *block => in_block.push((row.seq, digest_of(row.body))),
            None => pending.push((row.seq, digest_of(row.body))),
            Some(_) => {}
        }
    }
    if !in_block.is_empty() {
        // Rows come oldest first, which is the order they were filed in: block order.
        if !in_block
            .iter()
            .map(|(_, d)| *d)
            .eq(ids.iter().map(|id| Some(*id)))
        {
            return Err(StoreError::Conflict(format!(
                "the registry entries stored with block {block} are not the ones it names"
            )));
        }
        return Ok(in_block
            .into_iter()
            .map(|(seq, _)| seq)
            .zip(entries.iter().cloned())
            .collect());
    }
    let mut stored: Vec<(u64, RegistryEntry)> = Vec::with_capacity(entries.len());
    for (e, id) in entries.iter().zip(&ids) {
        // Only a row after the one before, so that seq order stays block order (a restart
        // replays the block's entries in seq order).
        let after = stored.last().map(|(seq, _)| *seq);
        let earlier = pending
            .iter_mut()
            .find(|(seq, d)| *d == Some(*id) && after.is_none_or(|a| *seq > a));
        let seq = match earlier {
            Some((seq, digest)) => {
                // Used once: a block naming one entry twice files it twice.
                *digest = None;
                *seq
            }
            None => {
                let body = serde_json::to_value(e).map_err(|err| invalid(&err))?;
                let kind = match e {
                    RegistryEntry::Register(_) => "register",
                    RegistryEntry::Exit(_) => "exit",
                    RegistryEntry::Slash { .. } => "slash",
                };
                state
                    .store
                    .insert_registry_entry(kind, &body, epoch)
                    .await?
            }
        };
        stored.push((seq, e.clone()));
    }
    let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
    state
        .store
        .mark_registry_entries_included(block, &seqs)
        .await?;
    Ok(stored)
}

/// Signs, stores and counts this node's vote for a stored block; `None` when this node
/// is not in the active set (it keeps the block but has no vote to give).
pub(crate) async fn vote(
    state: &Arc<Consensus>,
    hash: &Hash32,
) -> Result<Option<Vote>, FinalityStepError> {
    let mut chain = state.chain.lock().await;
    if chain
        .active_set()
        .iter()
        .all(|(id, _)| *id != state.node_id)
    {
        return Ok(None);
    }
    let vote = Vote::sign(*hash, &state.key);
    count_vote(state, &mut chain, &vote).await?;
    state.publish_head(&chain);
    Ok(Some(vote))
}

/// A block this node stored at the same height from the same proposer, other than
/// `block`.
async fn same_height(state: &Arc<Consensus>, block: &Block) -> Result<Option<Block>, StoreError> {
    let stored = state
        .store
        .blocks_from_height(block.header.height, 16)
        .await?;
    Ok(stored.into_iter().map(|sb| sb.block).find(|b| {
        b.header.height == block.header.height
            && b.header.proposer == block.header.proposer
            && b.hash != block.hash
    }))
}

/// Files the two signed headers as a slashing entry, once per (proposer, height). The
/// entry waits in this node's store like any submitted one.
async fn report_equivocation(state: &Arc<Consensus>, first: &Block, second: &Block) {
    if !state
        .network
        .first_report(first.header.proposer, first.header.height)
    {
        return;
    }
    tracing::warn!(proposer = %first.header.proposer, height = first.header.height, first = %first.hash, second = %second.hash, "proposer equivocated");
    // Only the headers and signatures are evidence; the ids would only make it larger.
    let strip = |b: &Block| Block {
        attestation_ids: vec![],
        entry_ids: vec![],
        ..b.clone()
    };
    let entry = RegistryEntry::Slash {
        evidence: Box::new(Evidence::double_proposal(strip(first), strip(second))),
    };
    let epoch = state.head.load().registry.epoch();
    match serde_json::to_value(&entry) {
        Ok(body) => {
            if let Err(e) = state
                .store
                .insert_registry_entry("slash", &body, epoch)
                .await
            {
                tracing::error!(error = %e, "could not file the equivocation evidence");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode the equivocation evidence"),
    }
}
