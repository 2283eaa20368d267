//! Counting votes and applying certificates, the same way on the proposer and on every
//! validator: the store first, then the in-memory chain, then events and a new head.

use std::sync::Arc;

use bizra_ledger::finality::{ActiveSet, FinalityError, VoteOutcome};
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use bizra_store::{Store, StoreError};
use serde_json::json;

use super::chain::Chain;
use super::Consensus;
use crate::clock::now_ms;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FinalityStepError {
    #[error("block {0} is not known here")]
    UnknownBlock(Hash32),
    #[error(transparent)]
    Invalid(FinalityError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks and counts one vote (this node's own or a peer's), storing it first so that a
/// restart recounts it: when the store is down, memory is left as it was. Returns the
/// certificate when the vote finalized its block.
pub(crate) async fn count_vote(
    state: &Arc<Consensus>,
    chain: &mut Chain,
    vote: &Vote,
) -> Result<Option<QuorumCertificate>, FinalityStepError> {
    if !chain.dag.contains(&vote.block_hash) {
        return Err(FinalityStepError::UnknownBlock(vote.block_hash));
    }
    let active = chain.active_set();
    // Checked before it is stored: the store keeps only votes that verify.
    let (key, _) = active
        .member(&vote.validator_id)
        .ok_or(FinalityStepError::Invalid(FinalityError::NotActive(
            vote.validator_id,
        )))?;
    vote.verify(&key)
        .map_err(|e| FinalityStepError::Invalid(e.into()))?;
    save_unsaved(state, chain).await?;
    state.store.insert_vote(vote).await?;
    let outcome = chain
        .finality
        .add_vote(&chain.dag, vote, &active)
        .map_err(FinalityStepError::Invalid)?;
    match outcome {
        VoteOutcome::Finalized {
            certificate,
            newly_final,
        } => {
            record_final(state, chain, &certificate, &newly_final).await?;
            Ok(Some(certificate))
        }
        _ => Ok(None),
    }
}

/// Writes finality that an earlier store failure left in memory only.
pub(crate) async fn save_unsaved(
    state: &Arc<Consensus>,
    chain: &mut Chain,
) -> Result<(), StoreError> {
    while let Some((qc, hashes)) = chain.unsaved_final.first() {
        state
            .store
            .mark_finalized(hashes, Some(qc), now_ms())
            .await?;
        chain.unsaved_final.remove(0);
    }
    Ok(())
}

/// Applies a certificate (from the proposer's announcement or read from it during
/// catch-up): every vote checked against this node's active set. Returns the number of
/// blocks it finalized here.
pub(crate) async fn apply_certificate(
    state: &Arc<Consensus>,
    qc: &QuorumCertificate,
) -> Result<usize, FinalityStepError> {
    let mut chain = state.chain.lock().await;
    if !chain.dag.contains(&qc.block_hash) {
        return Err(FinalityStepError::UnknownBlock(qc.block_hash));
    }
    if chain.finality.is_final(&qc.block_hash) {
        return Ok(0);
    }
    let active = chain.active_set();
    let chain = &mut *chain;
    let newly = chain
        .finality
        .apply_certificate(&chain.dag, qc, &active)
        .map_err(FinalityStepError::Invalid)?;
    if newly.is_empty() {
        return Ok(0);
    }
    let stored = chain
        .certificate(&qc.block_hash)
        .cloned()
        .unwrap_or(qc.clone());
    record_final(state, chain, &stored, &newly).await?;
    state.publish_head(chain);
    Ok(newly.len())
}

/// Stores finality of `newly_final` with the certificate that caused it, and tells
/// subscribers. The in-memory finality is already updated by the caller.
pub(crate) async fn record_final(
    state: &Arc<Consensus>,
    chain: &mut Chain,
    certificate: &QuorumCertificate,
    newly_final: &[Hash32],
) -> Result<(), StoreError> {
    let at = now_ms();
    if let Err(e) = state
        .store
        .mark_finalized(newly_final, Some(certificate), at)
        .await
    {
        // Memory already holds this finality; the store gets it at the next change.
        chain
            .unsaved_final
            .push((certificate.clone(), newly_final.to_vec()));
        return Err(e);
    }
    chain.note_final(&certificate.block_hash, at);
    state
        .metrics
        .blocks_finalized
        .inc_by(newly_final.len() as u64);
    for h in newly_final {
        publish_finalized(state, chain, h);
    }
    Ok(())
}

pub(crate) fn publish_finalized(state: &Arc<Consensus>, chain: &Chain, hash: &Hash32) {
    let height = chain.dag.header(hash).map(|h| h.height);
    state
        .events
        .publish("block_finalized", json!({"hash": hash, "height": height}));
}
