//! A validator's side of another validator's block (docs/protocol.md §3.4): check all
//! of it, store it with its attestations and entries, and vote. The safety rule: this
//! node signs at most one block per (epoch, height, proposer). The slot is recorded in
//! the store (durably) before the vote is signed, so no crash or restart, and no second
//! replica on a shared store, can make it vote for two blocks of one slot. A second block
//! for a signed slot is equivocation: the two signed headers are filed as evidence.
//!
//! Catch-up stores certified blocks through the same checks ([`store_checked`]), without
//! voting.

use std::sync::Arc;

use bizra_ledger::block::Block;
use bizra_ledger::consensus::dag::DagError;
use bizra_ledger::proposal::{Proposal, ProposalError};
use bizra_ledger::registry::{Evidence, RegistryEntry};
use bizra_ledger::vote::Vote;
use bizra_ledger::Hash32;
use bizra_store::{NewAttestation, Signing, Store, StoreError};
use serde_json::json;

use super::certify::{list, missing_parents};
use super::chain::Chain;
use super::Consensus;
use crate::clock::now_ms;

#[derive(Debug, thiserror::Error)]
pub(crate) enum VoteError {
    #[error(transparent)]
    Invalid(#[from] ProposalError),
    #[error("proposer {0} is not in this epoch's committee")]
    NotMember(Hash32),
    #[error("block is of epoch {got}; this node is in epoch {current} (it is catching up)")]
    AheadOfUs { current: u64, got: u64 },
    #[error("block is of epoch {got}, which closed; this node is in epoch {current}")]
    PastEpoch { current: u64, got: u64 },
    #[error("parent blocks not certified here: {}", list(.0))]
    MissingParents(Vec<Hash32>),
    #[error("block does not fit the DAG: {0}")]
    Dag(#[from] DagError),
    #[error("this node already holds block {signed} of proposer {proposer} at height {height}; the two blocks are filed as slashing evidence")]
    Equivocation {
        proposer: Hash32,
        height: u64,
        signed: Hash32,
    },
    #[error("this replica does not hold the signing lease")]
    NotSigner,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the check was cancelled (shutting down)")]
    Stopped,
}

/// Checks a proposal's own content (block integrity, proposer signature, every
/// attestation and entry) off the consensus lock, on the blocking pool.
pub(crate) async fn check_content(
    state: &Arc<Consensus>,
    proposal: &Arc<Proposal>,
) -> Result<(), VoteError> {
    let proposer = proposal.block.header.proposer;
    let key = state
        .head
        .load()
        .registry
        .key_of(&proposer)
        .ok_or(VoteError::NotMember(proposer))?;
    let anchor = state.anchor.clone();
    let to_check = proposal.clone();
    let checked =
        tokio::task::spawn_blocking(move || to_check.check(&key, &anchor).map(|c| c.len()))
            .await
            .map_err(|_| VoteError::Stopped)??;
    state.metrics.signature_batch_size.observe(checked as f64);
    Ok(())
}

/// Checks `proposal` against the DAG and stores it (block, attestations, entries, and the
/// checked certificate `qc` when it comes certified), under the lock. Returns false when
/// it was stored before.
pub(crate) async fn store_checked(
    state: &Arc<Consensus>,
    chain: &mut Chain,
    proposal: &Proposal,
    now: Option<u64>,
    qc: Option<&bizra_ledger::vote::QuorumCertificate>,
) -> Result<bool, VoteError> {
    let block = &proposal.block;
    let current = chain.engine.epoch();
    if block.header.epoch > current {
        return Err(VoteError::AheadOfUs {
            current,
            got: block.header.epoch,
        });
    }
    if block.header.epoch < current {
        return Err(VoteError::PastEpoch {
            current,
            got: block.header.epoch,
        });
    }
    if chain.knows(&block.hash) {
        return Ok(false);
    }
    // Another block of this proposer at this height, seen before: equivocation, whether
    // or not this node voted for either.
    let h = &block.header;
    let other = chain
        .engine
        .dag()
        .block_of(h.height, &h.proposer)
        .or_else(|| {
            chain
                .uncertified
                .values()
                .find(|b| b.header.height == h.height && b.header.proposer == h.proposer)
                .map(|b| b.hash)
        });
    if let Some(signed) = other {
        report_double_proposal(state, &signed, block).await;
        return Err(VoteError::Equivocation {
            proposer: h.proposer,
            height: h.height,
            signed,
        });
    }
    let missing = missing_parents(chain, block);
    if !missing.is_empty() {
        return Err(VoteError::MissingParents(missing));
    }
    match now {
        Some(now) => chain.engine.check_proposal(block, now)?,
        // A certified block: a quorum judged its timestamp by their clocks already.
        None => chain
            .engine
            .dag()
            .check(block, chain.engine.committee(), None)
            .or_else(|e| match e {
                DagError::UnknownParent(_) => Ok(()),
                e => Err(e),
            })?,
    }
    let received = now_ms();
    let mut rows = Vec::with_capacity(proposal.attestations.len());
    for (att, id) in proposal.attestations.iter().zip(&block.attestation_ids) {
        rows.push(NewAttestation::new(att, *id, received)?);
    }
    // Entries first, the block, then the entries' inclusion: a crash in between leaves
    // entries pending (included again later, to no further effect), never a block whose
    // entries this store lacks.
    let seqs = file_entries(state, &proposal.entries, block.header.epoch).await?;
    // Attestations, block and certificate: one transaction.
    state
        .store
        .insert_peer_block(block, &rows, qc, received, received)
        .await?;
    if !seqs.is_empty() {
        state
            .store
            .mark_registry_entries_included(&block.hash, &seqs)
            .await?;
    }
    chain.note_block(block);
    chain.uncertified.insert(block.hash, block.clone());
    state.metrics.blocks_accepted.inc();
    state.events.publish(
        "block_proposed",
        json!({"hash": block.hash, "epoch": block.header.epoch, "height": block.header.height, "proposer": block.header.proposer, "att_count": block.header.att_count, "timestamp_ms": block.header.timestamp_ms}),
    );
    Ok(true)
}

/// Checks, stores and votes for another validator's block. `None` when this node is not
/// in the committee (it keeps the block but has no vote to give).
pub(crate) async fn vote_for(
    state: &Arc<Consensus>,
    proposal: Arc<Proposal>,
) -> Result<(bool, Option<Vote>), VoteError> {
    check_content(state, &proposal).await?;
    let mut chain = state.chain.lock().await;
    let stored = store_checked(state, &mut chain, &proposal, Some(now_ms()), None).await?;
    state.publish_head(&chain);
    if !chain.engine.committee().contains(&state.node_id) {
        return Ok((stored, None));
    }
    if !state.leadership.is_leader() {
        return Err(VoteError::NotSigner);
    }
    let h = &proposal.block.header;
    match state
        .store
        .record_signing(
            h.epoch,
            h.height,
            &h.proposer,
            &proposal.block.hash,
            now_ms(),
        )
        .await?
    {
        Signing::First | Signing::Again => crate::faults::hit(crate::faults::AFTER_VOTE_RECORD),
        Signing::Conflict { signed } => {
            drop(chain);
            report_double_proposal(state, &signed, &proposal.block).await;
            return Err(VoteError::Equivocation {
                proposer: h.proposer,
                height: h.height,
                signed,
            });
        }
    }
    state.metrics.votes_sent.inc();
    Ok((stored, Some(Vote::sign(proposal.block.hash, &state.key))))
}

/// Files a block's registry entries in this node's store, in block order; returns their
/// seqs.
pub(crate) async fn file_entries(
    state: &Arc<Consensus>,
    entries: &[RegistryEntry],
    epoch: u64,
) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::with_capacity(entries.len());
    for e in entries {
        let body = serde_json::to_value(e).map_err(|err| StoreError::Invalid(err.to_string()))?;
        let kind = match e {
            RegistryEntry::Register(_) => "register",
            RegistryEntry::Exit(_) => "exit",
            RegistryEntry::Slash { .. } => "slash",
        };
        seqs.push(
            state
                .store
                .insert_registry_entry(kind, &body, epoch)
                .await?,
        );
    }
    Ok(seqs)
}

/// Files two blocks of one proposer at one slot as a slashing entry, once per slot. The
/// entry waits in this node's store like a submitted one and goes into its next block.
pub(crate) async fn report_double_proposal(
    state: &Arc<Consensus>,
    signed: &Hash32,
    second: &Block,
) {
    let h = &second.header;
    if !state.network.first_report(h.proposer, h.epoch, h.height) {
        return;
    }
    let first = match state.store.get_block(signed).await {
        Ok(Some(sb)) => sb.block,
        Ok(None) => {
            tracing::error!(block = %signed, "the block this node signed is not stored");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read the block this node signed");
            return;
        }
    };
    tracing::warn!(proposer = %h.proposer, epoch = h.epoch, height = h.height, first = %first.hash, second = %second.hash, "proposer equivocated");
    state.metrics.equivocations.inc();
    // Only the headers and signatures are evidence; the ids would only make it larger.
    let strip = |b: &Block| Block {
        attestation_ids: vec![],
        entry_ids: vec![],
        ..b.clone()
    };
    let entry = RegistryEntry::Slash {
        evidence: Box::new(Evidence::double_proposal(strip(&first), strip(second))),
    };
    match serde_json::to_value(&entry) {
        Ok(body) => {
            if let Err(e) = state
                .store
                .insert_registry_entry("slash", &body, h.epoch)
                .await
            {
                tracing::error!(error = %e, "could not file the equivocation evidence");
            } else {
                state.pending.wake();
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode the equivocation evidence"),
    }
}
