//! The submit path: parse, rules 1–11 (`docs/protocol.md` §2.3), signatures (batched),
//! durable store (group commit), acknowledge. Shared by the single and batch routes; the
//! HTTP shapes live in `http::attestations`.

use bizra_ledger::attestation::{
    check_rules, Attestation, Checked, Rejection, RuleCode, SchemaError,
};
use bizra_ledger::crypto::verify_batch;
use bizra_ledger::Hash32;
use bizra_store::{AttestationRecord, InsertOutcome, NewAttestation, StoreError};
use serde_json::json;

use super::{Ingest, Overloaded};
use crate::clock::{now_ms, now_utc};
use crate::problem::{ErrorCode, Problem};

/// Why one attestation was not stored.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    Schema(SchemaError),
    Rule(Rejection),
}

impl Refusal {
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Refusal::Schema(e) => ErrorCode::of_schema(e.kind),
            Refusal::Rule(r) => ErrorCode::Rule(r.code),
        }
    }

    fn rule(code: RuleCode, detail: impl Into<String>) -> Refusal {
        Refusal::Rule(Rejection {
            code,
            detail: detail.into(),
        })
    }
}

/// The result of one attestation.
#[derive(Debug, Clone)]
pub(crate) enum Submitted {
    /// Stored now.
    Created {
        digest: Hash32,
        impact_score: f64,
    },
    /// The same attestation was already stored.
    Existing(Box<AttestationRecord>),
    Refused(Refusal),
}

/// Nothing was stored, and the client should retry (503).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// An item left without a result: a bug, reported rather than misaligning results.
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl Ingest {
    /// Validates and stores `items`, each already parsed or refused by the schema. Results
    /// are in input order. One item goes through the shared signature batcher; several are
    /// verified as one batch of their own. Rows go to the group-commit writer.
    pub(crate) async fn submit_many(
        &self,
        items: Vec<Result<Attestation, SchemaError>>,
    ) -> Result<Vec<Submitted>, SubmitError> {
        let state = self;
        let now = now_utc();
        let mut results: Vec<Option<Submitted>> = vec![None; items.len()];
        let mut candidates: Vec<(usize, Attestation, Checked)> = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Err(e) => results[i] = Some(Submitted::Refused(Refusal::Schema(e))),
                Ok(att) => match check_rules(&att, &state.anchor, now) {
                    Ok(checked) => candidates.push((i, att, checked)),
                    Err(r) => results[i] = Some(Submitted::Refused(Refusal::Rule(r))),
                },
            }
        }

        let verdicts = verify(state, &candidates)
            .await
            .inspect_err(|e| count_overload(state, e))?;
        let received = now_ms();
        let mut rows = Vec::with_capacity(candidates.len());
        let mut placed = Vec::with_capacity(candidates.len());
        for ((i, att, checked), ok) in candidates.into_iter().zip(verdicts) {
            if !ok {
                results[i] = Some(Submitted::Refused(Refusal::rule(
                    RuleCode::BadSignature,
                    "signature does not verify",
                )));
                continue;
            }
            match NewAttestation::new(&att, checked.digest, received) {
                Ok(row) => {
                    rows.push(row);
                    placed.push((i, checked.digest, checked.impact_score));
                }
                Err(e) => {
                    results[i] = Some(Submitted::Refused(Refusal::rule(
                        RuleCode::InvalidPubkey,
                        e.to_string(),
                    )))
                }
            }
        }

        if !rows.is_empty() {
            // Rule 13 is decided inside the store transaction, against committed rows.
            let outcomes = state
                .writer
                .write(rows)
                .await
                .map_err(SubmitError::from)
                .inspect_err(|e| count_overload(state, e))??;
            let mut created = 0usize;
            for ((i, digest, impact), outcome) in placed.into_iter().zip(outcomes) {
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
                        Submitted::Refused(Refusal::rule(
                            RuleCode::DuplicateNonce,
                            format!("nonce already used by attestation {existing_digest}"),
                        ))
                    }
                });
            }
            if created > 0 {
                state.metrics.attestations_accepted.inc_by(created as u64);
                state.pending.add(created, state.full_block);
            }
        }

        // Every index was filled above: refused by schema or rules, by signature, or by the
        // store's outcome (the writer answers one outcome per row).
        results
            .into_iter()
            .map(|r| {
                let r = r.ok_or(SubmitError::Internal("an attestation got no result"))?;
                if let Submitted::Refused(f) = &r {
                    state.metrics.rejected(f.code().as_str());
                }
                Ok(r)
            })
            .collect()
    }
}

fn count_overload(state: &Ingest, e: &SubmitError) {
    if let SubmitError::Overloaded(o) = e {
        state.metrics.overload(o.stage());
    }
}

/// Rule 12 for every candidate, in order.
async fn verify(
    state: &Ingest,
    candidates: &[(usize, Attestation, Checked)],
) -> Result<Vec<bool>, SubmitError> {
    match candidates {
        [] => Ok(vec![]),
        [(_, _, c)] => Ok(vec![state.verifier.verify(c.signature_item()).await?]),
        many => {
            let items: Vec<_> = many.iter().map(|(_, _, c)| c.signature_item()).collect();
            state
                .metrics
                .signature_batch_size
                .observe(items.len() as f64);
            tokio::task::spawn_blocking(move || verify_batch(&items))
                .await
                .map_err(|_| SubmitError::Overloaded(Overloaded::Stopped("signature")))
        }
    }
}

impl From<SubmitError> for Problem {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Store(e) => e.into(),
            SubmitError::Internal(what) => Problem::internal(format!("submit path: {what}")),
            SubmitError::Overloaded(o) => {
                tracing::warn!(reason = %o, "submission refused: overloaded");
                Problem::retry_later(ErrorCode::Overloaded, format!("{o}; retry shortly"), 1)
            }
        }
    }
}
