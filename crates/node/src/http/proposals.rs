//! The validator network's routes (docs/protocol.md §4.2–§4.4): a proposal in, a vote out;
//! a certificate in, finality marked; a stored block handed out as a proposal for a
//! validator that is catching up.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use bizra_ledger::proposal::{Proposal, ProposalError};
use bizra_ledger::vote::QuorumCertificate;
use serde::Serialize;

use super::extract::{parse_json, HashPath, JsonBytes};
use crate::consensus::accept::{accept, vote, AcceptError, Stored};
use crate::consensus::catchup::fill_gap;
use crate::consensus::fanout::{proposal_for, LoadError, SubmitBlockReply};
use crate::consensus::finality::{apply_certificate, FinalityStepError};
use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/consensus/submit-block", tag = "consensus",
    request_body(content = Object, description = "{\"block\": block, \"attestations\": [poi-1.0 attestation, ...]}"),
    responses((status = 200, body = SubmitBlockReply), (status = 400), (status = 403),
        (status = 409, description = "unknown_parent (this node is catching up), equivocation or duplicate_nonce")))]
pub(crate) async fn submit_block(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<SubmitBlockReply>, Problem> {
    let proposal: Arc<Proposal> = Arc::new(parse_json(&body)?);
    let hash = proposal.block.hash;
    let stored = match accept(&state.consensus, proposal.clone()).await {
        // Fetch what is missing from the proposer, then check the proposal again.
        Err(AcceptError::UnknownParents(_)) => match fill_gap(&state.consensus).await {
            Ok(_) => accept(&state.consensus, proposal).await,
            Err(e) => {
                tracing::debug!(error = %e, "could not fill the gap before a proposal");
                state.consensus.network.catch_up.notify_one();
                accept(&state.consensus, proposal).await
            }
        },
        other => other,
    }
    .map_err(accept_problem)?;
    let vote = vote(&state.consensus, &hash)
        .await
        .map_err(finality_problem)?;
    Ok(Json(SubmitBlockReply {
        block_hash: hash,
        stored: match stored {
            Stored::New => "new",
            Stored::Known => "known",
        }
        .into(),
        vote,
    }))
}

fn accept_problem(e: AcceptError) -> Problem {
    let detail = e.to_string();
    match e {
        AcceptError::Invalid(ProposalError::NotProposer { .. })
        | AcceptError::Invalid(ProposalError::Block(
            bizra_ledger::block::BlockError::Signature
            | bizra_ledger::block::BlockError::Unsigned
            | bizra_ledger::block::BlockError::ProposerKey,
        )) => Problem::new(ErrorCode::NotProposer, detail),
        AcceptError::Invalid(_) => Problem::new(ErrorCode::InvalidProposal, detail),
        AcceptError::Dag(_) => Problem::new(ErrorCode::InvalidBlock, detail),
        AcceptError::UnknownParents(_) => Problem::new(ErrorCode::UnknownParent, detail),
        AcceptError::Equivocation { .. } => Problem::new(ErrorCode::Equivocation, detail),
        AcceptError::NonceConflict(_) => Problem::new(
            ErrorCode::Rule(bizra_ledger::attestation::RuleCode::DuplicateNonce),
            detail,
        ),
        AcceptError::Store(e) => e.into(),
        AcceptError::Stopped => Problem::unavailable(detail),
    }
}

fn finality_problem(e: FinalityStepError) -> Problem {
    let detail = e.to_string();
    match e {
        FinalityStepError::UnknownBlock(_) => Problem::not_found(detail),
        FinalityStepError::Invalid(_) => Problem::new(ErrorCode::InvalidQc, detail),
        FinalityStepError::Store(e) => e.into(),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QcAccepted {
    pub(crate) block_hash: String,
    pub(crate) finalized: bool,
    /// Blocks this certificate finalized here (0 when they already were).
    pub(crate) newly_final: usize,
}

#[utoipa::path(post, path = "/api/consensus/qc", tag = "consensus",
    request_body(content = Object, description = "{\"block_hash\", \"votes\": [{validator_id, signature}], \"weight\", \"total_weight\"}"),
    responses((status = 200, body = QcAccepted), (status = 400), (status = 404)))]
pub(crate) async fn qc(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<QcAccepted>, Problem> {
    let qc: QuorumCertificate = parse_json(&body)?;
    let newly = apply_certificate(&state.consensus, &qc)
        .await
        .map_err(|e| {
            if matches!(e, FinalityStepError::UnknownBlock(_)) {
                state.consensus.network.catch_up.notify_one();
            }
            finality_problem(e)
        })?;
    Ok(Json(QcAccepted {
        block_hash: qc.block_hash.to_hex(),
        finalized: true,
        newly_final: newly,
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
