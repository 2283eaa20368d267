//! Request extractors that fail with problem+json: JSON bodies (415 for another content
//! type, 413 past the route's limit), hashes in paths (400 when malformed), queries.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bizra_ledger::Hash32;
use serde::de::DeserializeOwned;

use crate::problem::{ErrorCode, Problem};

/// The raw bytes of an `application/json` body.
pub(crate) struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(Problem::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be sent as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    ErrorCode::PayloadTooLarge,
                    "the body is larger than this route accepts",
                )
            } else {
                Problem::new(ErrorCode::InvalidBody, e.body_text())
            }
        })?;
        Ok(JsonBytes(bytes))
    }
}

/// A 64-hex hash from the path.
pub(crate) struct HashPath(pub Hash32);

impl<S: Send + Sync> FromRequestParts<S> for HashPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::new(ErrorCode::InvalidPath, e.body_text()))?;
        raw.parse().map(HashPath).map_err(|_| {
            Problem::new(
                ErrorCode::InvalidHash,
                format!("{raw:?} is not 64 lowercase hex digits"),
            )
        })
    }
}

/// A query string that fails as a 400 problem naming the bad parameter.
pub(crate) struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Q(t))
            .map_err(|e| Problem::new(ErrorCode::InvalidQuery, e.body_text()))
    }
}

/// Parses a JSON body into `T`, naming the field of the first error.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error_free(&mut de)?;
    de.end()
        .map_err(|e| Problem::new(ErrorCode::InvalidJson, e.to_string()))?;
    Ok(value)
}

fn serde_path_to_error_free<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, Problem> {
    T::deserialize(de).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::Schema
        } else {
            ErrorCode::InvalidJson
        };
        Problem::new(code, e.to_string())
    })
}
