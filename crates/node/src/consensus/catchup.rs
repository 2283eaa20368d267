//! A validator that was away (or is new) pulls the blocks it lacks from the proposer,
//! checking each exactly as a proposal, and the certificates of those final there. The
//! same loop forwards attestations submitted to this node to the proposer, since only
//! the proposer makes blocks.

use std::sync::Arc;

use std::time::Duration;

use bizra_ledger::block::BlockHeader;
use bizra_ledger::proposal::Proposal;
use bizra_ledger::vote::{QcVote, QuorumCertificate};
use bizra_ledger::Hash32;
use bizra_store::{Store, StoreError};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::accept::{accept, AcceptError};
use super::finality::{apply_certificate, FinalityStepError};
use super::Consensus;
use crate::peers::set::{Peer, PeerError};

/// How often a validator looks for blocks it missed when nothing woke it sooner.
pub(crate) const CATCH_UP_EVERY: Duration = Duration::from_secs(2);

/// Blocks per page asked from the proposer.
const PAGE: u32 = 100;

/// Attestations forwarded per batch call (the batch route's limit).
const RELAY_BATCH: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatchUpError {
    #[error("proposer: {0}")]
    Peer(#[from] PeerError),
    #[error("block {hash} from the proposer refused: {source}")]
    Block { hash: Hash32, source: AcceptError },
    #[error(transparent)]
    Finality(#[from] FinalityStepError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Deserialize)]
struct RemotePage {
    items: Vec<RemoteBlock>,
    next_from_height: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RemoteBlock {
    hash: Hash32,
    header: BlockHeader,
    finalized: bool,
    qc: Option<RemoteQc>,
}

#[derive(Debug, Deserialize)]
struct RemoteQc {
    votes: Vec<QcVote>,
    weight: u64,
    total_weight: u64,
}

/// Runs until shutdown on every node but the proposer.
pub(crate) async fn run(state: Arc<Consensus>) {
    if state.is_proposer {
        return;
    }
    let Some(proposer) = state.network.proposer_peer() else {
        tracing::info!("no address for the proposer: catch-up is off");
        return;
    };
    let mut shutdown = state.shutdown.clone();
    loop {
        {
            let mut chain = state.chain.lock().await;
            if let Err(e) = super::finality::save_unsaved(&state, &mut chain).await {
                tracing::warn!(error = %e, "finality not yet written to the store; retrying");
            }
        }
        match catch_up(&state, &proposer).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(blocks = n, "caught up with the proposer"),
            Err(e) => tracing::warn!(error = %e, "catch-up with the proposer failed; retrying"),
        }
        if let Err(e) = relay_pending(&state, &proposer).await {
            tracing::debug!(error = %e, "forwarding attestations to the proposer failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(CATCH_UP_EVERY) => {}
            _ = state.network.catch_up.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// Most a proposal waits while its validator fetches the blocks it lacks.
pub(crate) const GAP_FILL_DEADLINE: Duration = Duration::from_secs(2);

/// Catches up with the proposer now, within [`GAP_FILL_DEADLINE`]: called when a proposal
/// names parents this node lacks (its call for an earlier block was dropped once the
/// proposer had its quorum, or the node was away), so that it can still vote for it.
pub(crate) async fn fill_gap(state: &Arc<Consensus>) -> Result<usize, CatchUpError> {
    let Some(proposer) = state.network.proposer_peer() else {
        return Ok(0);
    };
    tokio::time::timeout(GAP_FILL_DEADLINE, catch_up(state, &proposer))
        .await
        .unwrap_or(Err(CatchUpError::Peer(PeerError::Timeout)))
}

/// Pulls every block above this node's finalized height that it lacks, then the
/// certificates of blocks final at the proposer. Returns how many blocks it stored.
pub(crate) async fn catch_up(
    state: &Arc<Consensus>,
    proposer: &Peer,
) -> Result<usize, CatchUpError> {
    let peers = &state.network.peers;
    let mut from = state.head.load().finalized_height.max(1);
    let mut stored = 0;
    loop {
        let page: RemotePage = peers
            .get_json(
                proposer,
                &format!("/api/consensus/blocks?from_height={from}&limit={PAGE}"),
            )
            .await?;
        let mut progressed = false;
        for b in &page.items {
            if b.header.height == 0 {
                continue;
            }
            let known = state.chain.lock().await.dag.contains(&b.hash);
            if !known {
                let p: Proposal = peers
                    .get_json(
                        proposer,
                        &format!("/api/consensus/block/{}/proposal", b.hash),
                    )
                    .await?;
                accept(state, std::sync::Arc::new(p))
                    .await
                    .map_err(|source| CatchUpError::Block {
                        hash: b.hash,
                        source,
                    })?;
                stored += 1;
                progressed = true;
            }
            if let (true, Some(qc)) = (b.finalized, &b.qc) {
                let qc = QuorumCertificate {
                    block_hash: b.hash,
                    votes: qc.votes.clone(),
                    weight: qc.weight,
                    total_weight: qc.total_weight,
                };
                if apply_certificate(state, &qc).await? > 0 {
                    progressed = true;
                }
            }
        }
        match page.next_from_height {
            // A page cut inside one height starts again at it; only go on if it moved.
            Some(next) if next > from || progressed => from = next,
            _ => break,
        }
    }
    Ok(stored)
}

/// Attestations accepted here but in no block yet go to the proposer (idempotent
/// there); they become final here when its block arrives.
async fn relay_pending(state: &Arc<Consensus>, proposer: &Peer) -> Result<(), CatchUpError> {
    let ids = state.store.pending_attestations(RELAY_BATCH).await?;
    if ids.is_empty() {
        return Ok(());
    }
    let mut bodies: Vec<Box<RawValue>> = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(record) = state.store.get_attestation(id).await? {
            match String::from_utf8(record.body)
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
            {
                Some(raw) => bodies.push(raw),
                None => tracing::error!(attestation = %id, "stored attestation is not JSON"),
            }
        }
    }
    #[derive(serde::Serialize)]
    struct Batch {
        attestations: Vec<Box<RawValue>>,
    }
    let n = bodies.len();
    let _: serde_json::Value = state
        .network
        .peers
        .post_json(
            proposer,
            "/api/validator/attestation/batch",
            &Batch {
                attestations: bodies,
            },
        )
        .await?;
    tracing::debug!(attestations = n, "forwarded to the proposer");
    Ok(())
}
