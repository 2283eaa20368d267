//! Consensus read routes: status, stats, genesis, tipset, blocks, finality, health, and
//! the ledger. Answered from the published head snapshot and the store; never from the
//! consensus lock.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bizra_ledger::block::BlockHeader;
use bizra_ledger::Hash32;
use bizra_store::{Store, StoredBlock, MAX_PAGE_LIMIT};
use bizra_wire::block::{
    BlockPage, BlockView, FinalityView, LedgerItem, LedgerPage, QcView, QcVoteView,
};
use serde::{Deserialize, Serialize};

use super::extract::{HashPath, Q};
use crate::cache::CacheKey;
use crate::clock::now_ms;
use crate::consensus::chain::TipView;
use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

/// Slots without a commit, while work is pending, from which `/api/consensus/health`
/// answers 503.
pub(crate) const MAX_SLOTS_WITHOUT_COMMIT: u64 = 10;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Status {
    pub(crate) chain_id: String,
    #[schema(value_type = String)]
    pub(crate) genesis_hash: Hash32,
    /// Highest height with a certified block in the current epoch.
    pub(crate) height: u64,
    /// Height of the last committed leader in the current epoch.
    pub(crate) finalized_height: u64,
    pub(crate) tipset_size: usize,
    /// The epoch of the DAG this node builds on (it begins when a leader closes the one
    /// before, §3.6).
    pub(crate) epoch: u64,
    pub(crate) slot: u64,
    /// Finalized attestations: the next `log_index`.
    pub(crate) ledger_size: u64,
    pub(crate) validator_count: usize,
    pub(crate) active_validators: usize,
    /// Whether this node is in the epoch's committee (it proposes and votes).
    pub(crate) is_validator: bool,
}

fn status_of(state: &AppState) -> Status {
    let head = state.consensus.head.load();
    let now = now_ms();
    let genesis_ms = state.consensus.genesis_block.header.timestamp_ms;
    let slot_ms = state.config.slot.as_millis() as u64;
    Status {
        chain_id: state.anchor.chain_id.clone(),
        genesis_hash: state.consensus.genesis_block.hash,
        height: head.height,
        finalized_height: head.finalized_height,
        tipset_size: head.tips.len(),
        epoch: head.epoch,
        slot: bizra_ledger::registry::slot_of_time(genesis_ms, now, slot_ms),
        ledger_size: head.ledger_len,
        validator_count: head.validator_count,
        active_validators: head.active_validators,
        is_validator: state.consensus.is_validator(),
    }
}

#[utoipa::path(get, path = "/api/consensus/status", tag = "consensus", responses((status = 200, body = Status)))]
pub(crate) async fn status(State(state): State<AppState>) -> Json<Status> {
    Json(status_of(&state))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Stats {
    #[serde(flatten)]
    pub(crate) status: Status,
    /// Blocks stored here, certified, and committed.
    pub(crate) blocks_total: u64,
    pub(crate) blocks_certified: u64,
    pub(crate) blocks_finalized: u64,
    /// This node's own blocks since it started.
    pub(crate) blocks_produced: u64,
    pub(crate) attestations_accepted: u64,
    pub(crate) attestations_pending: u64,
    pub(crate) attestations_finalized: u64,
    pub(crate) avg_block_time_ms: Option<f64>,
    pub(crate) avg_finality_time_ms: Option<f64>,
    /// Attestations included in blocks per second, over the last minute.
    pub(crate) tps_1m: f64,
}

#[utoipa::path(get, path = "/api/consensus/stats", tag = "consensus", responses((status = 200, body = Stats)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let head = state.consensus.head.load_full();
    let key = CacheKey::View("stats", head.view_id);
    if let Some(hit) = state.cache.serve(&key, &headers).await {
        return Ok(hit);
    }
    let accepted = state.store.count_attestations().await?;
    let pending = state.store.count_pending_attestations().await?;
    let stats = Stats {
        status: status_of(&state),
        blocks_total: head.blocks,
        blocks_certified: head.certified_blocks,
        blocks_finalized: head.finalized_blocks,
        blocks_produced: state.metrics.blocks_produced.get(),
        attestations_accepted: accepted,
        attestations_pending: pending,
        attestations_finalized: head.ledger_len,
        avg_block_time_ms: head.avg_block_time_ms,
        avg_finality_time_ms: head.avg_finality_time_ms,
        tps_1m: head.included_per_sec_1m,
    };
    state
        .cache
        .store_and_respond(key, &stats, &headers)
        .map_err(|e| Problem::internal(e.to_string()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct GenesisValidatorView {
    pub(crate) validator_id: String,
    pub(crate) pubkey_ed25519: String,
    pub(crate) stake_bond: u64,
    pub(crate) network_address: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct GenesisView {
    pub(crate) chain_id: String,
    pub(crate) genesis_hash: String,
    pub(crate) genesis_merkle_root: String,
    pub(crate) genesis_time: String,
    pub(crate) height: u64,
    pub(crate) validators: Vec<GenesisValidatorView>,
    pub(crate) parameters: Parameters,
    #[schema(value_type = Object)]
    pub(crate) header: BlockHeader,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Parameters {
    pub(crate) slot_ms: u64,
    pub(crate) epoch_slots: u64,
    pub(crate) finality_threshold_bps: u64,
    pub(crate) max_active_validators: usize,
    pub(crate) max_block_attestations: usize,
}

#[utoipa::path(get, path = "/api/consensus/genesis", tag = "consensus", responses((status = 200, body = GenesisView)))]
pub(crate) async fn genesis(State(state): State<AppState>) -> Json<GenesisView> {
    let g = &state.consensus.genesis;
    Json(GenesisView {
        chain_id: g.chain_id.clone(),
        genesis_hash: state.consensus.genesis_block.hash.to_hex(),
        genesis_merkle_root: g.genesis_merkle_root.to_hex(),
        genesis_time: g.genesis_time.clone(),
        height: 0,
        validators: g
            .validators
            .iter()
            .map(|v| GenesisValidatorView {
                validator_id: v.validator_id().to_hex(),
                pubkey_ed25519: v.pubkey_ed25519.to_string(),
                stake_bond: v.stake_bond,
                network_address: v.network_address.clone(),
            })
            .collect(),
        parameters: Parameters {
            slot_ms: state.config.slot.as_millis() as u64,
            epoch_slots: bizra_ledger::params::EPOCH_SLOTS,
            finality_threshold_bps: bizra_ledger::params::FINALITY_THRESHOLD_BPS,
            max_active_validators: bizra_ledger::params::MAX_ACTIVE_VALIDATORS,
            max_block_attestations: state.config.max_block_attestations,
        },
        header: state.consensus.genesis_block.header.clone(),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Tipset {
    pub(crate) tips: Vec<TipView>,
    pub(crate) count: usize,
    pub(crate) epoch: u64,
    pub(crate) height: u64,
    /// Weight of the proposers with a certified block at `height`.
    pub(crate) total_weight: u64,
    pub(crate) finalized_height: u64,
}

#[utoipa::path(get, path = "/api/consensus/tipset", tag = "consensus", responses((status = 200, body = Tipset)))]
pub(crate) async fn tipset(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let head = state.consensus.head.load();
    let key = CacheKey::View("tipset", head.view_id);
    if let Some(hit) = state.cache.serve(&key, &headers).await {
        return Ok(hit);
    }
    let tipset = Tipset {
        tips: head.tips.clone(),
        count: head.tips.len(),
        epoch: head.epoch,
        height: head.height,
        total_weight: head.tips_weight,
        finalized_height: head.finalized_height,
    };
    state
        .cache
        .store_and_respond(key, &tipset, &headers)
        .map_err(|e| Problem::internal(e.to_string()))
}

fn block_view(sb: StoredBlock) -> BlockView {
    BlockView {
        hash: sb.block.hash.to_hex(),
        signature: sb.block.signature.map(|s| s.to_hex()),
        attestation_ids: sb
            .block
            .attestation_ids
            .iter()
            .map(|h| h.to_hex())
            .collect(),
        entry_ids: sb.block.entry_ids.iter().map(|h| h.to_hex()).collect(),
        header: sb.block.header,
        certified: sb.certified,
        finalized: sb.finalized,
        finalized_at_ms: sb.finalized_at_ms,
        commit_seq: sb.commit_seq,
        qc: sb.qc.map(|qc| QcView {
            votes: qc
                .votes
                .into_iter()
                .map(|v| QcVoteView {
                    validator_id: v.validator_id.to_hex(),
                    signature: v.signature.to_hex(),
                })
                .collect(),
            weight: qc.weight,
            total_weight: qc.total_weight,
        }),
    }
}

async fn load_block(state: &AppState, hash: &Hash32) -> Result<StoredBlock, Problem> {
    if *hash == state.consensus.genesis_block.hash {
        let t = state.consensus.genesis_block.header.timestamp_ms;
        return Ok(StoredBlock {
            block: state.consensus.genesis_block.clone(),
            certified: true,
            certified_at_ms: Some(t),
            finalized: true,
            finalized_at_ms: Some(t),
            commit_seq: None,
            qc: None,
            created_at_ms: t,
        });
    }
    state
        .store
        .get_block(hash)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no block {hash}")))
}

#[utoipa::path(get, path = "/api/consensus/block/{hash}", tag = "consensus",
    params(("hash" = String, Path, description = "block hash (64 hex)")),
    responses((status = 200, body = BlockView), (status = 400), (status = 404)))]
pub(crate) async fn block(
    State(state): State<AppState>,
    HashPath(hash): HashPath,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let key = CacheKey::Block(hash);
    if let Some(hit) = state.cache.serve(&key, &headers).await {
        return Ok(hit);
    }
    let sb = load_block(&state, &hash).await?;
    if !sb.finalized {
        return Ok(Json(block_view(sb)).into_response());
    }
    // Committed: its certificate and state no longer change.
    state
        .cache
        .store_and_respond(key, &block_view(sb), &headers)
        .map_err(|e| Problem::internal(e.to_string()))
}

/// A page size: 1–[`MAX_PAGE_LIMIT`], default 100.
fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(Problem::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_PAGE_LIMIT}"),
        )
        .with_field("limit"));
    }
    Ok(limit)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlocksQuery {
    /// The epoch (default: this node's current epoch).
    pub(crate) epoch: Option<u64>,
    /// First height (default 0: genesis first, in epoch 0).
    pub(crate) from_height: Option<u64>,
    /// 1–1000, default 100.
    pub(crate) limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/consensus/blocks", tag = "consensus", params(BlocksQuery),
    responses((status = 200, body = BlockPage), (status = 400)))]
pub(crate) async fn blocks(
    State(state): State<AppState>,
    Q(q): Q<BlocksQuery>,
) -> Result<Json<BlockPage>, Problem> {
    let limit = page_limit(q.limit)?;
    let epoch = q.epoch.unwrap_or_else(|| state.consensus.head.load().epoch);
    let from = q.from_height.unwrap_or(0);
    let mut items = Vec::new();
    if from == 0 && epoch == 0 {
        items.push(block_view(
            load_block(&state, &state.consensus.genesis_block.hash).await?,
        ));
    }
    // Whole heights only, so that `next_from_height` never skips a block: a full page
    // gives back the blocks of its last height, unless that is its only height (then the
    // page holds all of that height's blocks, at most one per validator).
    let want = limit as usize - items.len();
    let mut next_from_height = None;
    if want > 0 {
        let mut stored = state
            .store
            .blocks_of_epoch(epoch, from.max(1), want as u32)
            .await?;
        if stored.len() == want {
            let last = stored.last().map_or(0, |b| b.block.header.height);
            let first = stored.first().map_or(0, |b| b.block.header.height);
            if first == last {
                stored = state
                    .store
                    .blocks_of_epoch(epoch, last, MAX_PAGE_LIMIT)
                    .await?
                    .into_iter()
                    .filter(|b| b.block.header.height == last)
                    .collect();
                next_from_height = Some(last + 1);
            } else {
                stored.retain(|b| b.block.header.height < last);
                next_from_height = Some(last);
            }
        }
        items.extend(stored.into_iter().map(block_view));
    }
    Ok(Json(BlockPage {
        epoch,
        items,
        next_from_height,
    }))
}

#[utoipa::path(get, path = "/api/consensus/finality/{hash}", tag = "consensus",
    params(("hash" = String, Path, description = "block hash (64 hex)")),
    responses((status = 200, body = FinalityView), (status = 400), (status = 404)))]
pub(crate) async fn finality(
    State(state): State<AppState>,
    HashPath(hash): HashPath,
) -> Result<Json<FinalityView>, Problem> {
    let sb = load_block(&state, &hash).await?;
    let head = state.consensus.head.load_full();
    let (weight, total, voters) = match &sb.qc {
        Some(qc) => (
            qc.weight,
            qc.total_weight,
            qc.votes.iter().map(|v| v.validator_id.to_hex()).collect(),
        ),
        None => (0, head.total_active_weight, vec![]),
    };
    Ok(Json(FinalityView {
        hash: hash.to_hex(),
        epoch: sb.block.header.epoch,
        height: sb.block.header.height,
        certified: sb.certified,
        finalized: sb.finalized,
        weight,
        total_weight: total,
        threshold_bps: bizra_ledger::params::FINALITY_THRESHOLD_BPS,
        voters,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConsensusHealth {
    pub(crate) healthy: bool,
    /// Why the node is unhealthy; null when healthy.
    pub(crate) reason: Option<String>,
    pub(crate) epoch: u64,
    pub(crate) height: u64,
    pub(crate) finalized_height: u64,
    /// Heights between the highest certified one and the last committed leader.
    pub(crate) commit_lag: u64,
    /// Weight of the committee members this node reaches (itself included).
    pub(crate) reachable_weight: u64,
    pub(crate) total_weight: u64,
    pub(crate) pending: u64,
    pub(crate) ms_since_commit: Option<u64>,
}

/// 503 when the validators this node reaches hold less than 2/3 of the weight, or
/// nothing was committed for 10 slots while work is pending.
#[utoipa::path(get, path = "/api/consensus/health", tag = "consensus",
    responses((status = 200, body = ConsensusHealth), (status = 503, body = ConsensusHealth)))]
pub(crate) async fn health(State(state): State<AppState>) -> Result<Response, Problem> {
    let head = state.consensus.head.load_full();
    let pending = state.store.count_pending_attestations().await?;
    let now = now_ms();
    let reachable = crate::consensus::catchup::reachable_weight(&state.consensus, &head);
    let quorum = bizra_ledger::vote::meets_threshold(
        reachable,
        head.total_active_weight,
        bizra_ledger::params::FINALITY_THRESHOLD_BPS,
    );
    let slot_ms = state.config.slot.as_millis() as u64;
    let started_ms = now.saturating_sub(state.started.elapsed().as_millis() as u64);
    let since = now.saturating_sub(head.last_commit_ms.unwrap_or(started_ms).max(started_ms));
    let stalled = pending > 0 && since >= MAX_SLOTS_WITHOUT_COMMIT * slot_ms;
    let reason = if !quorum {
        Some(format!(
            "the validators this node reaches hold {reachable} of {} weight, less than 2/3",
            head.total_active_weight
        ))
    } else if stalled {
        Some(format!(
            "nothing committed for {since} ms ({MAX_SLOTS_WITHOUT_COMMIT} slots or more) while {pending} attestations are pending"
        ))
    } else {
        None
    };
    let body = ConsensusHealth {
        healthy: reason.is_none(),
        reason,
        epoch: head.epoch,
        height: head.height,
        finalized_height: head.finalized_height,
        commit_lag: head.height.saturating_sub(head.finalized_height),
        reachable_weight: reachable,
        total_weight: head.total_active_weight,
        pending,
        ms_since_commit: head.last_commit_ms.map(|t| now.saturating_sub(t)),
    };
    let code = if body.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, Json(body)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerQuery {
    /// First `log_index` (default 0).
    pub(crate) from: Option<u64>,
    /// 1–1000, default 100.
    pub(crate) limit: Option<u32>,
}

/// Finalized attestations in ledger order (§3.6).
#[utoipa::path(get, path = "/api/ledger", tag = "consensus", params(LedgerQuery),
    responses((status = 200, body = LedgerPage), (status = 400)))]
pub(crate) async fn ledger(
    State(state): State<AppState>,
    Q(q): Q<LedgerQuery>,
) -> Result<Json<LedgerPage>, Problem> {
    let limit = page_limit(q.limit)?;
    let from = q.from.unwrap_or(0);
    let rows = state.store.ledger_page(from, limit).await?;
    let next = (rows.len() == limit as usize).then(|| from + limit as u64);
    Ok(Json(LedgerPage {
        items: rows
            .into_iter()
            .map(|r| LedgerItem {
                log_index: r.log_index,
                attestation_id: r.digest.to_hex(),
                block_hash: r.block_hash.to_hex(),
            })
            .collect(),
        next,
    }))
}
