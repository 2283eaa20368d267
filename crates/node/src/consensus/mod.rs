//! Consensus: the node's chain state and everything that changes it. The in-memory
//! chain ([`chain`]) is rebuilt from the store at start; the proposer's block producer
//! ([`producer`]) packs pending work into blocks and asks the peer validators for votes
//! ([`fanout`]); a validator checks proposals and votes ([`accept`]); certificates
//! finalize blocks on both sides ([`finality`]); a validator that was away pulls what
//! it missed ([`catchup`]); replicas on one shared store agree on one producer
//! ([`leadership`]). `docs/protocol.md` §3–§4 give the rules.

pub(crate) mod accept;
pub(crate) mod catchup;
pub(crate) mod chain;
pub(crate) mod fanout;
pub(crate) mod finality;
pub(crate) mod leadership;
pub(crate) mod network;
pub(crate) mod producer;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bizra_ledger::block::Block;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::genesis::Genesis;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;
use bizra_store::AnyStore;
use tokio::sync::{watch, Mutex};

use crate::cache::ResponseCache;
use crate::events::Events;
use crate::ingest::Pending;
use crate::metrics::Metrics;
use chain::{Chain, Head};
use leadership::Leadership;
use network::Network;

/// The settings consensus runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) slot: Duration,
    pub(crate) max_block_attestations: usize,
}

/// What every consensus task shares: the chain behind its lock, the snapshot readers
/// load, the validator network, and the node's identity.
pub(crate) struct Consensus {
    pub(crate) store: AnyStore,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) events: Events,
    /// Head views are dropped when the head moves (they could no longer be asked for).
    cache: Arc<ResponseCache>,
    /// The node's validator key.
    pub(crate) key: Keypair,
    pub(crate) node_id: Hash32,
    pub(crate) genesis: Genesis,
    pub(crate) genesis_block: Block,
    pub(crate) anchor: NetworkAnchor,
    /// Whether this node proposes blocks (it is the first validator of the genesis).
    pub(crate) is_proposer: bool,
    /// Peers, the proposer's identity, and the peer tasks under way.
    pub(crate) network: Network,
    /// Whether this replica produces blocks (holds the store's producer lease).
    pub(crate) leadership: Arc<Leadership>,
    /// Written by the consensus tasks only; readers use `head`.
    pub(crate) chain: Mutex<Chain>,
    pub(crate) head: ArcSwap<Head>,
    /// Accepted attestations not yet in a block, as the submit path counts them.
    pub(crate) pending: Arc<Pending>,
    pub(crate) settings: Settings,
    /// Turns true when the node begins to shut down.
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// What [`Consensus::new`] is built from.
pub(crate) struct Parts {
    pub(crate) store: AnyStore,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) events: Events,
    pub(crate) cache: Arc<ResponseCache>,
    pub(crate) key: Keypair,
    pub(crate) chain: Chain,
    pub(crate) network: Network,
    pub(crate) pending: Arc<Pending>,
    pub(crate) settings: Settings,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Consensus {
    pub(crate) fn new(p: Parts) -> Consensus {
        let node_id = p.key.public().validator_id();
        let genesis = p.chain.genesis.clone();
        let is_proposer = genesis
            .validators
            .first()
            .is_some_and(|v| v.validator_id() == node_id);
        let head = p.chain.head(crate::clock::now_ms());
        Consensus {
            leadership: Leadership::new(&p.store, &node_id.to_hex()),
            genesis_block: p.chain.genesis_block.clone(),
            anchor: p.chain.anchor.clone(),
            genesis,
            store: p.store,
            metrics: p.metrics,
            events: p.events,
            cache: p.cache,
            key: p.key,
            node_id,
            is_proposer,
            network: p.network,
            chain: Mutex::new(p.chain),
            head: ArcSwap::from_pointee(head),
            pending: p.pending,
            settings: p.settings,
            shutdown: p.shutdown,
        }
    }

    /// Publishes a new head snapshot from `chain` and updates the chain gauges.
    pub(crate) fn publish_head(&self, chain: &Chain) {
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
