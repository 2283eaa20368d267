//! Liveness, readiness and metrics: exempt from rate limits, cheap to call.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bizra_store::Store;
use serde::Serialize;

use crate::state::AppState;

/// The operational routes that monitors poll (liveness, readiness, metrics): never rate
/// limited, and logged at debug when they succeed.
pub(crate) fn is_probe(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health<'a> {
    pub(crate) status: &'static str,
    pub(crate) version: &'static str,
    pub(crate) node_id: &'a str,
    pub(crate) chain_id: &'a str,
    pub(crate) uptime_s: u64,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
// A GET is answered by `super::entry`, ahead of the middleware; this handler serves HEAD
// and the API description (doc comments here become the OpenAPI text).
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    liveness(&state)
}

/// The liveness answer, for the handler and for `super::entry`.
pub(crate) fn liveness(state: &AppState) -> Response {
    let health = Health {
        status: "healthy",
        version: env!("CARGO_PKG_VERSION"),
        node_id: &state.node_id_hex,
        chain_id: &state.anchor.chain_id,
        uptime_s: state.started.elapsed().as_secs(),
    };
    // Sized for the whole answer at once (axum's `Json` starts at 128 bytes and grows).
    let mut body = Vec::with_capacity(256);
    match serde_json::to_writer(&mut body, &health) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the liveness answer");
            crate::problem::Problem::internal("the liveness answer did not serialize").to_response()
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Check {
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    /// Round trip of the probe, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    pub(crate) ready: bool,
    pub(crate) checks: ReadyChecks,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReadyChecks {
    pub(crate) store: Check,
    /// The L2 cache (Redis, which also holds the shared rate-limit state): `ok`, `down`
    /// or `disabled`.
    pub(crate) cache_l2: Check,
    pub(crate) peers: Check,
}

/// Readiness: 200 when the store answers, else 503. Redis is reported but does not
/// decide: without it the node serves from L1 and limits locally. Peers are reported
/// (`ok`, `degraded` when a breaker is not closed, `not_configured`) but do not decide
/// either: a node serves reads and submissions while peers are away.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let store =
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
            Ok(Ok(())) => Check {
                status: "ok",
                detail: Some(state.store.backend().into()),
                latency_ms: None,
            },
            Ok(Err(e)) => Check {
                status: "down",
                detail: Some(e.to_string()),
                latency_ms: None,
            },
            Err(_) => Check {
                status: "down",
                detail: Some("no answer within 2 s".into()),
                latency_ms: None,
            },
        };
    let cache_l2 = match &state.redis {
        None => Check {
            status: "disabled",
            detail: None,
            latency_ms: None,
        },
        Some(link) => match link.ping().await {
            Ok(rtt) => Check {
                status: "ok",
                detail: None,
                latency_ms: Some(rtt.as_secs_f64() * 1000.0),
            },
            Err(e) => Check {
                status: "down",
                detail: Some(format!("{e}; serving from L1 with local rate limits")),
                latency_ms: None,
            },
        },
    };
    let ok = store.status == "ok";
    let body = Ready {
        ready: ok,
        checks: ReadyChecks {
            store,
            cache_l2,
            peers: peers_check(&state),
        },
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn peers_check(state: &AppState) -> Check {
    let peers = state.consensus.network.peers.peers();
    if peers.is_empty() {
        return Check {
            status: "not_configured",
            detail: Some("single-validator network".into()),
            latency_ms: None,
        };
    }
    let closed = peers
        .iter()
        .filter(|p| p.breaker_state() == crate::peers::breaker::BreakerState::Closed)
        .count();
    Check {
        status: if closed == peers.len() {
            "ok"
        } else {
            "degraded"
        },
        detail: Some(format!(
            "{closed} of {} peers with a closed circuit breaker",
            peers.len()
        )),
        latency_ms: None,
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let pool = state.store.pool_stats();
    state.metrics.set_pool("idle", pool.idle as i64);
    state.metrics.set_pool("in_use", pool.in_use as i64);
    state.metrics.set_pool("max", pool.max_size as i64);
    state
        .metrics
        .db_write_queue_depth
        .set(i64::from(pool.queued_writes));
    state
        .metrics
        .set_queue("signature", state.ingest.verifier.queued());
    state
        .metrics
        .set_queue("write", state.ingest.writer.queued());
    state
        .metrics
        .set_queue("nonce_lookup", state.ingest.nonces.queued());
    state.cache.export();
    state.metrics.refresh_log_sink();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
