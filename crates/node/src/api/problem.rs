//! RFC 9457 problem details: the one shape of every error the API returns.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::trace::current_trace_id;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer: status, stable machine code, and a sentence for people.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<Box<str>>,
    pub retry_after_s: Option<u32>,
    /// RFC 9457 extension members (an object), merged into the body.
    pub extra: Option<Box<serde_json::Value>>,
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
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            detail: detail.into(),
            field: None,
            retry_after_s: None,
            extra: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into().into_boxed_str());
        self
    }

    /// The response body and headers; also used to rewrite framework errors.
    pub fn to_response(&self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = Body {
            kind: format!("https://bizra.dev/problems/{}", self.code),
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            trace_id: current_trace_id().unwrap_or_default(),
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

impl From<crate::submit::SubmitError> for Problem {
    fn from(e: crate::submit::SubmitError) -> Self {
        match e {
            crate::submit::SubmitError::Store(e) => e.into(),
            crate::submit::SubmitError::Internal(what) => {
                tracing::error!(what, "submit path bug");
                Problem::internal(what)
            }
            crate::submit::SubmitError::Overloaded(o) => {
                tracing::warn!(reason = %o, "submission refused: overloaded");
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    format!("{o}; retry shortly"),
                );
                p.retry_after_s = Some(1);
                p
            }
        }
    }
}

impl From<bizra_store::StoreError> for Problem {
    fn from(e: bizra_store::StoreError) -> Self {
        match e {
            bizra_store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                Problem::unavailable("the store is unavailable; retry later")
            }
            other => {
                tracing::error!(error = %other, "store error");
                Problem::internal("the store failed to answer")
            }
        }
    }
}
