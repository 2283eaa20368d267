//! The JSON answers of the attestation routes (`/api/validator/attestation/*`,
//! `/api/validator/attestations`).

use bizra_ledger::merkle::InclusionProof;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest batch accepted by `/api/validator/attestation/batch`.
pub const MAX_BATCH: usize = 1000;
/// Largest page of `/api/validator/attestations`.
pub const MAX_LIST_LIMIT: u32 = 500;

/// The answer to a submit: 201 when stored now, 200 when it was stored before.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitResponse {
    pub attestation_id: String,
    pub digest: String,
    /// `accepted`, `included` or `finalized`.
    pub status: String,
    pub impact_score: f64,
}

/// One item of a batch's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchItemResult {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id: Option<String>,
    /// `accepted` (stored now) or the stored state of an attestation already there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<BatchItemError>,
}

/// Why one item of a batch was refused.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchItemError {
    pub code: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItemResult>,
    pub accepted: usize,
    pub rejected: usize,
}

/// The answer of `/verify`: every broken rule, nothing stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    pub reasons: Vec<VerifyReason>,
    pub computed: Computed,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReason {
    pub code: String,
    pub detail: String,
}

/// What the node computed from the attestation, right or wrong.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Computed {
    pub digest: Option<String>,
    pub impact_score: f64,
    pub delta: Option<f64>,
}

/// The block an attestation is in.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockPlace {
    pub hash: String,
    pub height: u64,
    pub att_root: String,
}

/// One attestation as stored, with its state, block and inclusion proof.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttestationView {
    pub attestation_id: String,
    /// The attestation's JSON exactly as it was stored.
    #[schema(value_type = Object)]
    pub attestation: Box<RawValue>,
    pub status: String,
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockPlace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub proof: Option<InclusionProof>,
    /// Its position in the ledger order, once finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// For a rejected attestation: the attestation that used its (key, nonce) first in
    /// ledger order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<String>,
}

/// A newest-first page; `next_cursor` is null on the last page.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttestationPage {
    pub items: Vec<AttestationView>,
    pub next_cursor: Option<String>,
}
