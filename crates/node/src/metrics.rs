//! Prometheus metrics: one registry, typed families, rendered on `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) method: String,
    pub(crate) route: String,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    pub(crate) code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TierLabels {
    pub(crate) tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StageLabels {
    pub(crate) stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClassLabels {
    pub(crate) class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PeerLabels {
    pub(crate) peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PeerOutcomeLabels {
    pub(crate) peer: String,
    pub(crate) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PeerTransitionLabels {
    pub(crate) peer: String,
    pub(crate) to: String,
}

/// Latency buckets from 50 µs to 10 s: a cached read answers in tens of microseconds,
/// a durable write in milliseconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
    ])
}

// Every label value the node can emit is created at start, at zero: an absent series
// reads as "no data" to Prometheus (an alert on a rate never fires), and a test can tell a
// metric that is missing from one that is zero.

/// Cache tiers (`cache_hits`, `cache_misses`).
pub(crate) const CACHE_TIERS: [&str; 2] = ["l1", "l2"];
/// Rate-limit route classes (`rate_limited`).
pub(crate) const LIMIT_CLASSES: [&str; 3] = ["read", "submit", "admin"];
/// Why a Redis command was not answered (`redis_failures`, and the fallbacks it causes).
pub(crate) const REDIS_REASONS: [&str; 3] = ["down", "timeout", "error"];
/// Bounded submit-path queues (`ingest_queue_depth`).
pub(crate) const QUEUE_STAGES: [&str; 3] = ["signature", "write", "nonce_lookup"];
/// Where a request can be refused for overload (`overloaded`).
pub(crate) const OVERLOAD_STAGES: [&str; 4] = ["http", "signature", "write", "nonce_lookup"];
/// Store pool gauges (`db_pool_connections`).
pub(crate) const POOL_STATES: [&str; 3] = ["idle", "in_use", "max"];
/// Outcomes of a peer call (`peer_calls`).
pub(crate) const PEER_OUTCOMES: [&str; 6] = [
    "ok",
    "refused",
    "timeout",
    "connect",
    "bad_answer",
    "breaker_open",
];
/// Circuit breaker states a peer can move to (`circuit_breaker_transitions`).
pub(crate) const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// Creates the series of `labels` in `family` (at zero) without touching it.
fn create<S, M, C>(family: &Family<S, M, C>, labels: &S)
where
    S: Clone + std::hash::Hash + Eq,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    drop(family.get_or_create(labels));
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;
type PeerLatencyFamily = Family<PeerLabels, Histogram, fn() -> Histogram>;

fn http_labels(method: &str, route: &str, status: u16) -> HttpLabels {
    HttpLabels {
        method: method.to_owned(),
        route: route.to_owned(),
        status,
    }
}

fn route_labels(route: &str) -> RouteLabels {
    RouteLabels {
        route: route.to_owned(),
    }
}

/// Handles on `http_requests` and `http_duration` for one label set (see
/// [`Metrics::http_route`]); they count into the same series the registry exports.
#[derive(Clone)]
pub(crate) struct HttpRouteMetrics {
    requests: Counter,
    duration: Histogram,
}

impl HttpRouteMetrics {
    pub(crate) fn observe(&self, elapsed: Duration) {
        self.requests.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) http_requests: Family<HttpLabels, Counter>,
    pub(crate) http_duration: LatencyFamily,
    pub(crate) http_connections_accepted: Counter,
    pub(crate) http_connections_open: Gauge,
    pub(crate) attestations_accepted: Counter,
    pub(crate) attestations_rejected: Family<CodeLabels, Counter>,
    pub(crate) blocks_produced: Counter,
    pub(crate) blocks_finalized: Counter,
    pub(crate) finality_lag_blocks: Gauge,
    pub(crate) chain_height: Gauge,
    pub(crate) finalized_height: Gauge,
    pub(crate) signature_batch_size: Histogram,
    pub(crate) nonce_lookup_batch_size: Histogram,
    pub(crate) group_commit_rows: Histogram,
    pub(crate) store_write_seconds: Histogram,
    /// How long storing a new block (its row and its attestations' placement) took.
    pub(crate) block_write_seconds: Histogram,
    pub(crate) db_pool_connections: Family<StateLabels, Gauge>,
    pub(crate) db_write_queue_depth: Gauge,
    /// 1 while this replica holds the block producer lease.
    pub(crate) producer_leader: Gauge,
    /// How long callers waited for a store connection (PostgreSQL pool).
    pub(crate) db_pool_acquire_seconds: Histogram,
    pub(crate) event_subscribers: Gauge,
    pub(crate) ingest_queue_depth: Family<StageLabels, Gauge>,
    pub(crate) cache_hits: Family<TierLabels, Counter>,
    pub(crate) cache_misses: Family<TierLabels, Counter>,
    pub(crate) cache_compression_ratio: Gauge<f64, AtomicU64>,
    pub(crate) cache_entries: Gauge,
    pub(crate) cache_bytes: Gauge,
    pub(crate) overloaded: Family<StageLabels, Counter>,
    pub(crate) events_dropped: Counter,
    /// Log bytes waiting for the log writer thread, and lines dropped because the log
    /// output was stuck with its buffer full (`log_sink`); refreshed on each scrape.
    pub(crate) log_buffer_bytes: Gauge,
    pub(crate) log_lines_dropped: Counter,
    pub(crate) redis_failures: Family<ReasonLabels, Counter>,
    pub(crate) cache_l2_fallbacks: Family<ReasonLabels, Counter>,
    pub(crate) cache_l2_writes_dropped: Counter,
    pub(crate) rate_limited: Family<ClassLabels, Counter>,
    pub(crate) rate_limit_fallbacks: Family<ReasonLabels, Counter>,
    pub(crate) rate_limit_keys: Gauge,
    pub(crate) peer_request_duration: PeerLatencyFamily,
    pub(crate) peer_calls: Family<PeerOutcomeLabels, Counter>,
    pub(crate) circuit_breaker_state: Family<PeerLabels, Gauge>,
    pub(crate) circuit_breaker_transitions: Family<PeerTransitionLabels, Counter>,
    /// Proposal fan-outs and QC announcements under way.
    pub(crate) peer_tasks: Gauge,
    pub(crate) votes_received: Counter,
    pub(crate) blocks_accepted: Counter,
    pub(crate) blocks_certified: Counter,
    pub(crate) votes_sent: Counter,
    pub(crate) equivocations: Counter,
    pub(crate) ledger_appended: Counter,
    pub(crate) ledger_rejected: Counter,
    pub(crate) ledger_size: Gauge,
    pub(crate) epoch: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        let http_duration: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by route",
            http_duration.clone(),
        );
        let http_connections_accepted = Counter::default();
        registry.register(
            "http_connections_accepted",
            "TCP connections accepted",
            http_connections_accepted.clone(),
        );
        let http_connections_open = Gauge::default();
        registry.register(
            "http_connections_open",
            "TCP connections open now",
            http_connections_open.clone(),
        );
        let attestations_accepted = Counter::default();
        registry.register(
            "attestations_accepted",
            "Attestations durably stored",
            attestations_accepted.clone(),
        );
        let attestations_rejected = Family::<CodeLabels, Counter>::default();
        registry.register(
            "attestations_rejected",
            "Attestations refused, by error code",
            attestations_rejected.clone(),
        );
        let blocks_produced = Counter::default();
        registry.register(
            "blocks_produced",
            "Blocks proposed by this node",
            blocks_produced.clone(),
        );
        let blocks_finalized = Counter::default();
        registry.register(
            "blocks_finalized",
            "Blocks this node committed (finalized)",
            blocks_finalized.clone(),
        );
        let finality_lag_blocks = Gauge::default();
        registry.register(
            "finality_lag_blocks",
            "Highest certified height minus the last committed leader's height",
            finality_lag_blocks.clone(),
        );
        let chain_height = Gauge::default();
        registry.register("chain_height", "Highest block height", chain_height.clone());
        let finalized_height = Gauge::default();
        registry.register(
            "finalized_height",
            "Highest finalized block height",
            finalized_height.clone(),
        );
        let signature_batch_size = size_histogram();
        registry.register(
            "signature_batch_size",
            "Signatures checked per batch verification",
            signature_batch_size.clone(),
        );
        let nonce_lookup_batch_size = size_histogram();
        registry.register(
            "nonce_lookup_batch_size",
            "(key, nonce) pairs looked up per store call by the verify route",
            nonce_lookup_batch_size.clone(),
        );
        let group_commit_rows = size_histogram();
        registry.register(
            "group_commit_rows",
            "Attestation rows written per store transaction",
            group_commit_rows.clone(),
        );
        let store_write_seconds = latency_histogram();
        registry.register(
            "store_write_seconds",
            "Duration of one attestation write transaction",
            store_write_seconds.clone(),
        );
        let block_write_seconds = latency_histogram();
        registry.register(
            "block_write_seconds",
            "Duration of storing one new block with its attestations' placement",
            block_write_seconds.clone(),
        );
        let db_pool_connections = Family::<StateLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Store connections by state (idle, in_use, max)",
            db_pool_connections.clone(),
        );
        let db_write_queue_depth = Gauge::default();
        registry.register(
            "db_write_queue_depth",
            "Write transactions waiting for the embedded store's writer thread (at most 256; 0 on PostgreSQL)",
            db_write_queue_depth.clone(),
        );
        let producer_leader = Gauge::default();
        registry.register(
            "producer_leader",
            "1 while this replica holds the block producer lease",
            producer_leader.clone(),
        );
        let db_pool_acquire_seconds = latency_histogram();
        registry.register(
            "db_pool_acquire_seconds",
            "Time a store operation waited for a pooled PostgreSQL connection",
            db_pool_acquire_seconds.clone(),
        );
        let event_subscribers = Gauge::default();
        registry.register(
            "event_subscribers",
            "Open SSE and WebSocket event streams",
            event_subscribers.clone(),
        );
        let log_buffer_bytes = Gauge::default();
        registry.register(
            "log_buffer_bytes",
            "Log bytes waiting for the log writer thread (bounded; see log_lines_dropped)",
            log_buffer_bytes.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log output was stuck and its buffer full",
            log_lines_dropped.clone(),
        );
        let ingest_queue_depth = Family::<StageLabels, Gauge>::default();
        registry.register(
            "ingest_queue_depth",
            "Requests waiting in a bounded submit-path queue (signature, write)",
            ingest_queue_depth.clone(),
        );
        let cache_hits = Family::<TierLabels, Counter>::default();
        registry.register(
            "cache_hits",
            "Response cache hits by tier",
            cache_hits.clone(),
        );
        let cache_misses = Family::<TierLabels, Counter>::default();
        registry.register(
            "cache_misses",
            "Response cache misses by tier",
            cache_misses.clone(),
        );
        let cache_compression_ratio = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "cache_compression_ratio",
            "Stored bytes over raw bytes of the compressed cache entries (lower is better)",
            cache_compression_ratio.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Entries in the L1 response cache",
            cache_entries.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Stored bytes of the L1 immutable entries",
            cache_bytes.clone(),
        );
        let overloaded = Family::<StageLabels, Counter>::default();
        registry.register(
            "overloaded",
            "Requests refused with 503 because a bounded queue or the concurrency limit was full",
            overloaded.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events a slow subscriber missed (its buffer overflowed)",
            events_dropped.clone(),
        );
        let redis_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "redis_failures",
            "Redis commands that failed or timed out (each starts a short back-off)",
            redis_failures.clone(),
        );
        let cache_l2_fallbacks = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "cache_l2_fallbacks",
            "L2 cache reads and writes skipped because Redis was down, slow or failing",
            cache_l2_fallbacks.clone(),
        );
        let cache_l2_writes_dropped = Counter::default();
        registry.register(
            "cache_l2_writes_dropped",
            "L2 cache writes dropped because the bounded write queue was full",
            cache_l2_writes_dropped.clone(),
        );
        let rate_limited = Family::<ClassLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429, by route class",
            rate_limited.clone(),
        );
        let rate_limit_fallbacks = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rate_limit_fallbacks",
            "Rate-limit decisions made by the local limiter because Redis was down, slow or failing",
            rate_limit_fallbacks.clone(),
        );
        let rate_limit_keys = Gauge::default();
        registry.register(
            "rate_limit_keys",
            "Client keys held by the local rate limiter",
            rate_limit_keys.clone(),
        );
        let peer_request_duration: PeerLatencyFamily =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "peer_request_duration_seconds",
            "Duration of calls to peer validators (all attempts), by peer",
            peer_request_duration.clone(),
        );
        let peer_calls = Family::<PeerOutcomeLabels, Counter>::default();
        registry.register(
            "peer_calls",
            "Calls to peer validators by outcome (ok, refused, timeout, connect, bad_answer, breaker_open)",
            peer_calls.clone(),
        );
        let circuit_breaker_state = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "circuit_breaker_state",
            "Circuit breaker per peer: 0 closed, 1 open, 2 half-open",
            circuit_breaker_state.clone(),
        );
        let circuit_breaker_transitions = Family::<PeerTransitionLabels, Counter>::default();
        registry.register(
            "circuit_breaker_transitions",
            "Circuit breaker state changes per peer",
            circuit_breaker_transitions.clone(),
        );
        let peer_tasks = Gauge::default();
        registry.register(
            "peer_tasks",
            "Proposal fan-outs, QC announcements and catch-ups under way",
            peer_tasks.clone(),
        );
        let votes_received = Counter::default();
        registry.register(
            "votes_received",
            "Valid votes received from peer validators",
            votes_received.clone(),
        );
        let blocks_accepted = Counter::default();
        registry.register(
            "blocks_accepted",
            "Blocks of other validators this node checked and stored",
            blocks_accepted.clone(),
        );
        let blocks_certified = Counter::default();
        registry.register(
            "blocks_certified",
            "Blocks this node saw certified (a quorum certificate checked and stored)",
            blocks_certified.clone(),
        );
        let votes_sent = Counter::default();
        registry.register(
            "votes_sent",
            "Votes this node signed for other validators' blocks",
            votes_sent.clone(),
        );
        let equivocations = Counter::default();
        registry.register(
            "equivocations",
            "Two blocks of one proposer at one height seen by this node",
            equivocations.clone(),
        );
        let ledger_appended = Counter::default();
        registry.register(
            "ledger_appended",
            "Attestations this node appended to the ledger (each with a log_index)",
            ledger_appended.clone(),
        );
        let ledger_rejected = Counter::default();
        registry.register(
            "ledger_rejected",
            "Attestations rejected in ledger order (duplicate_nonce)",
            ledger_rejected.clone(),
        );
        let ledger_size = Gauge::default();
        registry.register(
            "ledger_size",
            "Attestations in the ledger: the next log_index",
            ledger_size.clone(),
        );
        let epoch = Gauge::default();
        registry.register(
            "epoch",
            "The epoch this node builds blocks in",
            epoch.clone(),
        );
        let metrics = Metrics {
            registry,
            http_requests,
            http_duration,
            http_connections_accepted,
            http_connections_open,
            attestations_accepted,
            attestations_rejected,
            blocks_produced,
            blocks_finalized,
            finality_lag_blocks,
            chain_height,
            finalized_height,
            signature_batch_size,
            nonce_lookup_batch_size,
            group_commit_rows,
            store_write_seconds,
            block_write_seconds,
            db_pool_connections,
            db_write_queue_depth,
            db_pool_acquire_seconds,
            producer_leader,
            event_subscribers,
            ingest_queue_depth,
            cache_hits,
            cache_misses,
            cache_compression_ratio,
            cache_entries,
            cache_bytes,
            overloaded,
            events_dropped,
            log_buffer_bytes,
            log_lines_dropped,
            redis_failures,
            cache_l2_fallbacks,
            cache_l2_writes_dropped,
            rate_limited,
            rate_limit_fallbacks,
            rate_limit_keys,
            peer_request_duration,
            peer_calls,
            circuit_breaker_state,
            circuit_breaker_transitions,
            peer_tasks,
            votes_received,
            blocks_accepted,
            blocks_certified,
            votes_sent,
            equivocations,
            ledger_appended,
            ledger_rejected,
            ledger_size,
            epoch,
        };
        metrics.create_known_series();
        metrics
    }

    fn create_known_series(&self) {
        for tier in CACHE_TIERS {
            let labels = TierLabels { tier: tier.into() };
            create(&self.cache_hits, &labels);
            create(&self.cache_misses, &labels);
        }
        for class in LIMIT_CLASSES {
            create(
                &self.rate_limited,
                &ClassLabels {
                    class: class.into(),
                },
            );
        }
        for reason in REDIS_REASONS {
            let labels = ReasonLabels {
                reason: reason.into(),
            };
            create(&self.redis_failures, &labels);
            create(&self.cache_l2_fallbacks, &labels);
            create(&self.rate_limit_fallbacks, &labels);
        }
        for stage in QUEUE_STAGES {
            create(
                &self.ingest_queue_depth,
                &StageLabels {
                    stage: stage.into(),
                },
            );
        }
        for stage in OVERLOAD_STAGES {
            create(
                &self.overloaded,
                &StageLabels {
                    stage: stage.into(),
                },
            );
        }
        for state in POOL_STATES {
            create(
                &self.db_pool_connections,
                &StateLabels {
                    state: state.into(),
                },
            );
        }
        let codes = bizra_ledger::attestation::RuleCode::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(["invalid_json", "schema"]);
        for code in codes {
            create(
                &self.attestations_rejected,
                &CodeLabels { code: code.into() },
            );
        }
    }

    /// Creates every series of one peer, at zero (its breaker closed).
    pub(crate) fn add_peer(&self, url: &str) {
        let peer = PeerLabels { peer: url.into() };
        self.circuit_breaker_state.get_or_create(&peer).set(0);
        create(&self.peer_request_duration, &peer);
        for outcome in PEER_OUTCOMES {
            create(
                &self.peer_calls,
                &PeerOutcomeLabels {
                    peer: url.into(),
                    outcome: outcome.into(),
                },
            );
        }
        for to in BREAKER_STATES {
            create(
                &self.circuit_breaker_transitions,
                &PeerTransitionLabels {
                    peer: url.into(),
                    to: to.into(),
                },
            );
        }
    }

    fn reason(family: &Family<ReasonLabels, Counter>, reason: &str) {
        family
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn redis_failure(&self, reason: &str) {
        Self::reason(&self.redis_failures, reason);
    }

    pub(crate) fn cache_l2_fallback(&self, reason: &str) {
        Self::reason(&self.cache_l2_fallbacks, reason);
    }

    pub(crate) fn rate_limit_fallback(&self, reason: &str) {
        Self::reason(&self.rate_limit_fallbacks, reason);
    }

    pub(crate) fn limited(&self, class: &str) {
        self.rate_limited
            .get_or_create(&ClassLabels {
                class: class.to_owned(),
            })
            .inc();
    }

    pub(crate) fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        // Through the family's guards: cloning the handles out would cost two reference
        // counts per request.
        self.http_requests
            .get_or_create(&http_labels(method, route, status))
            .inc();
        self.http_duration
            .get_or_create(&route_labels(route))
            .observe(elapsed.as_secs_f64());
    }

    /// The HTTP metrics of one method, route and status, looked up once: what a hot route
    /// keeps to count itself without building labels per request.
    pub(crate) fn http_route(&self, method: &str, route: &str, status: u16) -> HttpRouteMetrics {
        HttpRouteMetrics {
            requests: self
                .http_requests
                .get_or_create(&http_labels(method, route, status))
                .clone(),
            duration: self
                .http_duration
                .get_or_create(&route_labels(route))
                .clone(),
        }
    }

    pub(crate) fn rejected(&self, code: &str) {
        self.attestations_rejected
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc();
    }

    pub(crate) fn set_queue(&self, stage: &str, n: usize) {
        self.ingest_queue_depth
            .get_or_create(&StageLabels {
                stage: stage.to_owned(),
            })
            .set(n as i64);
    }

    pub(crate) fn cache_hit(&self, tier: &str) {
        self.cache_hits
            .get_or_create(&TierLabels {
                tier: tier.to_owned(),
            })
            .inc();
    }

    pub(crate) fn cache_miss(&self, tier: &str) {
        self.cache_misses
            .get_or_create(&TierLabels {
                tier: tier.to_owned(),
            })
            .inc();
    }

    pub(crate) fn overload(&self, stage: &str) {
        self.overloaded
            .get_or_create(&StageLabels {
                stage: stage.to_owned(),
            })
            .inc();
    }

    pub(crate) fn set_pool(&self, state: &str, n: i64) {
        self.db_pool_connections
            .get_or_create(&StateLabels {
                state: state.to_owned(),
            })
            .set(n);
    }

    /// Copies the log sink's figures (process-wide) into their metrics.
    pub(crate) fn refresh_log_sink(&self) {
        let (buffered, dropped) = crate::log_sink::stats();
        self.log_buffer_bytes.set(buffered as i64);
        // The sink's count only grows; the counter catches up with it.
        self.log_lines_dropped
            .inc_by(dropped.saturating_sub(self.log_lines_dropped.get()));
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_families() {
        let m = Metrics::new();
        m.observe_http("GET", "/health", 200, Duration::from_micros(80));
        m.rejected("bad_signature");
        let text = m.render();
        for name in [
            "http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1",
            "http_request_duration_seconds_bucket{le=\"0.0001\",route=\"/health\"} 1",
            "attestations_rejected_total{code=\"bad_signature\"} 1",
            "attestations_accepted_total 0",
            "finality_lag_blocks 0",
            "cache_hits_total{tier=\"l2\"} 0",
            "rate_limited_total{class=\"admin\"} 0",
            "redis_failures_total{reason=\"timeout\"} 0",
            "attestations_rejected_total{code=\"duplicate_nonce\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn a_route_handle_counts_into_the_exported_series() {
        let m = Metrics::new();
        let health = m.http_route("GET", "/health", 200);
        health.observe(Duration::from_micros(80));
        health.observe(Duration::from_millis(30));
        m.observe_http("GET", "/health", 200, Duration::from_micros(80));
        let text = m.render();
        for name in [
            "http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 3",
            "http_request_duration_seconds_bucket{le=\"0.0001\",route=\"/health\"} 2",
            "http_request_duration_seconds_count{route=\"/health\"} 3",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
