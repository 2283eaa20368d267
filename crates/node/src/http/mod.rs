//! The HTTP API (`docs/protocol.md` §4): the router and its middleware, and one module
//! per group of routes. Handlers are thin: they parse, call a service (`ingest`,
//! `consensus`) or the store, and answer from the cache where they can.

mod attestations;
mod consensus;
mod dashboard;
mod drain;
pub(crate) mod entry;
mod events;
mod extract;
mod health;
pub(crate) mod listener;
mod openapi;
mod p2p;
mod proposals;
mod rate_limit;
mod trace;
mod validators;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

/// Body limit of single-object routes.
pub(crate) const SINGLE_BODY_LIMIT: usize = 64 * 1024;
/// Body limit of the batch route.
pub(crate) const BATCH_BODY_LIMIT: usize = 1024 * 1024;
/// Body limit of `submit-block`: a block of 4,096 attestations is about 6 MiB.
pub(crate) const PROPOSAL_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub(crate) fn router(state: AppState) -> Router {
    let single = DefaultBodyLimit::max(SINGLE_BODY_LIMIT);
    let metrics = state.metrics.clone();
    Router::new()
        .route("/", get(dashboard::index))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/api/consensus/status", get(consensus::status))
        .route("/api/consensus/stats", get(consensus::stats))
        .route("/api/consensus/genesis", get(consensus::genesis))
        .route("/api/consensus/tipset", get(consensus::tipset))
        .route("/api/consensus/block/{hash}", get(consensus::block))
        .route("/api/consensus/blocks", get(consensus::blocks))
        .route("/api/consensus/finality/{hash}", get(consensus::finality))
        .route("/api/consensus/health", get(consensus::health))
        .route("/api/ledger", get(consensus::ledger))
        .route(
            "/api/consensus/block/{hash}/proposal",
            get(proposals::proposal),
        )
        .route(
            "/api/consensus/submit-block",
            post(proposals::submit_block).layer(DefaultBodyLimit::max(PROPOSAL_BODY_LIMIT)),
        )
        .route("/api/consensus/qc", post(proposals::qc).layer(single))
        .route(
            "/api/validator/attestation/submit",
            post(attestations::submit).layer(single),
        )
        .route(
            "/api/validator/attestation/batch",
            post(attestations::batch).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        )
        .route(
            "/api/validator/attestation/verify",
            post(attestations::verify).layer(single),
        )
        .route(
            "/api/validator/attestation/{id}",
            get(attestations::get_one),
        )
        .route("/api/validator/attestations", get(attestations::list))
        .route(
            "/api/validator/register",
            post(validators::register).layer(single),
        )
        .route("/api/validator/exit", post(validators::exit).layer(single))
        .route(
            "/api/validator/slash",
            post(validators::slash).layer(single),
        )
        .route("/api/validator/list", get(validators::list))
        .route("/api/validator/entries", get(validators::entries))
        .route("/api/validator/stats", get(validators::stats))
        .route(
            "/api/validator/epoch/{n}/summary",
            get(validators::epoch_summary),
        )
        .route("/api/validator/{id}", get(validators::one))
        .route("/api/p2p/peers", get(p2p::peers))
        .route("/api/events", get(events::sse))
        .route("/ws/live-updates", get(events::ws))
        .route_layer(trace::CarryRouteLayer)
        .fallback(fallback)
        // One `layer` call for the whole stack: each `Router::layer` boxes every route
        // again, so separate calls cost a boxed clone, a boxed future and a move of the
        // request and response per layer and request (BENCHMARKS.md). Outermost first.
        .layer(
            tower::ServiceBuilder::new()
                .map_request(drain::drain_refused_body)
                .layer(trace::TraceLayer::new(state.metrics.clone()))
                .layer(compression())
                .layer(axum::error_handling::HandleErrorLayer::new(
                    move |_: tower::BoxError| overloaded(metrics.clone()),
                ))
                .load_shed()
                // Global: `Router::layer` applies the stack to each route, and the plain
                // concurrency limit would make one semaphore per route.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    state.config.max_concurrent_requests,
                ))
                // 503, not 408: the client sent its request in time; the server (a slow
                // or unreachable database, say) did not answer in time, and a retry may
                // succeed.
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    state.config.request_timeout,
                ))
                // Inside the concurrency limit, so that deciding (a Redis round trip at
                // most) is bounded work too; outside routing, so that unknown routes
                // count.
                .layer(rate_limit::LimitLayer::new(
                    state.limiter.clone(),
                    state.metrics.clone(),
                )),
        )
        .with_state(state)
}

/// Smallest body worth compressing: below it the headers cost more than they save.
const COMPRESS_MIN_BYTES: u16 = 1024;

/// br, zstd or gzip as the client prefers, for bodies of at least 1 KiB; level 3 keeps
/// the CPU cost per response small (brotli's default level would dominate a read).
fn compression() -> tower_http::compression::CompressionLayer<
    tower_http::compression::predicate::And<
        tower_http::compression::predicate::SizeAbove,
        tower_http::compression::predicate::NotForContentType,
    >,
> {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    tower_http::compression::CompressionLayer::new()
        .quality(tower_http::CompressionLevel::Precise(3))
        .compress_when(
            SizeAbove::new(COMPRESS_MIN_BYTES)
                .and(NotForContentType::const_new("text/event-stream")),
        )
}

/// The answer past `max_concurrent_requests`: an immediate 503 with `Retry-After`, not
/// an unbounded queue.
async fn overloaded(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Problem {
    metrics.overload("http");
    Problem::retry_later(
        ErrorCode::Overloaded,
        "the node is handling as many requests as it allows; retry shortly",
        1,
    )
}

async fn fallback() -> Problem {
    Problem::not_found("no such route")
}
