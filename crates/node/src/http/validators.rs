//! Validator routes: the registry as of the current head, epoch summaries, and the
//! signed ledger entries (register, exit, slash) that change it at the next block.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bizra_ledger::registry::{
    Evidence, ExitRequest, Registration, RegistryEntry, ValidatorRecord, ValidatorStatus,
};
use bizra_ledger::Hash32;
use bizra_store::Store;
use serde::{Deserialize, Serialize};

use super::extract::{parse_json, HashPath, JsonBytes, Q};
use crate::clock::now_ms;
use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ValidatorView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub(crate) record: ValidatorRecord,
    pub(crate) effective_weight: u64,
    pub(crate) poi_weight: f64,
}

fn view(r: &ValidatorRecord) -> ValidatorView {
    ValidatorView {
        record: r.clone(),
        effective_weight: r.effective_weight(),
        poi_weight: r.poi_weight(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// pending, active, exiting, exited or slashed.
    pub(crate) status: Option<String>,
    /// 1–500, default 100.
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the previous page (a validator id).
    pub(crate) cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ValidatorPage {
    pub(crate) items: Vec<ValidatorView>,
    pub(crate) next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    /// `pending` (filed, in no block yet) or `included`; both when absent.
    pub(crate) status: Option<String>,
    /// 1–500, default 100.
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EntryView {
    /// This node's filing order.
    pub(crate) seq: u64,
    /// `register`, `exit` or `slash`.
    pub(crate) kind: String,
    /// The registry epoch it was filed (or, from a block, applied) in.
    pub(crate) epoch: u64,
    /// `pending` or `included`.
    pub(crate) status: &'static str,
    pub(crate) block_hash: Option<String>,
    #[schema(value_type = Object)]
    pub(crate) entry: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EntryPage {
    pub(crate) items: Vec<EntryView>,
    pub(crate) next_cursor: Option<String>,
}

/// Registry entries this node holds, newest first: those filed here and waiting for a
/// block, and those included in blocks (on a validator, also the equivocation evidence
/// it filed itself).
#[utoipa::path(get, path = "/api/validator/entries", tag = "validators", params(EntriesQuery),
    responses((status = 200, body = EntryPage), (status = 400)))]
pub(crate) async fn entries(
    State(state): State<AppState>,
    Q(q): Q<EntriesQuery>,
) -> Result<Json<EntryPage>, Problem> {
    let included = match q.status.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(false),
        Some("included") => Some(true),
        Some(s) => {
            return Err(
                Problem::new(ErrorCode::InvalidQuery, format!("unknown status {s:?}"))
                    .with_field("status"),
            )
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(
            Problem::new(ErrorCode::InvalidQuery, "limit must be 1 to 500").with_field("limit"),
        );
    }
    let before: Option<u64> = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse().map_err(|_| {
            Problem::new(
                ErrorCode::InvalidCursor,
                "cursor is not one this node issued",
            )
            .with_field("cursor")
        })?),
    };
    let mut all = state.store.registry_entries().await?;
    all.sort_by_key(|e| std::cmp::Reverse(e.seq));
    let mut items: Vec<EntryView> = all
        .into_iter()
        .filter(|e| before.is_none_or(|b| e.seq < b))
        .filter(|e| included.is_none_or(|inc| e.block_hash.is_some() == inc))
        .take(limit as usize + 1)
        .map(|e| EntryView {
            seq: e.seq,
            kind: e.kind,
            epoch: e.epoch,
            status: if e.block_hash.is_some() {
                "included"
            } else {
                "pending"
            },
            block_hash: e.block_hash.map(|h| h.to_hex()),
            entry: e.body,
        })
        .collect();
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(Json(EntryPage { items, next_cursor }))
}

/// Validators in id order.
#[utoipa::path(get, path = "/api/validator/list", tag = "validators", params(ListQuery),
    responses((status = 200, body = ValidatorPage), (status = 400)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Q(q): Q<ListQuery>,
) -> Result<Json<ValidatorPage>, Problem> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            serde_json::from_value::<ValidatorStatus>(serde_json::Value::String(s.into()))
                .map_err(|_| {
                    Problem::new(ErrorCode::InvalidQuery, format!("unknown status {s:?}"))
                        .with_field("status")
                })?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(
            Problem::new(ErrorCode::InvalidQuery, "limit must be 1 to 500").with_field("limit"),
        );
    }
    let after: Option<Hash32> = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse().map_err(|_| {
            Problem::new(
                ErrorCode::InvalidCursor,
                "cursor is not one this node issued",
            )
            .with_field("cursor")
        })?),
    };
    let head = state.consensus.head.load_full();
    let mut items: Vec<ValidatorView> = head
        .registry
        .list(status)
        .into_iter()
        .filter(|r| after.is_none_or(|a| r.validator_id > a))
        .take(limit as usize + 1)
        .map(view)
        .collect();
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|v| v.record.validator_id.to_hex())
    } else {
        None
    };
    Ok(Json(ValidatorPage { items, next_cursor }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ValidatorStats {
    /// The registry's epoch: the epoch whose start it shows (a leader that closes an
    /// epoch applies the boundaries up to the next).
    pub(crate) epoch: u64,
    pub(crate) validator_count: usize,
    pub(crate) active_count: usize,
    pub(crate) pending_count: usize,
    pub(crate) total_active_weight: u64,
    pub(crate) threshold_bps: u64,
    /// Least vote weight that finalizes a block now.
    pub(crate) quorum_weight: u64,
}

#[utoipa::path(get, path = "/api/validator/stats", tag = "validators", responses((status = 200, body = ValidatorStats)))]
pub(crate) async fn stats(State(state): State<AppState>) -> Json<ValidatorStats> {
    let head = state.consensus.head.load_full();
    let total = head.registry.total_active_weight();
    let bps = bizra_ledger::params::FINALITY_THRESHOLD_BPS;
    Json(ValidatorStats {
        epoch: head.registry.epoch(),
        validator_count: head.registry.len(),
        active_count: head.registry.active_count(),
        pending_count: head.registry.list(Some(ValidatorStatus::Pending)).len(),
        total_active_weight: total,
        threshold_bps: bps,
        quorum_weight: ((total as u128 * bps as u128).div_ceil(10_000)) as u64,
    })
}

#[utoipa::path(get, path = "/api/validator/{id}", tag = "validators",
    params(("id" = String, Path, description = "validator id (64 hex)")),
    responses((status = 200, body = ValidatorView), (status = 400), (status = 404)))]
pub(crate) async fn one(
    State(state): State<AppState>,
    HashPath(id): HashPath,
) -> Result<Json<ValidatorView>, Problem> {
    let head = state.consensus.head.load_full();
    head.registry
        .get(&id)
        .map(|r| Json(view(r)))
        .ok_or_else(|| Problem::not_found(format!("no validator {id}")))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EpochSummary {
    pub(crate) epoch: u64,
    pub(crate) from_ms: u64,
    pub(crate) to_ms: u64,
    pub(crate) attestation_count: u64,
    pub(crate) total_impact: f64,
    pub(crate) top_attesters: Vec<TopAttester>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TopAttester {
    pub(crate) attester_id: String,
    pub(crate) attestations: u64,
    pub(crate) total_impact: f64,
}

/// Attestations included in blocks of epoch `n`, and the ten attesters with the most
/// impact.
#[utoipa::path(get, path = "/api/validator/epoch/{n}/summary", tag = "validators",
    params(("n" = u64, Path, description = "epoch number")),
    responses((status = 200, body = EpochSummary), (status = 400), (status = 404)))]
pub(crate) async fn epoch_summary(
    State(state): State<AppState>,
    Path(n): Path<String>,
) -> Result<Json<EpochSummary>, Problem> {
    let n: u64 = n.parse().map_err(|_| {
        Problem::new(
            ErrorCode::InvalidPath,
            format!("{n:?} is not an epoch number"),
        )
    })?;
    let genesis_ms = state.consensus.genesis_block.header.timestamp_ms;
    let epoch_ms =
        (state.config.slot.as_millis() as u64).saturating_mul(bizra_ledger::params::EPOCH_SLOTS);
    let from_ms = genesis_ms.saturating_add(n.saturating_mul(epoch_ms));
    if from_ms > now_ms() {
        return Err(Problem::not_found(format!("epoch {n} has not started")));
    }
    let to_ms = from_ms.saturating_add(epoch_ms);
    let s = state.store.impact_summary(from_ms, to_ms, 10).await?;
    Ok(Json(EpochSummary {
        epoch: n,
        from_ms,
        to_ms,
        attestation_count: s.attestations,
        total_impact: s.total_impact,
        top_attesters: s
            .top
            .into_iter()
            .map(|t| TopAttester {
                attester_id: t.attester_id,
                attestations: t.attestations,
                total_impact: t.total_impact,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EntryAccepted {
    pub(crate) entry_id: String,
    pub(crate) entry_seq: u64,
    /// Always `pending`: the entry takes effect in the next block.
    pub(crate) status: &'static str,
    pub(crate) epoch: u64,
}

/// Checks an entry against the registry as it is now, then files it for the next block.
async fn file_entry(
    state: &AppState,
    kind: &str,
    entry: RegistryEntry,
) -> Result<Response, Problem> {
    if !state.consensus.is_validator() {
        // Only validators make blocks: an entry filed here would wait forever.
        return Err(Problem::new(
            ErrorCode::NotValidator,
            "this node is not a validator of the current epoch and makes no blocks; file registry entries with a validator",
        )
        .with_status(StatusCode::CONFLICT));
    }
    let head = state.consensus.head.load_full();
    let mut trial = (*head.registry).clone();
    let epoch = trial.epoch();
    trial
        .apply_entry(&entry, epoch)
        .map_err(|e| Problem::new(ErrorCode::of_registry(&e), e.to_string()))?;
    let id = entry
        .digest()
        .map_err(|e| Problem::new(ErrorCode::Schema, e.to_string()))?;
    let body = serde_json::to_value(&entry).map_err(|e| Problem::internal(e.to_string()))?;
    let seq = state
        .store
        .insert_registry_entry(kind, &body, epoch)
        .await?;
    state.ingest.pending.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(EntryAccepted {
            entry_id: id.to_hex(),
            entry_seq: seq,
            status: "pending",
            epoch,
        }),
    )
        .into_response())
}

/// A signed registration (`Registration`), for the registry's current epoch.
#[utoipa::path(post, path = "/api/validator/register", tag = "validators",
    request_body(content = Object, description = "signed registration"),
    responses((status = 202, body = EntryAccepted), (status = 400), (status = 413), (status = 415)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, Problem> {
    let r: Registration = parse_json(&body)?;
    file_entry(&state, "register", RegistryEntry::Register(r)).await
}

/// A signed exit request (`ExitRequest`).
#[utoipa::path(post, path = "/api/validator/exit", tag = "validators",
    request_body(content = Object, description = "signed exit request"),
    responses((status = 202, body = EntryAccepted), (status = 400), (status = 413), (status = 415)))]
pub(crate) async fn exit(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, Problem> {
    let e: ExitRequest = parse_json(&body)?;
    file_entry(&state, "exit", RegistryEntry::Exit(e)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlashRequest {
    evidence: Evidence,
}

/// Equivocation evidence: two conflicting signed blocks or votes at one height.
#[utoipa::path(post, path = "/api/validator/slash", tag = "validators",
    request_body(content = Object, description = "{\"evidence\": ...}"),
    responses((status = 202, body = EntryAccepted), (status = 400), (status = 413), (status = 415)))]
pub(crate) async fn slash(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, Problem> {
    let s: SlashRequest = parse_json(&body)?;
    file_entry(
        &state,
        "slash",
        RegistryEntry::Slash {
            evidence: Box::new(s.evidence),
        },
    )
    .await
}
