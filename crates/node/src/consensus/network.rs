//! The validator network (`docs/protocol.md` §3.4): the peer validators, which of them
//! proposes, and the peer tasks under way (fan-outs, announcements).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bizra_ledger::crypto::PublicKey;
use bizra_ledger::genesis::Genesis;
use bizra_ledger::proposal::Proposal;
use bizra_ledger::Hash32;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::peers::breaker::BreakerConfig;
use crate::peers::set::PeerSet;

/// How long the proposer waits for the votes on one block before it leaves the block
/// to the next round (every slot, the newest block that is not final is asked again).
pub(crate) const FANOUT_DEADLINE: Duration = Duration::from_secs(5);

/// Largest number of fan-outs running at once; past it a block's round is skipped and
/// the next slot asks again. (Announcements are one per finalized block, each bounded by
/// the deadline.)
pub(crate) const MAX_PEER_TASKS: usize = 64;

/// This node's view of the validator network.
pub(crate) struct Network {
    pub(crate) peers: PeerSet,
    /// The key that signs every block: the genesis file's first validator.
    pub(crate) proposer: PublicKey,
    pub(crate) proposer_id: Hash32,
    /// Blocks whose votes are being asked for now (one fan-out per block at a time).
    in_flight: Mutex<HashSet<Hash32>>,
    /// The proposal last built, reused while the same block is asked again.
    last_proposal: Mutex<Option<Arc<Proposal>>>,
    /// Equivocations already filed as slashing entries, by (proposer, height).
    reported: Mutex<HashSet<(Hash32, u64)>>,
    /// Every spawned peer task, so that shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Wakes the catch-up loop (a proposal named parents this node lacks).
    pub(crate) catch_up: Notify,
}

impl Network {
    /// Peers: every genesis validator but this node, at its network address, and the
    /// configured peer URLs.
    pub(crate) fn new(
        genesis: &Genesis,
        node_id: &Hash32,
        configured: &[String],
        call_timeout: Duration,
        breaker: BreakerConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Network, reqwest::Error> {
        let mut peers: Vec<(String, Option<Hash32>)> = genesis
            .validators
            .iter()
            .filter(|v| v.validator_id() != *node_id)
            .map(|v| (v.network_address.clone(), Some(v.validator_id())))
            .collect();
        peers.extend(configured.iter().map(|u| (u.clone(), None)));
        let proposer = genesis
            .validators
            .first()
            .map(|v| v.pubkey_ed25519)
            .unwrap_or(PublicKey([0; 32]));
        Ok(Network {
            peers: PeerSet::new(peers, call_timeout, breaker, metrics)?,
            proposer,
            proposer_id: proposer.validator_id(),
            in_flight: Mutex::new(HashSet::new()),
            last_proposal: Mutex::new(None),
            reported: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
            catch_up: Notify::new(),
        })
    }

    /// Marks `hash` as being asked for; false when a fan-out for it already runs or too
    /// many do.
    pub(super) fn begin(&self, hash: Hash32) -> bool {
        let mut set = lock(&self.in_flight);
        set.len() < MAX_PEER_TASKS && set.insert(hash)
    }

    pub(super) fn end(&self, hash: &Hash32) {
        lock(&self.in_flight).remove(hash);
    }

    /// The proposer among the peers, when the genesis gives its address.
    pub(crate) fn proposer_peer(&self) -> Option<Arc<crate::peers::set::Peer>> {
        self.peers.by_validator(&self.proposer_id).cloned()
    }

    pub(crate) fn is_in_flight(&self, hash: &Hash32) -> bool {
        lock(&self.in_flight).contains(hash)
    }

    pub(super) fn cached_proposal(&self, hash: &Hash32) -> Option<Arc<Proposal>> {
        lock(&self.last_proposal)
            .as_ref()
            .filter(|p| p.block.hash == *hash)
            .cloned()
    }

    pub(super) fn cache_proposal(&self, p: Arc<Proposal>) {
        *lock(&self.last_proposal) = Some(p);
    }

    /// True the first time an equivocation at (proposer, height) is seen.
    pub(super) fn first_report(&self, proposer: Hash32, height: u64) -> bool {
        lock(&self.reported).insert((proposer, height))
    }
}

/// These mutexes guard plain sets; a panic elsewhere cannot leave them inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
