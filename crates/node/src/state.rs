//! Everything a handler or background task needs, in one place behind an `Arc`.

use std::ops::Deref;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bizra_ledger::block::Block;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::genesis::Genesis;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;
use bizra_store::AnyStore;
use tokio::sync::{watch, Mutex, Notify};

use crate::cache::ResponseCache;
use crate::chain::{Chain, Head};
use crate::config::Config;
use crate::events::Events;
use crate::ingest::nonces::{NonceLookup, NonceLookupConfig};
use crate::ingest::verifier::{Verifier, VerifierConfig};
use crate::ingest::writer::{Writer, WriterConfig};
use crate::leadership::Leadership;
use crate::limit::Limiter;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: AnyStore,
    pub metrics: Arc<Metrics>,
    /// Gathers signatures of concurrent single submissions into batches.
    pub verifier: Verifier,
    /// Group-commits attestation rows.
    pub writer: Writer,
    /// `/verify`'s rule-13 lookups, gathered.
    pub nonces: NonceLookup,
    /// Serialized, compressed responses.
    pub cache: ResponseCache,
    /// The shared Redis, when configured (L2 cache, shared quotas).
    pub redis: Option<Arc<RedisLink>>,
    /// `None` when rate limiting is off.
    pub limiter: Option<Arc<Limiter>>,
    pub events: Events,
    /// The node's validator key.
    pub key: Keypair,
    pub node_id: Hash32,
    /// `node_id` in hex, as answers and logs show it.
    pub node_id_hex: String,
    pub genesis: Genesis,
    pub genesis_block: Block,
    pub anchor: NetworkAnchor,
    /// Whether this node proposes blocks (it is the first validator of the genesis).
    pub is_proposer: bool,
    /// Peers, the proposer's identity, and the peer tasks under way.
    pub network: crate::validator::Network,
    /// Whether this replica produces blocks (holds the store's producer lease).
    pub leadership: Arc<Leadership>,
    /// Written by the block producer only; readers use `head`.
    pub chain: Mutex<Chain>,
    pub head: ArcSwap<Head>,
    /// Accepted attestations not yet in a block, as the submit path counts them; wakes
    /// the producer early at `max_block_attestations`.
    pub pending_hint: AtomicUsize,
    pub producer_wake: Notify,
    pub started: Instant,
    /// Turns true when the node begins to shut down: ends event streams and the producer.
    pub shutdown: watch::Sender<bool>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: Config,
        store: AnyStore,
        key: Keypair,
        chain: Chain,
        metrics: Arc<Metrics>,
        network: crate::validator::Network,
    ) -> AppState {
        let genesis = chain.genesis.clone();
        let genesis_block = chain.genesis_block.clone();
        let anchor = chain.anchor.clone();
        let node_id = key.public().validator_id();
        let is_proposer = genesis
            .validators
            .first()
            .is_some_and(|v| v.validator_id() == node_id);
        let head = chain.head(crate::clock::now_ms());
        let cache_metrics = metrics.clone();
        let verifier = Verifier::start(VerifierConfig::default(), metrics.clone());
        let writer = Writer::start(store.clone(), WriterConfig::default(), metrics.clone());
        let nonces =
            NonceLookup::start(store.clone(), NonceLookupConfig::default(), metrics.clone());
        let store_for_lease = store.clone();
        let redis = config.redis_url.as_deref().and_then(|url| {
            let prefix = config
                .redis_prefix
                .clone()
                .unwrap_or_else(|| format!("node0:{}:", anchor.chain_id));
            // The URL was checked with the configuration; this cannot fail in practice.
            RedisLink::start(url, prefix, config.redis_timeout, metrics.clone())
                .map_err(
                    |e| tracing::error!(error = %e, "redis URL refused; running without Redis"),
                )
                .ok()
        });
        let mut cache = ResponseCache::new(
            bizra_wire::Codec::default(),
            config.cache_l1_bytes,
            cache_metrics,
        );
        if let Some(link) = &redis {
            cache = cache.with_l2(crate::cache::l2::L2::new(link.clone(), metrics.clone()));
        }
        let limiter = config.rate_limit.as_ref().map(|rl| {
            Limiter::start(
                rl,
                config.trusted_proxies.clone(),
                redis.clone(),
                metrics.clone(),
            )
        });
        AppState(Arc::new(Inner {
            config,
            store,
            metrics,
            verifier,
            writer,
            nonces,
            cache,
            redis,
            limiter,
            events: Events::new(),
            key,
            node_id,
            node_id_hex: node_id.to_hex(),
            genesis,
            genesis_block,
            anchor,
            is_proposer,
            network,
            leadership: Leadership::new(&store_for_lease, &node_id.to_hex()),
            chain: Mutex::new(chain),
            head: ArcSwap::from_pointee(head),
            pending_hint: AtomicUsize::new(0),
            producer_wake: Notify::new(),
            started: Instant::now(),
            shutdown: watch::Sender::new(false),
        }))
    }

    /// Publishes a new head snapshot from `chain` and updates the chain gauges.
    pub fn publish_head(&self, chain: &Chain) {
        let mut head = chain.head(crate::clock::now_ms());
        head.version = self.head.load().version + 1;
        self.metrics.chain_height.set(head.height as i64);
        self.metrics
            .finalized_height
            .set(head.finalized_height as i64);
        self.metrics
            .finality_lag_blocks
            .set(head.height.saturating_sub(head.finalized_height) as i64);
        self.head.store(Arc::new(head));
        // Views of older heads can no longer be asked for; drop them now, not at TTL.
        self.cache.invalidate_views();
    }
}
