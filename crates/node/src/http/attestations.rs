//! Attestation routes: submit, batch, verify, read one, list.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bizra_ledger::attestation::rules::Derived;
use bizra_ledger::attestation::Attestation;
use bizra_ledger::merkle::InclusionProof;
use bizra_ledger::Hash32;
use bizra_store::{AttestationRecord, AttestationStatus, Cursor, Store, MAX_PAGE_LIMIT};
use bizra_wire::attestation::{
    AttestationPage, AttestationView, BatchItemError, BatchItemResult, BatchResponse, BlockPlace,
    Computed, SubmitResponse, VerifyReason, VerifyResponse, MAX_BATCH, MAX_LIST_LIMIT,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::extract::{HashPath, JsonBytes, Q};
use crate::cache::CacheKey;
use crate::clock::{now_utc, rfc3339_ms};
use crate::ingest::submit::{Refusal, SubmitError, Submitted};
use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

fn refusal_problem(f: Refusal) -> Problem {
    match f {
        Refusal::Schema(e) => {
            Problem::new(ErrorCode::of_schema(e.kind), e.message.clone()).with_field(e.field)
        }
        Refusal::Rule(r) => Problem::new(ErrorCode::Rule(r.code), r.detail),
    }
}

fn existing_response(rec: &AttestationRecord) -> SubmitResponse {
    SubmitResponse {
        attestation_id: rec.digest.to_hex(),
        digest: rec.digest.to_hex(),
        status: rec.status.as_str().into(),
        impact_score: rec.impact_score,
    }
}

/// Submit one attestation: 201 when stored, 200 when it was already stored.
#[utoipa::path(post, path = "/api/validator/attestation/submit", tag = "attestations",
    request_body(content = Object, description = "a poi-1.0 attestation"),
    responses((status = 201, body = SubmitResponse), (status = 200, body = SubmitResponse),
        (status = 400, description = "schema or rule failure"), (status = 409, description = "duplicate_nonce"),
        (status = 413), (status = 415), (status = 503)))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, Problem> {
    let parsed = Attestation::from_json(&body);
    let mut results = state.ingest.submit_many(vec![parsed]).await?;
    match results.pop() {
        Some(Submitted::Created {
            digest,
            impact_score,
        }) => Ok((
            StatusCode::CREATED,
            Json(SubmitResponse {
                attestation_id: digest.to_hex(),
                digest: digest.to_hex(),
                status: "accepted".into(),
                impact_score,
            }),
        )
            .into_response()),
        Some(Submitted::Existing(rec)) => {
            Ok((StatusCode::OK, Json(existing_response(&rec))).into_response())
        }
        Some(Submitted::Refused(f)) => Err(refusal_problem(f)),
        None => Err(Problem::internal("no result for the attestation")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    attestations: Vec<serde_json::Value>,
}

/// Submit up to 1000 attestations as `{"attestations": [...]}`: one signature batch, one
/// store transaction. 200 when every item is stored, 207 when some are refused, 400 (a
/// problem carrying the same `results`) when all are.
#[utoipa::path(post, path = "/api/validator/attestation/batch", tag = "attestations",
    request_body(content = Object, description = "{\"attestations\": [poi-1.0 attestation, ...]}"),
    responses((status = 200, body = BatchResponse), (status = 207, body = BatchResponse),
        (status = 400), (status = 413), (status = 415), (status = 503)))]
pub(crate) async fn batch(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, Problem> {
    let req: BatchRequest = super::extract::parse_json(&body)?;
    if req.attestations.is_empty() {
        return Err(Problem::new(ErrorCode::EmptyBatch, "attestations is empty"));
    }
    if req.attestations.len() > MAX_BATCH {
        return Err(Problem::new(
            ErrorCode::BatchTooLarge,
            format!("at most {MAX_BATCH} attestations per batch"),
        )
        .with_field("attestations"));
    }
    let items = req
        .attestations
        .into_iter()
        .map(Attestation::from_value)
        .collect();
    let results = state.ingest.submit_many(items).await?;
    let mut accepted = 0;
    let out: Vec<BatchItemResult> = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| match r {
            Submitted::Created { digest, .. } => {
                accepted += 1;
                BatchItemResult {
                    index,
                    attestation_id: Some(digest.to_hex()),
                    status: Some("accepted".into()),
                    error: None,
                }
            }
            Submitted::Existing(rec) => {
                accepted += 1;
                BatchItemResult {
                    index,
                    attestation_id: Some(rec.digest.to_hex()),
                    status: Some(rec.status.as_str().into()),
                    error: None,
                }
            }
            Submitted::Refused(f) => {
                let (code, detail, field) = match f {
                    Refusal::Schema(e) => (e.kind.code().to_string(), e.message, Some(e.field)),
                    Refusal::Rule(r) => (r.code.as_str().to_string(), r.detail, None),
                };
                BatchItemResult {
                    index,
                    attestation_id: None,
                    status: None,
                    error: Some(BatchItemError {
                        code,
                        detail,
                        field: field.map(|f| item_field(index, &f)),
                    }),
                }
            }
        })
        .collect();
    let rejected = out.len() - accepted;
    let body = BatchResponse {
        results: out,
        accepted,
        rejected,
    };
    if accepted == 0 {
        let mut p = Problem::new(
            ErrorCode::BatchRejected,
            "no attestation of the batch was accepted",
        );
        p.extra = serde_json::to_value(&body).ok().map(Box::new);
        return Err(p);
    }
    let status = if rejected == 0 {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((status, Json(body)).into_response())
}

/// The path of a field of batch item `index`; `.` (the item itself) is the item's path.
fn item_field(index: usize, field: &str) -> String {
    if field == "." || field.is_empty() {
        format!("attestations[{index}]")
    } else {
        format!("attestations[{index}].{field}")
    }
}

/// Every rule, nothing stored. A body that is not an attestation at all is a 400; an
/// attestation that breaks rules is `valid: false` with every broken rule.
#[utoipa::path(post, path = "/api/validator/attestation/verify", tag = "attestations",
    request_body(content = Object, description = "a poi-1.0 attestation"),
    responses((status = 200, body = VerifyResponse), (status = 400), (status = 413), (status = 415)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<VerifyResponse>, Problem> {
    let att = Attestation::from_json(&body).map_err(|e| refusal_problem(Refusal::Schema(e)))?;
    // The digest and the parsed key, each costly, are derived once for the three uses
    // below.
    let derived = Derived::of(&att);
    let computed = derived.computed(&att);
    // Rule 13's lookup and rule 12's check (through the shared batcher, like
    // submissions) run at the same time.
    let owner = async {
        match bizra_ledger::crypto::PublicKey::parse(&att.attester.pubkey_ed25519) {
            Ok(pk) => state
                .ingest
                .nonces
                .owner(pk, att.nonce.clone())
                .await
                .map_err(SubmitError::from)?
                .map_err(SubmitError::from),
            Err(_) => Ok(None),
        }
    };
    let signature_ok = async {
        match derived.signature_item() {
            Some(item) => state.ingest.verifier.verify(item).await.map(Some),
            None => Ok(None),
        }
    };
    let (owner, signature_ok) = tokio::join!(owner, signature_ok);
    let owner = owner?;
    let signature_ok = signature_ok.map_err(SubmitError::from)?;
    let reasons = derived.reasons(&att, &state.anchor, now_utc(), owner, signature_ok);
    Ok(Json(VerifyResponse {
        valid: reasons.is_empty(),
        reasons: reasons
            .into_iter()
            .map(|r| VerifyReason {
                code: r.code.as_str().into(),
                detail: r.detail,
            })
            .collect(),
        computed: Computed {
            digest: computed.digest.map(|d| d.to_hex()),
            impact_score: computed.impact_score,
            delta: computed.delta,
        },
    }))
}

fn view(
    rec: AttestationRecord,
    block: Option<BlockPlace>,
    proof: Option<InclusionProof>,
) -> Result<AttestationView, Problem> {
    let text = String::from_utf8(rec.body)
        .map_err(|_| Problem::internal("stored attestation is not UTF-8"))?;
    let attestation = RawValue::from_string(text)
        .map_err(|_| Problem::internal("stored attestation is not JSON"))?;
    Ok(AttestationView {
        attestation_id: rec.digest.to_hex(),
        attestation,
        status: rec.status.as_str().into(),
        received_at: rfc3339_ms(rec.received_at_ms),
        block,
        proof,
        log_index: rec.log_index,
        rejected_by: rec.rejected_by.map(|h| h.to_hex()),
    })
}

/// One attestation, its state, its block and its inclusion proof.
#[utoipa::path(get, path = "/api/validator/attestation/{id}", tag = "attestations",
    params(("id" = String, Path, description = "attestation id (64 hex)")),
    responses((status = 200, body = AttestationView), (status = 400), (status = 404)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    HashPath(id): HashPath,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let key = CacheKey::Attestation(id);
    if let Some(hit) = state.cache.serve(&key, &headers).await {
        return Ok(hit);
    }
    let rec = state
        .store
        .get_attestation(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no attestation {id}")))?;
    // Finalized and rejected are the last states: the view never changes again.
    let settled = matches!(
        rec.status,
        AttestationStatus::Finalized | AttestationStatus::Rejected
    );
    let (block, proof) = match rec.block {
        Some(place) => {
            let store = &state.store;
            let tree = state
                .cache
                .tree(&place.hash, async {
                    store
                        .get_block(&place.hash)
                        .await?
                        .map(|sb| sb.block.attestation_ids)
                        .ok_or_else(|| Problem::internal("attestation names a missing block"))
                })
                .await
                .map_err(Arc::unwrap_or_clone)?;
            (
                Some(BlockPlace {
                    hash: place.hash.to_hex(),
                    height: place.height,
                    att_root: tree.root().to_hex(),
                }),
                tree.prove(place.index as usize),
            )
        }
        None => (None, None),
    };
    let view = view(rec, block, proof)?;
    if settled {
        return state
            .cache
            .store_and_respond(key, &view, &headers)
            .map_err(|e| Problem::internal(e.to_string()));
    }
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this attester id.
    pub(crate) attester: Option<String>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// 1–500, default 50.
    pub(crate) limit: Option<u32>,
}

/// Newest first, with cursor pagination.
#[utoipa::path(get, path = "/api/validator/attestations", tag = "attestations", params(ListQuery),
    responses((status = 200, body = AttestationPage), (status = 400)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Q(q): Q<ListQuery>,
) -> Result<Json<AttestationPage>, Problem> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIST_LIMIT.min(MAX_PAGE_LIMIT)).contains(&limit) {
        return Err(Problem::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_LIST_LIMIT}"),
        )
        .with_field("limit"));
    }
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<Cursor>().map_err(|_| {
            Problem::new(
                ErrorCode::InvalidCursor,
                "cursor is not one this node issued",
            )
            .with_field("cursor")
        })?),
    };
    let page = state
        .store
        .list_attestations(q.attester.as_deref(), cursor, limit)
        .await?;
    // A page usually spans one or two blocks: look each up once for its att_root.
    let mut roots: std::collections::HashMap<Hash32, Hash32> = Default::default();
    let mut items = Vec::with_capacity(page.items.len());
    for rec in page.items {
        let block = match rec.block {
            Some(b) => {
                let root = match roots.get(&b.hash) {
                    Some(r) => *r,
                    None => {
                        let root = match state.cache.cached_tree(&b.hash).await {
                            Some(t) => t.root(),
                            None => {
                                state
                                    .store
                                    .get_block(&b.hash)
                                    .await?
                                    .ok_or_else(|| {
                                        Problem::internal("attestation names a missing block")
                                    })?
                                    .block
                                    .header
                                    .att_root
                            }
                        };
                        roots.insert(b.hash, root);
                        root
                    }
                };
                Some(BlockPlace {
                    hash: b.hash.to_hex(),
                    height: b.height,
                    att_root: root.to_hex(),
                })
            }
            None => None,
        };
        items.push(view(rec, block, None)?);
    }
    Ok(Json(AttestationPage {
        items,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}
