//! The submit path (SPEC §5.2): parse → rules 1–11 → signatures → durable store →
//! acknowledge. Shared by the single and batch routes; the HTTP shapes live in
//! `api::attestations`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bizra_ledger::attestation::{check_rules, Attestation, Checked, Rejection, SchemaError};
use bizra_ledger::crypto::verify_batch;
use bizra_ledger::Hash32;
use bizra_store::{AttestationRecord, InsertOutcome, NewAttestation, Store, StoreError};
use serde_json::json;

use crate::clock::{now_ms, now_utc};
use crate::state::AppState;

/// Why one attestation was not stored.
#[derive(Debug, Clone)]
pub enum Refusal {
    Schema(SchemaError),
    Rule(Rejection),
}

impl Refusal {
    pub fn code(&self) -> &str {
        match self {
            Refusal::Schema(e) => e.kind.code(),
            Refusal::Rule(r) => r.code.as_str(),
        }
    }
}

/// The result of one attestation.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// Stored now.
    Created {
        digest: Hash32,
        impact_score: f64,
    },
    /// The same attestation was already stored.
    Existing(Box<AttestationRecord>),
    Refused(Refusal),
}

/// Parsed and checked up to (not including) the signature.
struct Candidate {
    att: Attestation,
    checked: Checked,
}

/// Validates and stores `items` (already parsed or not) as one group: one batch signature
/// check and one store transaction. Results are in input order.
pub async fn submit_many(
    state: &AppState,
    items: Vec<Result<Attestation, SchemaError>>,
) -> Result<Vec<Submitted>, StoreError> {
    let now = now_utc();
    let mut results: Vec<Option<Submitted>> = vec![None; items.len()];
    let mut candidates: Vec<(usize, Candidate)> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Err(e) => results[i] = Some(Submitted::Refused(Refusal::Schema(e))),
            Ok(att) => match check_rules(&att, &state.anchor, now) {
                Ok(checked) => candidates.push((i, Candidate { att, checked })),
                Err(r) => results[i] = Some(Submitted::Refused(Refusal::Rule(r))),
            },
        }
    }

    // Rule 12, all signatures in one batch; verification is CPU work, off the reactor.
    let sig_items: Vec<_> = candidates
        .iter()
        .map(|(_, c)| c.checked.signature_item())
        .collect();
    state
        .metrics
        .signature_batch_size
        .observe(sig_items.len() as f64);
    let verdicts = if sig_items.len() <= 1 {
        verify_batch(&sig_items)
    } else {
        tokio::task::spawn_blocking(move || verify_batch(&sig_items))
            .await
            .map_err(|e| StoreError::Unavailable(format!("verifier task failed: {e}")))?
    };
    let received = now_ms();
    let mut rows = Vec::new();
    let mut row_index = Vec::new();
    for ((i, c), ok) in candidates.into_iter().zip(verdicts) {
        if !ok {
            results[i] = Some(Submitted::Refused(Refusal::Rule(Rejection {
                code: bizra_ledger::attestation::RuleCode::BadSignature,
                detail: "signature does not verify".into(),
            })));
            continue;
        }
        match NewAttestation::new(&c.att, c.checked.digest, received) {
            Ok(row) => {
                rows.push(row);
                row_index.push((i, c.checked.digest, c.checked.impact_score));
            }
            Err(e) => {
                results[i] = Some(Submitted::Refused(Refusal::Rule(Rejection {
                    code: bizra_ledger::attestation::RuleCode::BadSignature,
                    detail: e.to_string(),
                })))
            }
        }
    }

    if !rows.is_empty() {
        // Rule 13 is decided inside the store transaction, against committed rows.
        let started = Instant::now();
        let outcomes = state.store.insert_attestations(&rows).await?;
        state
            .metrics
            .store_write_seconds
            .observe(started.elapsed().as_secs_f64());
        state.metrics.group_commit_rows.observe(rows.len() as f64);
        let mut created = 0usize;
        for ((i, digest, impact), outcome) in row_index.into_iter().zip(outcomes) {
            results[i] = Some(match outcome {
                InsertOutcome::Inserted { .. } => {
                    created += 1;
                    state.events.publish(
                        "attestation_accepted",
                        json!({"attestation_id": digest, "impact_score": impact}),
                    );
                    Submitted::Created {
                        digest,
                        impact_score: impact,
                    }
                }
                InsertOutcome::AlreadyStored { record } => Submitted::Existing(record),
                InsertOutcome::DuplicateNonce { existing_digest } => {
                    Submitted::Refused(Refusal::Rule(Rejection {
                        code: bizra_ledger::attestation::RuleCode::DuplicateNonce,
                        detail: format!("nonce already used by attestation {existing_digest}"),
                    }))
                }
            });
        }
        if created > 0 {
            state.metrics.attestations_accepted.inc_by(created as u64);
            let pending = state.pending_hint.fetch_add(created, Ordering::Relaxed) + created;
            if pending >= state.config.max_block_attestations {
                state.producer_wake.notify_one();
            }
        }
    }

    Ok(results
        .into_iter()
        .map(|r| {
            let r = r.unwrap_or_else(|| {
                Submitted::Refused(Refusal::Rule(Rejection {
                    code: bizra_ledger::attestation::RuleCode::BadSignature,
                    detail: "not processed".into(),
                }))
            });
            if let Submitted::Refused(f) = &r {
                state.metrics.rejected(f.code());
            }
            r
        })
        .collect())
}
