//! Consensus (docs/protocol.md §3): every validator proposes. The pure engine
//! (`bizra_ledger::consensus`) holds the rules; this module runs them against the store
//! and the network.
//!
//! - [`chain`]: the in-memory state and the head snapshot readers load; [`replay`]
//!   rebuilds it from the store at start.
//! - [`propose`]: this validator's block at each height, when it has work or the DAG
//!   has work not yet committed; [`fanout`] sends it to the other validators and turns
//!   their votes into a certificate.
//! - [`vote`]: another validator's block checked and voted for, at most once per
//!   (epoch, height, proposer), the vote's slot recorded in the store before it is sent.
//! - [`certify`]: a certified block enters the DAG; [`commit`] writes what the commit
//!   rule then commits, in ledger order.
//! - [`catchup`]: a validator that was away pulls certified blocks from any peers.
//! - [`leadership`]: replicas on one shared store agree on the one that signs.

pub(crate) mod catchup;
pub(crate) mod certify;
pub(crate) mod chain;
pub(crate) mod commit;
pub(crate) mod fanout;
pub(crate) mod leadership;
pub(crate) mod network;
pub(crate) mod propose;
pub(crate) mod replay;
pub(crate) mod vote;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bizra_ledger::block::Block;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::genesis::Genesis;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::registry::{Registry, ValidatorStatus};
use bizra_ledger::Hash32;
use bizra_store::AnyStore;
use tokio::sync::{watch, Mutex, Notify};

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
    /// Least time between two of this validator's blocks.
    pub(crate) min_height: Duration,
    /// Longest wait for the leader's block before proposing above a leader height.
    pub(crate) leader_timeout: Duration,
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
    /// Peers and the peer tasks under way.
    pub(crate) network: Network,
    /// Whether this replica signs (holds the store's lease).
    pub(crate) leadership: Arc<Leadership>,
    /// Written by the consensus tasks only; readers use `head`.
    pub(crate) chain: Mutex<Chain>,
    pub(crate) head: ArcSwap<Head>,
    /// Accepted attestations not yet in a block, as the submit path counts them.
    pub(crate) pending: Arc<Pending>,
    /// Wakes the proposer: a block was certified, so a new height may be open.
    pub(crate) certified: Notify,
    /// Until when (ms) this node knows it is behind the network (a block of a later
    /// epoch came in, or catch-up found blocks it lacked): it does not propose then,
    /// since its blocks would cite a past it alone is still in.
    pub(crate) behind_until_ms: std::sync::atomic::AtomicU64,
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
        let head = p.chain.head(crate::clock::now_ms());
        add_registered_peers(&p.network, &head.registry, &node_id);
        Consensus {
            leadership: Leadership::new(&p.store, &node_id.to_hex()),
            genesis: p.chain.genesis.clone(),
            genesis_block: p.chain.genesis_block.clone(),
            anchor: p.chain.anchor.clone(),
            store: p.store,
            metrics: p.metrics,
            events: p.events,
            cache: p.cache,
            key: p.key,
            node_id,
            network: p.network,
            chain: Mutex::new(p.chain),
            head: ArcSwap::from_pointee(head),
            pending: p.pending,
            certified: Notify::new(),
            behind_until_ms: std::sync::atomic::AtomicU64::new(0),
            settings: p.settings,
            shutdown: p.shutdown,
        }
    }

    /// Whether this node is in the current epoch's committee.
    pub(crate) fn is_validator(&self) -> bool {
        self.head
            .load()
            .registry
            .get(&self.node_id)
            .is_some_and(|r| {
                matches!(
                    r.status,
                    bizra_ledger::registry::ValidatorStatus::Active
                        | bizra_ledger::registry::ValidatorStatus::Exiting
                )
            })
    }

    /// Notes that this node is behind the network, for the next two slots.
    pub(crate) fn note_behind(&self) {
        let until = crate::clock::now_ms() + 2 * self.settings.slot.as_millis() as u64;
        self.behind_until_ms
            .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn is_behind(&self) -> bool {
        self.behind_until_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            > crate::clock::now_ms()
    }

    /// Publishes a new head snapshot from `chain` and updates the chain gauges.
    pub(crate) fn publish_head(&self, chain: &Chain) {
        let mut head = chain.head(crate::clock::now_ms());
        let before = self.head.load();
        head.version = before.version + 1;
        // The registry changes only when an epoch begins.
        if head.epoch != before.epoch {
            add_registered_peers(&self.network, &head.registry, &self.node_id);
        }
        self.metrics.chain_height.set(head.height as i64);
        self.metrics
            .finalized_height
            .set(head.finalized_height as i64);
        self.metrics
            .finality_lag_blocks
            .set(head.height.saturating_sub(head.finalized_height) as i64);
        self.metrics.ledger_size.set(head.ledger_len as i64);
        self.metrics.epoch.set(head.epoch as i64);
        self.head.store(Arc::new(head));
        // Views of older heads can no longer be asked for; drop them now, not at TTL.
        self.cache.invalidate_views();
    }
}

/// Makes every registered validator but this node a peer: one that registered after
/// genesis is probed from the time it is pending, and asked for votes once active, as
/// the genesis validators are.
fn add_registered_peers(network: &Network, registry: &Registry, node_id: &Hash32) {
    let list: Vec<(Hash32, String)> = registry
        .list(None)
        .into_iter()
        .filter(|r| r.validator_id != *node_id)
        .filter(|r| {
            matches!(
                r.status,
                ValidatorStatus::Pending | ValidatorStatus::Active | ValidatorStatus::Exiting
            )
        })
        .map(|r| (r.validator_id, r.network_address.clone()))
        .collect();
    network.peers.add_validators(&list);
}
