//! Starting and stopping a node: data directory, store, chain state, HTTP server, the
//! consensus tasks, and a graceful shutdown that drains requests before closing the store.

use std::net::SocketAddr;
use std::sync::Arc;

use bizra_store::{AnyStore, IdentityCheck, SqliteConfig, Store, StoreError};
use tokio::net::TcpListener;

use std::time::Instant;

use tokio::sync::watch;

use crate::cache::l2::L2;
use crate::cache::ResponseCache;
use crate::config::Config;
use crate::consensus::network::Network;
use crate::consensus::{catchup, propose, replay, Consensus, Parts, Settings};
use crate::datadir::{self, DataDirError, STORE_FILE};
use crate::events::Events;
use crate::http::{self, entry::MakeEntry, listener::CountingListener};
use crate::ingest::Ingest;
use crate::limit::Limiter;
use crate::metrics::Metrics;
use crate::peers::breaker::BreakerConfig;
use crate::redis_link::RedisLink;
use crate::state::{AppState, Inner};
use bizra_ledger::consensus::commit::DEFAULT_GC_DEPTH;
use bizra_ledger::consensus::engine::EngineParams;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("chain state: {0}")]
    Chain(String),
    #[error("the store belongs to another chain: {0}")]
    WrongChain(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Unsupported(String),
}

/// The PostgreSQL store when one is configured (its acquire waits timed into `metrics`),
/// else the embedded store in the data directory.
async fn open_store(config: &Config, metrics: &Arc<Metrics>) -> Result<AnyStore, NodeError> {
    match &config.database {
        Some(pg) => {
            let mut pg = pg.clone();
            let histogram = metrics.db_pool_acquire_seconds.clone();
            pg.on_acquire = Some(Arc::new(move |waited| {
                histogram.observe(waited.as_secs_f64())
            }));
            tracing::info!(pool = pg.max_connections, schema = ?pg.schema, pgbouncer = pg.pgbouncer, "opening PostgreSQL store");
            Ok(AnyStore::open_postgres(pg).await?)
        }
        None => Ok(AnyStore::open_sqlite(
            config.data_dir.join(STORE_FILE),
            SqliteConfig::default(),
        )
        .await?),
    }
}

/// A node that has opened its state and bound its port, not yet serving.
pub struct Node {
    state: AppState,
    listener: TcpListener,
}

impl Node {
    /// Prepares the data directory, opens the store, rebuilds the chain state and binds
    /// the listening port.
    pub async fn open(config: Config) -> Result<Node, NodeError> {
        let prepared = datadir::prepare(&config)?;
        let metrics = Arc::new(Metrics::new());
        let store = open_store(&config, &metrics).await?;
        let genesis_block = prepared
            .genesis
            .block()
            .map_err(|e| NodeError::WrongChain(e.to_string()))?;
        match store
            .bind_identity(&prepared.genesis.chain_id, &genesis_block.hash)
            .await
        {
            Ok(IdentityCheck::Fresh) => {
                tracing::info!(genesis = %genesis_block.hash, "new store bound to genesis")
            }
            Ok(IdentityCheck::Matches) => {}
            Err(StoreError::Conflict(msg)) => return Err(NodeError::WrongChain(msg)),
            Err(e) => return Err(e.into()),
        }
        let slot_ms = config.slot.as_millis() as u64;
        let genesis_ms = prepared
            .genesis
            .genesis_time_ms()
            .map_err(|e| NodeError::Chain(e.to_string()))?;
        let node_id = prepared.key.public().validator_id();
        let chain = replay::load(
            prepared.genesis,
            &store,
            EngineParams {
                genesis_ms,
                slot_ms,
                gc_depth: DEFAULT_GC_DEPTH,
            },
            &node_id,
            true,
        )
        .await
        .map_err(|e| NodeError::Chain(e.to_string()))?;
        let anchor = chain.anchor.clone();
        let listener = bind(config.listen).map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
        let network = Network::new(
            &chain.genesis,
            &node_id,
            &config.peers,
            config.peer_call_timeout,
            BreakerConfig {
                open_for: config.peer_breaker_open,
                ..Default::default()
            },
            metrics.clone(),
        )
        .map_err(|e| NodeError::Unsupported(format!("peer client: {e}")))?;
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
            metrics.clone(),
        );
        if let Some(link) = &redis {
            cache = cache.with_l2(L2::new(link.clone(), metrics.clone()));
        }
        let cache = Arc::new(cache);
        let limiter = config.rate_limit.as_ref().map(|rl| {
            Limiter::start(
                rl,
                config.trusted_proxies.clone(),
                redis.clone(),
                metrics.clone(),
            )
        });
        let events = Events::new();
        let ingest = Ingest::start(
            &store,
            metrics.clone(),
            events.clone(),
            anchor.clone(),
            config.max_block_attestations,
        );
        let shutdown = watch::Sender::new(false);
        let consensus = Arc::new(Consensus::new(Parts {
            store: store.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
            cache: cache.clone(),
            key: prepared.key,
            chain,
            network,
            pending: ingest.pending.clone(),
            settings: Settings {
                slot: config.slot,
                min_height: config.min_height,
                leader_timeout: config.leader_timeout,
                max_block_attestations: config.max_block_attestations,
            },
            shutdown: shutdown.subscribe(),
        }));
        let state = AppState::new(Inner {
            config,
            store,
            metrics,
            ingest,
            cache,
            redis,
            limiter,
            events,
            consensus,
            anchor,
            node_id_hex: node_id.to_hex(),
            started: Instant::now(),
            shutdown,
        });
        Ok(Node { state, listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests, stops the
    /// consensus tasks and closes the store.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let Node { state, listener } = self;
        crate::faults::arm();
        let consensus = state.consensus.clone();
        let leadership = tokio::spawn(consensus.leadership.clone().run(
            state.store.clone(),
            state.metrics.clone(),
            state.shutdown.subscribe(),
        ));
        let proposer = tokio::spawn(propose::run(consensus.clone()));
        let catch_up = tokio::spawn(catchup::run(consensus.clone()));
        let probes = tokio::spawn(catchup::probe_peers(consensus.clone()));
        let head = consensus.head.load();
        tracing::info!(
            addr = %state.config.listen,
            node_id = %state.node_id_hex,
            chain_id = %state.anchor.chain_id,
            epoch = head.epoch,
            height = head.height,
            ledger = head.ledger_len,
            validator = consensus.is_validator(),
            "node0 serving"
        );
        let app = http::router(state.clone());
        let for_server = state.clone();
        let listener = CountingListener::new(listener, state.metrics.clone());
        let app = MakeEntry::new(app, state.clone());
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: draining requests");
                // Ends event streams, which would otherwise hold the drain open.
                for_server.shutdown.send_replace(true);
            })
            .await;
        state.shutdown.send_replace(true);
        if let Err(e) = proposer.await {
            tracing::warn!(error = %e, "proposer task ended abnormally");
        }
        if let Err(e) = catch_up.await {
            tracing::warn!(error = %e, "catch-up task ended abnormally");
        }
        if let Err(e) = probes.await {
            tracing::warn!(error = %e, "peer probe task ended abnormally");
        }
        // Fan-outs and announcements end on the shutdown signal; wait for them so none
        // touches the store after it is closed.
        consensus.network.tasks.close();
        if tokio::time::timeout(PEER_TASKS_GRACE, consensus.network.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("peer tasks still running at shutdown");
        }
        if let Err(e) = leadership.await {
            tracing::warn!(error = %e, "lease task ended abnormally");
        }
        // After the proposer: the lease goes only once no block is in flight.
        consensus
            .leadership
            .release(&state.store, &state.metrics)
            .await;
        state.store.close().await;
        tracing::info!("stopped");
        served.map_err(NodeError::Serve)
    }
}

/// How long shutdown waits for peer tasks (they stop at the shutdown signal).
const PEER_TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Pending connections the kernel queues before `accept`. The default of 128 overflowed
/// under bursts of new connections, and each dropped SYN cost its client a 1 s retry.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
