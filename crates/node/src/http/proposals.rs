//! The validator network's routes (docs/protocol.md §4.2–§4.4): a block from its proposer
//! in, this validator's vote out; a certificate in, the block certified here; a stored
//! block handed out as a proposal for a validator that is catching up.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use bizra_ledger::proposal::{Proposal, ProposalError};
use bizra_ledger::vote::QuorumCertificate;
use serde::Serialize;

use super::extract::{parse_json, HashPath, JsonBytes};
use crate::consensus::catchup::fill_gap;
use crate::consensus::certify::{certify, CertifyError};
use crate::consensus::fanout::{proposal_for, LoadError, SubmitBlockReply};
use crate::consensus::vote::{vote_for, VoteError};
use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/consensus/submit-block", tag = "consensus",
    request_body(content = Object, description = "{\"block\": block, \"attestations\": [poi-1.0 attestation, ...], \"entries\": [registry entry, ...]}"),
    responses((status = 200, body = SubmitBlockReply), (status = 400), (status = 403),
        (status = 409, description = "unknown_parent (this node is catching up), wrong_epoch or equivocation"),
        (status = 503, description = "this replica does not sign")))]
pub(crate) async fn submit_block(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<SubmitBlockReply>, Problem> {
    let proposal: Arc<Proposal> = Arc::new(parse_json(&body)?);
    let hash = proposal.block.hash;
    // In a task of its own: a proposer that has its quorum drops the call, and the
    // checks and writes under way must not stop half done.
    let consensus = state.consensus.clone();
    let answer = tokio::spawn(async move { check_and_vote(&consensus, proposal).await })
        .await
        .map_err(|e| Problem::internal(format!("the vote task failed: {e}")))?;
    let (stored, vote) = answer.map_err(vote_problem)?;
    Ok(Json(SubmitBlockReply {
        block_hash: hash,
        stored: if stored { "new" } else { "known" }.into(),
        vote,
    }))
}

async fn check_and_vote(
    consensus: &Arc<crate::consensus::Consensus>,
    proposal: Arc<Proposal>,
) -> Result<(bool, Option<bizra_ledger::vote::Vote>), VoteError> {
    match vote_for(consensus, proposal.clone()).await {
        // Fetch the certified parents from the proposer, then check the block again.
        Err(VoteError::MissingParents(_)) => {
            if let Err(e) = fill_gap(consensus, &proposal.block.header.proposer).await {
                tracing::debug!(error = %e, "could not fill the gap before a proposal");
                consensus.network.catch_up.notify_one();
            }
            vote_for(consensus, proposal).await
        }
        Err(e @ VoteError::AheadOfUs { .. }) => {
            consensus.note_behind();
            consensus.network.catch_up.notify_one();
            Err(e)
        }
        other => other,
    }
}

fn vote_problem(e: VoteError) -> Problem {
    let detail = e.to_string();
    match e {
        VoteError::NotMember(_)
        | VoteError::Invalid(ProposalError::NotProposer { .. })
        | VoteError::Invalid(ProposalError::Block(
            bizra_ledger::block::BlockError::Signature
            | bizra_ledger::block::BlockError::Unsigned
            | bizra_ledger::block::BlockError::ProposerKey,
        )) => Problem::new(ErrorCode::NotValidator, detail),
        VoteError::Invalid(_) => Problem::new(ErrorCode::InvalidProposal, detail),
        VoteError::Dag(_) => Problem::new(ErrorCode::InvalidBlock, detail),
        VoteError::MissingParents(_) => Problem::new(ErrorCode::UnknownParent, detail),
        VoteError::AheadOfUs { .. } | VoteError::PastEpoch { .. } => {
            Problem::new(ErrorCode::WrongEpoch, detail)
        }
        VoteError::Equivocation { .. } => Problem::new(ErrorCode::Equivocation, detail),
        VoteError::NotSigner => Problem::unavailable(detail),
        VoteError::Store(e) => e.into(),
        VoteError::Stopped => Problem::unavailable(detail),
    }
}

fn certify_problem(e: CertifyError) -> Problem {
    let detail = e.to_string();
    match e {
        CertifyError::Certificate(_) | CertifyError::WrongBlock { .. } => {
            Problem::new(ErrorCode::InvalidQc, detail)
        }
        CertifyError::Dag(_) => Problem::new(ErrorCode::InvalidBlock, detail),
        CertifyError::MissingParents(_) => Problem::new(ErrorCode::UnknownParent, detail),
        CertifyError::Epoch { .. } => Problem::new(ErrorCode::WrongEpoch, detail),
        CertifyError::Store(e) => e.into(),
        CertifyError::Chain(e) => Problem::internal(e.to_string()),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QcAccepted {
    pub(crate) block_hash: String,
    pub(crate) certified: bool,
    /// Whether this certificate certified the block here (false when it already was).
    pub(crate) newly_certified: bool,
}

#[utoipa::path(post, path = "/api/consensus/qc", tag = "consensus",
    request_body(content = Object, description = "{\"block_hash\", \"votes\": [{validator_id, signature}], \"weight\", \"total_weight\"}"),
    responses((status = 200, body = QcAccepted), (status = 400), (status = 404), (status = 409)))]
pub(crate) async fn qc(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<QcAccepted>, Problem> {
    let qc: QuorumCertificate = parse_json(&body)?;
    let consensus = &state.consensus;
    let block = {
        let chain = consensus.chain.lock().await;
        if chain.engine.dag().contains(&qc.block_hash) {
            return Ok(Json(QcAccepted {
                block_hash: qc.block_hash.to_hex(),
                certified: true,
                newly_certified: false,
            }));
        }
        chain.uncertified.get(&qc.block_hash).cloned()
    };
    let newly = match block {
        Some(block) => {
            // In a task of its own, so that a dropped call cannot stop it half done.
            let task = consensus.clone();
            let qc_for_task = qc.clone();
            let outcome = tokio::spawn(async move {
                let mut chain = task.chain.lock().await;
                certify(&task, &mut chain, &block, &qc_for_task).await
            })
            .await
            .map_err(|e| Problem::internal(format!("the certify task failed: {e}")))?;
            if matches!(outcome, Err(CertifyError::MissingParents(_))) {
                consensus.network.catch_up.notify_one();
            }
            outcome.map_err(certify_problem)? == crate::consensus::certify::Certified::New
        }
        None => {
            // A block this node never saw (it was away, or the proposer did not reach
            // it): the catch-up fetches it with its certificate.
            consensus.network.catch_up.notify_one();
            return Err(Problem::not_found(format!(
                "block {} is not stored here; fetching it",
                qc.block_hash
            )));
        }
    };
    Ok(Json(QcAccepted {
        block_hash: qc.block_hash.to_hex(),
        certified: true,
        newly_certified: newly,
    }))
}

#[utoipa::path(get, path = "/api/consensus/block/{hash}/proposal", tag = "consensus",
    params(("hash" = String, Path, description = "block hash (64 hex)")),
    responses((status = 200, description = "the block and its attestations, as submit-block takes them"), (status = 400), (status = 404)))]
pub(crate) async fn proposal(
    State(state): State<AppState>,
    HashPath(hash): HashPath,
) -> Result<Json<Proposal>, Problem> {
    if hash == state.consensus.genesis_block.hash {
        return Err(Problem::not_found("the genesis block is not a proposal"));
    }
    match proposal_for(&state.consensus, &hash).await {
        Ok(p) => Ok(Json((*p).clone())),
        Err(LoadError::UnknownBlock(_)) => Err(Problem::not_found(format!("no block {hash}"))),
        Err(LoadError::Store(e)) => Err(e.into()),
        Err(e) => Err(Problem::internal(e.to_string())),
    }
}
