//! The validator network (`docs/protocol.md` §3.4): the peer validators and the peer
//! tasks under way (fan-outs, announcements).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bizra_ledger::genesis::Genesis;
use bizra_ledger::proposal::Proposal;
use bizra_ledger::Hash32;
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use crate::peers::breaker::BreakerConfig;
use crate::peers::set::PeerSet;

/// How long a validator waits for the votes on one of its blocks before it leaves the
/// block to the next look (its latest uncertified block is asked for again every slot).
pub(crate) const FANOUT_DEADLINE: Duration = Duration::from_secs(5);

/// Largest number of fan-outs running at once; past it a block's round is skipped and
/// the next look asks again. (Announcements are one per certified block, each bounded
/// by the deadline.)
pub(crate) const MAX_PEER_TASKS: usize = 64;

/// Proposals kept for peers that ask for them again (catch-up, gap fills).
const CACHED_PROPOSALS: usize = 8;

/// This node's view of the validator network.
pub(crate) struct Network {
    pub(crate) peers: PeerSet,
    /// Blocks whose votes are being asked for now (one fan-out per block at a time).
    in_flight: Mutex<HashSet<Hash32>>,
    /// The proposals last built or asked for, newest last.
    proposals: Mutex<Vec<Arc<Proposal>>>,
    /// Equivocations already filed as slashing entries, by (proposer, epoch, height).
    reported: Mutex<HashSet<(Hash32, u64, u64)>>,
    /// Every spawned peer task, so that shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Wakes the catch-up loop (a proposal or certificate named blocks this node lacks).
    pub(crate) catch_up: Notify,
    /// One gap fill at a time: proposals that find one under way wait for it.
    pub(crate) gap_fill: Arc<Semaphore>,
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
        // A configured URL that is a validator's address is that validator, once.
        let known = |u: &str| {
            peers
                .iter()
                .any(|(p, _)| p.trim_end_matches('/') == u.trim_end_matches('/'))
        };
        let extra: Vec<(String, Option<Hash32>)> = configured
            .iter()
            .filter(|u| !known(u))
            .map(|u| (u.clone(), None))
            .collect();
        peers.extend(extra);
        Ok(Network {
            peers: PeerSet::new(peers, call_timeout, breaker, metrics)?,
            in_flight: Mutex::new(HashSet::new()),
            proposals: Mutex::new(Vec::new()),
            reported: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
            catch_up: Notify::new(),
            gap_fill: Arc::new(Semaphore::new(1)),
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

    pub(crate) fn is_in_flight(&self, hash: &Hash32) -> bool {
        lock(&self.in_flight).contains(hash)
    }

    pub(super) fn cached_proposal(&self, hash: &Hash32) -> Option<Arc<Proposal>> {
        lock(&self.proposals)
            .iter()
            .rev()
            .find(|p| p.block.hash == *hash)
            .cloned()
    }

    pub(super) fn cache_proposal(&self, p: Arc<Proposal>) {
        let mut list = lock(&self.proposals);
        list.retain(|q| q.block.hash != p.block.hash);
        list.push(p);
        if list.len() > CACHED_PROPOSALS {
            list.remove(0);
        }
    }

    /// True the first time an equivocation at (proposer, epoch, height) is seen.
    pub(super) fn first_report(&self, proposer: Hash32, epoch: u64, height: u64) -> bool {
        lock(&self.reported).insert((proposer, epoch, height))
    }
}

/// These mutexes guard plain sets; a panic elsewhere cannot leave them inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
