//! RFC 9457 problem details: the one shape of every error the API returns, and the one
//! list of the machine codes it carries ([`ErrorCode`]).
//!
//! A 500 never carries internal error text to the client: [`Problem::internal`] logs the
//! error with the request's trace id and answers a fixed sentence naming that id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bizra_ledger::attestation::RuleCode;
use bizra_ledger::registry::RegistryError;
use serde::Serialize;

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Every `code` an error answer can carry, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ErrorCode {
    /// An attestation rule (`docs/protocol.md` §2.3); `duplicate_nonce` is a 409.
    Rule(RuleCode),
    /// Not JSON at all.
    InvalidJson,
    /// JSON, but not of the shape the route takes; `field` names the place.
    Schema,
    /// A request the framework could not read (no more specific code applies).
    BadRequest,
    InvalidBody,
    InvalidPath,
    InvalidHash,
    InvalidQuery,
    InvalidCursor,
    EmptyBatch,
    BatchTooLarge,
    /// No item of a batch was stored; the body carries every item's result.
    BatchRejected,
    InvalidProposal,
    InvalidBlock,
    InvalidQc,
    /// A registry entry that does not apply to the registry as it is now.
    UnknownValidator,
    AlreadyRegistered,
    NotActive,
    AlreadySlashed,
    Quarantined,
    AlreadyPunished,
    InvalidNetworkAddress,
    BadEvidence,
    WrongEpoch,
    RegistryRejected,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// A block proposed or signed by a key that is not in the epoch's committee (403).
    NotValidator,
    UnknownParent,
    Equivocation,
    RateLimited,
    /// A bounded queue or the concurrency limit is full: retry shortly.
    Overloaded,
    /// The request did not complete within the per-request timeout.
    Timeout,
    /// A dependency needed for the answer (the store) is down.
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every code but the rules', which [`RuleCode::ALL`] lists.
    #[cfg(test)]
    const NODE: [ErrorCode; 36] = [
        ErrorCode::InvalidJson,
        ErrorCode::Schema,
        ErrorCode::BadRequest,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidHash,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidCursor,
        ErrorCode::EmptyBatch,
        ErrorCode::BatchTooLarge,
        ErrorCode::BatchRejected,
        ErrorCode::InvalidProposal,
        ErrorCode::InvalidBlock,
        ErrorCode::InvalidQc,
        ErrorCode::UnknownValidator,
        ErrorCode::AlreadyRegistered,
        ErrorCode::NotActive,
        ErrorCode::AlreadySlashed,
        ErrorCode::Quarantined,
        ErrorCode::AlreadyPunished,
        ErrorCode::InvalidNetworkAddress,
        ErrorCode::BadEvidence,
        ErrorCode::WrongEpoch,
        ErrorCode::RegistryRejected,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::NotValidator,
        ErrorCode::UnknownParent,
        ErrorCode::Equivocation,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Rule(r) => r.as_str(),
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::Schema => "schema",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidHash => "invalid_hash",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidCursor => "invalid_cursor",
            ErrorCode::EmptyBatch => "empty_batch",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::BatchRejected => "batch_rejected",
            ErrorCode::InvalidProposal => "invalid_proposal",
            ErrorCode::InvalidBlock => "invalid_block",
            ErrorCode::InvalidQc => "invalid_qc",
            ErrorCode::UnknownValidator => "unknown_validator",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::NotActive => "not_active",
            ErrorCode::AlreadySlashed => "already_slashed",
            ErrorCode::Quarantined => "quarantined",
            ErrorCode::AlreadyPunished => "already_punished",
            ErrorCode::InvalidNetworkAddress => "invalid_network_address",
            ErrorCode::BadEvidence => "bad_evidence",
            ErrorCode::WrongEpoch => "wrong_epoch",
            ErrorCode::RegistryRejected => "registry_rejected",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::NotValidator => "not_validator",
            ErrorCode::UnknownParent => "unknown_parent",
            ErrorCode::Equivocation => "equivocation",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        match self {
            ErrorCode::Rule(RuleCode::DuplicateNonce)
            | ErrorCode::UnknownParent
            | ErrorCode::Equivocation => StatusCode::CONFLICT,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::NotValidator => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Overloaded | ErrorCode::Timeout | ErrorCode::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The code of a schema error of an attestation.
    pub(crate) fn of_schema(kind: bizra_ledger::attestation::SchemaErrorKind) -> ErrorCode {
        match kind {
            bizra_ledger::attestation::SchemaErrorKind::InvalidJson => ErrorCode::InvalidJson,
            bizra_ledger::attestation::SchemaErrorKind::Schema => ErrorCode::Schema,
        }
    }

    /// The code of a registry entry that does not apply.
    pub(crate) fn of_registry(e: &RegistryError) -> ErrorCode {
        match e {
            RegistryError::UnknownValidator(_) => ErrorCode::UnknownValidator,
            RegistryError::AlreadyRegistered(_) => ErrorCode::AlreadyRegistered,
            RegistryError::NotActive(_) => ErrorCode::NotActive,
            RegistryError::AlreadySlashed(_) => ErrorCode::AlreadySlashed,
            RegistryError::Quarantined { .. } => ErrorCode::Quarantined,
            RegistryError::AlreadyPunished { .. } => ErrorCode::AlreadyPunished,
            RegistryError::BadSignature => ErrorCode::Rule(RuleCode::BadSignature),
            RegistryError::BadAddress => ErrorCode::InvalidNetworkAddress,
            RegistryError::BadEvidence(_) => ErrorCode::BadEvidence,
            RegistryError::WrongChain { .. } => ErrorCode::Rule(RuleCode::ChainMismatch),
            RegistryError::WrongEpoch { .. } => ErrorCode::WrongEpoch,
            _ => ErrorCode::RegistryRejected,
        }
    }
}

/// An error answer: status, stable machine code, and a sentence for people.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) detail: String,
    pub(crate) field: Option<Box<str>>,
    pub(crate) retry_after_s: Option<u32>,
    /// RFC 9457 extension members (an object), merged into the body.
    pub(crate) extra: Option<Box<serde_json::Value>>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl Problem {
    /// A problem with `code`'s status.
    pub(crate) fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Problem {
            status: code.status(),
            code,
            detail: detail.into(),
            field: None,
            retry_after_s: None,
            extra: None,
        }
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, detail)
    }

    /// A 503 the client should retry after `retry_after_s` seconds.
    pub(crate) fn retry_later(code: ErrorCode, detail: impl Into<String>, after_s: u32) -> Self {
        let mut p = Self::new(code, detail);
        p.retry_after_s = Some(after_s);
        p
    }

    /// A 500 for `error`, which is logged with the trace id and never sent: internal
    /// text (paths, SQL, a peer's answer) is for the operator, not the client.
    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        let trace_id = crate::trace_id::current().unwrap_or_default();
        tracing::error!(trace_id = %trace_id, error = %error, "internal error");
        Self::new(
            ErrorCode::Internal,
            "the node failed to answer; its log has the error under this trace id",
        )
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into().into_boxed_str());
        self
    }

    /// Another status than `code`'s: kept for the one code that answers two ways today
    /// (`not_validator`: 403 for a block, 409 for a registry entry filed off the committee).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The response body and headers; also used to rewrite framework errors.
    pub(crate) fn to_response(&self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let code = self.code.as_str();
        let body = Body {
            kind: format!("https://bizra.dev/problems/{code}"),
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code,
            trace_id: crate::trace_id::current().unwrap_or_default(),
            field: self.field.as_deref(),
            extra: self.extra.as_ref().and_then(|v| v.as_object()),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status, bytes).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.to_response()
    }
}

impl From<bizra_store::StoreError> for Problem {
    fn from(e: bizra_store::StoreError) -> Self {
        match e {
            bizra_store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                Problem::unavailable("the store is unavailable; retry later")
            }
            other => Problem::internal(format!("store: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_an_error_status() {
        let all: Vec<ErrorCode> = RuleCode::ALL
            .iter()
            .map(|r| ErrorCode::Rule(*r))
            .chain(ErrorCode::NODE)
            .collect();
        let mut names: Vec<&str> = all.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "two codes share a name");
        for c in all {
            assert!(
                c.status().is_client_error() || c.status().is_server_error(),
                "{c:?}"
            );
        }
        assert_eq!(
            ErrorCode::Rule(RuleCode::DuplicateNonce).status(),
            StatusCode::CONFLICT
        );
    }

    #[tokio::test]
    async fn an_internal_error_sends_none_of_its_text() {
        let resp = crate::trace_id::scope("t-1".into(), async {
            Problem::internal("open /secret/path: permission denied").to_response()
        })
        .await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("\"trace_id\":\"t-1\""), "{text}");
        assert!(text.contains("\"code\":\"internal\""), "{text}");
    }
}
