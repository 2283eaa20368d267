//! Everything a handler needs, in one place behind an `Arc`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use bizra_ledger::params::NetworkAnchor;
use bizra_store::AnyStore;
use tokio::sync::watch;

use crate::cache::ResponseCache;
use crate::config::Config;
use crate::consensus::Consensus;
use crate::events::Events;
use crate::ingest::Ingest;
use crate::limit::Limiter;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) store: AnyStore,
    pub(crate) metrics: Arc<Metrics>,
    /// The submit path.
    pub(crate) ingest: Ingest,
    /// Serialized, compressed responses.
    pub(crate) cache: Arc<ResponseCache>,
    /// The shared Redis, when configured (L2 cache, shared quotas).
    pub(crate) redis: Option<Arc<RedisLink>>,
    /// `None` when rate limiting is off.
    pub(crate) limiter: Option<Arc<Limiter>>,
    pub(crate) events: Events,
    /// The chain, its snapshot for readers, and the validator network.
    pub(crate) consensus: Arc<Consensus>,
    /// The network this node serves.
    pub(crate) anchor: NetworkAnchor,
    /// The node's validator id in hex, as answers and logs show it.
    pub(crate) node_id_hex: String,
    pub(crate) started: Instant,
    /// Turns true when the node begins to shut down: ends event streams and the tasks.
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub(crate) fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}
