//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::{attestations, consensus, events, health, p2p, proposals, validators};

#[derive(OpenApi)]
#[openapi(
    info(title = "BIZRA Node0", description = "Proof-of-Impact ledger node API"),
    paths(
        health::health, health::ready, health::metrics,
        consensus::status, consensus::stats, consensus::genesis, consensus::tipset,
        consensus::block, consensus::blocks, consensus::finality, consensus::health,
        proposals::submit_block, proposals::qc, proposals::proposal,
        attestations::submit, attestations::batch, attestations::verify,
        attestations::get_one, attestations::list,
        validators::list, validators::stats, validators::one, validators::epoch_summary,
        validators::register, validators::exit, validators::slash,
        p2p::peers, events::sse, events::ws,
    ),
    tags(
        (name = "attestations"), (name = "consensus"), (name = "validators"),
        (name = "operations"), (name = "p2p"), (name = "events"),
    )
)]
pub struct ApiDoc;

pub async fn openapi_json() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => super::problem::Problem::internal(e.to_string()).into_response(),
    }
}
