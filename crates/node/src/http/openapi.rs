//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::Header;
use utoipa::openapi::{ObjectBuilder, OpenApi as Document, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use super::{attestations, consensus, events, health, p2p, proposals, validators};

#[derive(OpenApi)]
#[openapi(
    info(title = "BIZRA Node0", description = "Proof-of-Impact ledger node API"),
    paths(
        health::health, health::ready, health::metrics,
        consensus::status, consensus::stats, consensus::genesis, consensus::tipset,
        consensus::block, consensus::blocks, consensus::finality, consensus::health,
        consensus::ledger,
        proposals::submit_block, proposals::qc, proposals::proposal,
        attestations::submit, attestations::batch, attestations::verify,
        attestations::get_one, attestations::list,
        validators::list, validators::entries, validators::stats, validators::one, validators::epoch_summary,
        validators::register, validators::exit, validators::slash,
        p2p::peers, events::sse, events::ws,
    ),
    tags(
        (name = "attestations"), (name = "consensus"), (name = "validators"),
        (name = "operations"), (name = "p2p"), (name = "events"),
    ),
    modifiers(&RateLimited),
)]
pub(crate) struct ApiDoc;

/// Adds the `429` answer to every operation the rate limiter covers, as
/// `limit::classify` decides, so the document cannot drift from the middleware.
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, doc: &mut Document) {
        let integer = || ObjectBuilder::new().schema_type(Type::Integer).build();
        let answer = ResponseBuilder::new()
            .description("rate limited (problem+json, code `rate_limited`)")
            .header("Retry-After", Header::new(integer()))
            .header("RateLimit-Limit", Header::new(integer()))
            .header("RateLimit-Remaining", Header::new(integer()))
            .header("RateLimit-Reset", Header::new(integer()))
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                (Method::GET, &mut item.get),
                (Method::POST, &mut item.post),
                (Method::PUT, &mut item.put),
                (Method::DELETE, &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                if super::rate_limit::classify(&method, path).is_some() {
                    op.responses
                        .responses
                        .insert("429".into(), answer.clone().into());
                }
            }
        }
    }
}

pub(crate) async fn openapi_json() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => crate::problem::Problem::internal(e.to_string()).into_response(),
    }
}
