//! A validator that was away (or is new) pulls the certified blocks it lacks from any
//! peer that answers (docs/protocol.md §5.3): each block is checked as a proposal is, its
//! certificate against the epoch's committee, then certified here, so the commits follow
//! as they did everywhere. Peers are tried in turn from a random one; one that fails is
//! left for the next.
//!
//! A replica that does not hold the signing lease on a shared store follows that store
//! instead ([`follow_store`]).

use std::sync::Arc;
use std::time::Duration;

use bizra_ledger::proposal::Proposal;
use bizra_ledger::vote::{QcVote, QuorumCertificate};
use bizra_ledger::Hash32;
use bizra_store::{Store, StoreError};
use futures::StreamExt;
use serde::Deserialize;

use super::certify::{certify_stored, check_certificate, CertifyError};
use super::chain::ChainError;
use super::vote::{check_content, store_checked, VoteError};
use super::Consensus;
use crate::peers::set::{Peer, PeerError};

/// How often a validator looks for blocks it missed when nothing woke it sooner.
pub(crate) const CATCH_UP_EVERY: Duration = Duration::from_secs(2);

/// Most a proposal waits while its validator fetches the parents it lacks.
pub(crate) const GAP_FILL_DEADLINE: Duration = Duration::from_secs(2);

/// Blocks per page asked from a peer.
const PAGE: u32 = 100;

/// Proposals fetched ahead of the one being checked.
const PREFETCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatchUpError {
    #[error("peer: {0}")]
    Peer(#[from] PeerError),
    #[error("block {hash} from {peer} refused: {source}")]
    Block {
        hash: Hash32,
        peer: String,
        source: VoteError,
    },
    #[error("block {hash} from {peer} not certified: {source}")]
    Certify {
        hash: Hash32,
        peer: String,
        source: CertifyError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("no peer answered")]
    NoPeer,
    #[error("the pull task failed: {0}")]
    Task(String),
}

#[derive(Debug, Deserialize)]
struct RemotePage {
    items: Vec<RemoteBlock>,
    next_from_height: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RemoteBlock {
    hash: Hash32,
    header: bizra_ledger::block::BlockHeader,
    qc: Option<RemoteQc>,
}

#[derive(Debug, Deserialize)]
struct RemoteQc {
    votes: Vec<QcVote>,
}

/// Asks every peer's `/health` once a slot (through open breakers too, as probes), so
/// that reachability, and `/api/consensus/health`, follow the peers within a slot even
/// when no block is being sent. Each peer has a loop of its own, so that a peer whose
/// calls hang until their timeout delays nobody else's probes; a peer added later (a
/// validator the registry activated) gets its loop within a slot.
pub(crate) async fn probe_peers(state: Arc<Consensus>) {
    let mut shutdown = state.shutdown.clone();
    let mut probed: Vec<Arc<Peer>> = Vec::new();
    loop {
        probed.retain(|p| state.network.peers.contains(p));
        for peer in state.network.peers.peers().iter() {
            if !probed.iter().any(|p| Arc::ptr_eq(p, peer)) {
                probed.push(peer.clone());
                state
                    .network
                    .tasks
                    .spawn(probe_peer(state.clone(), peer.clone()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(state.settings.slot) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

async fn probe_peer(state: Arc<Consensus>, peer: Arc<Peer>) {
    /// Answers in a row without a slot's wait, at most: more than the breaker needs.
    const AT_ONCE: u32 = 8;
    let mut shutdown = state.shutdown.clone();
    let mut in_a_row = 0;
    // A peer replaced in the set (named again under its validator id) stops here.
    while state.network.peers.contains(&peer) {
        let answered = tokio::select! {
            r = state.network.peers.get_json_probe::<serde_json::Value>(&peer, "/health") => r.is_ok(),
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        // A peer that answers while its breaker is not closed yet is asked again at
        // once: the breaker closes after a few answers in a row, and a validator that
        // came back should count within a slot, not a few.
        if answered
            && in_a_row < AT_ONCE
            && peer.breaker_state() != crate::peers::breaker::BreakerState::Closed
        {
            in_a_row += 1;
            continue;
        }
        in_a_row = 0;
        tokio::select! {
            _ = tokio::time::sleep(state.settings.slot) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// The weight of the committee members this node reaches: itself, and each peer whose
/// last call got an answer.
pub(crate) fn reachable_weight(state: &Consensus, head: &super::chain::Head) -> u64 {
    let registry = &head.registry;
    let weight_of = |id: &Hash32| {
        registry
            .get(id)
            .filter(|r| {
                matches!(
                    r.status,
                    bizra_ledger::registry::ValidatorStatus::Active
                        | bizra_ledger::registry::ValidatorStatus::Exiting
                )
            })
            .map_or(0, |r| r.effective_weight())
    };
    let own = weight_of(&state.node_id);
    state
        .network
        .peers
        .peers()
        .iter()
        .filter(|p| p.reachable() == Some(true))
        .filter_map(|p| p.validator_id.as_ref())
        .map(weight_of)
        .fold(own, u64::saturating_add)
}

/// Runs until shutdown.
pub(crate) async fn run(state: Arc<Consensus>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        if state.leadership.is_leader() && !state.network.peers.is_empty() {
            match catch_up(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(blocks = n, "caught up"),
                Err(e) => tracing::debug!(error = %e, "catch-up failed; retrying"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CATCH_UP_EVERY) => {}
            _ = state.network.catch_up.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// The peer validators in an order that starts at a random one.
fn peers_in_turn(state: &Consensus) -> Vec<Arc<Peer>> {
    let peers: Vec<Arc<Peer>> = state
        .network
        .peers
        .peers()
        .iter()
        .filter(|p| p.validator_id.is_some())
        .cloned()
        .collect();
    if peers.is_empty() {
        return peers;
    }
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let start = (u64::from_le_bytes(seed) % peers.len() as u64) as usize;
    peers[start..]
        .iter()
        .chain(&peers[..start])
        .cloned()
        .collect()
}

/// Pulls from the first peer that answers. Returns how many blocks it certified here.
pub(crate) async fn catch_up(state: &Arc<Consensus>) -> Result<usize, CatchUpError> {
    let mut last = CatchUpError::NoPeer;
    for peer in peers_in_turn(state) {
        match pull_from(state, &peer).await {
            Ok(n) => return Ok(n),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Pulls from the proposer of a proposal that named parents this node lacks, so that
/// the proposal can be checked again, waiting at most [`GAP_FILL_DEADLINE`].
///
/// The pull runs in a task of its own and goes on past the deadline: it certifies and
/// commits as it goes, and a commit dropped between the store's write and the chain's
/// record of it would leave memory behind the store. One pull at a time; a proposal that
/// finds one under way waits for it instead of starting another.
pub(crate) async fn fill_gap(
    state: &Arc<Consensus>,
    proposer: &Hash32,
) -> Result<usize, CatchUpError> {
    let gate = state.network.gap_fill.clone();
    let Ok(permit) = gate.clone().try_acquire_owned() else {
        return match tokio::time::timeout(GAP_FILL_DEADLINE, gate.acquire()).await {
            Ok(_) => Ok(0),
            Err(_) => Err(CatchUpError::Peer(PeerError::Timeout)),
        };
    };
    let peer = state.network.peers.by_validator(proposer);
    let task_state = state.clone();
    let pull = tokio::spawn(async move {
        let _permit = permit;
        match peer {
            Some(peer) => pull_from(&task_state, &peer).await,
            None => catch_up(&task_state).await,
        }
    });
    match tokio::time::timeout(GAP_FILL_DEADLINE, pull).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(CatchUpError::Task(e.to_string())),
        Err(_) => Err(CatchUpError::Peer(PeerError::Timeout)),
    }
}

/// Every certified block of this node's epoch, from its commit window up, that `peer`
/// has and this node lacks; across epochs when the commits close one on the way.
async fn pull_from(state: &Arc<Consensus>, peer: &Peer) -> Result<usize, CatchUpError> {
    let peers = &state.network.peers;
    let mut certified = 0;
    let (mut epoch, mut from) = window(state).await;
    loop {
        let page: RemotePage = peers
            .get_json(
                peer,
                &format!("/api/consensus/blocks?epoch={epoch}&from_height={from}&limit={PAGE}"),
            )
            .await?;
        // The certified blocks this node lacks, their proposals fetched a few at a time
        // ahead of the checks (which go one by one, in height order).
        let mut wanted = Vec::new();
        {
            let chain = state.chain.lock().await;
            for b in &page.items {
                let Some(qc) = &b.qc else { continue };
                if b.header.height == 0 || b.header.epoch != epoch {
                    continue;
                }
                if !chain.engine.dag().contains(&b.hash) {
                    wanted.push((b.hash, qc.votes.clone()));
                }
            }
        }
        let mut fetched =
            futures::stream::iter(wanted.into_iter().map(|(hash, votes)| async move {
                let p = peers
                    .get_json::<Proposal>(peer, &format!("/api/consensus/block/{hash}/proposal"))
                    .await;
                (hash, votes, p)
            }))
            .buffered(PREFETCH);
        while let Some((hash, votes, proposal)) = fetched.next().await {
            let proposal = proposal?;
            if proposal.block.hash != hash {
                return Err(CatchUpError::Block {
                    hash,
                    peer: peer.url.clone(),
                    source: VoteError::Dag(
                        bizra_ledger::consensus::dag::DagError::CertificateBlock {
                            expected: hash,
                            got: proposal.block.hash,
                        },
                    ),
                });
            }
            let qc = QuorumCertificate {
                block_hash: hash,
                votes,
                weight: 0,
                total_weight: 0,
            };
            accept_certified(state, Arc::new(proposal), &qc)
                .await
                .map_err(|e| match e {
                    Accepted::Vote(source) => CatchUpError::Block {
                        hash,
                        peer: peer.url.clone(),
                        source,
                    },
                    Accepted::Certify(source) => CatchUpError::Certify {
                        hash,
                        peer: peer.url.clone(),
                        source,
                    },
                })?;
            certified += 1;
            state.note_behind();
        }
        tracing::debug!(peer = %peer.url, epoch, from, items = page.items.len(), certified, next = ?page.next_from_height, "catch-up page");
        let (now_epoch, _) = window(state).await;
        if now_epoch != epoch {
            // A commit on the way closed the epoch: go on with the next one.
            epoch = now_epoch;
            from = 1;
            continue;
        }
        match page.next_from_height {
            Some(next) if next > from => from = next,
            _ => break,
        }
    }
    Ok(certified)
}

/// This node's epoch and the lowest height a commit can still reach.
async fn window(state: &Arc<Consensus>) -> (u64, u64) {
    let chain = state.chain.lock().await;
    (
        chain.engine.epoch(),
        chain
            .engine
            .committer()
            .horizon()
            .max(chain.engine.dag().horizon()),
    )
}

/// Why a certified block from a peer was not taken.
pub(crate) enum Accepted {
    Vote(VoteError),
    Certify(CertifyError),
}

/// Checks a certified block from a peer as a proposal (content, DAG) and its
/// certificate, stores it and certifies it here.
pub(crate) async fn accept_certified(
    state: &Arc<Consensus>,
    proposal: Arc<Proposal>,
    qc: &QuorumCertificate,
) -> Result<(), Accepted> {
    check_content(state, &proposal)
        .await
        .map_err(Accepted::Vote)?;
    let mut chain = state.chain.lock().await;
    if chain.engine.dag().contains(&proposal.block.hash) {
        return Ok(());
    }
    let qc = match check_certificate(&chain, &proposal.block, qc) {
        Ok(qc) => qc,
        // Its parents are not here yet: `certify` says which.
        Err(CertifyError::Dag(bizra_ledger::consensus::dag::DagError::UnknownParent(_))) => {
            qc.clone()
        }
        Err(e) => return Err(Accepted::Certify(e)),
    };
    let fresh = store_checked(state, &mut chain, &proposal, None, Some(&qc))
        .await
        .map_err(Accepted::Vote)?;
    certify_stored(state, &mut chain, &proposal.block, &qc, fresh)
        .await
        .map_err(Accepted::Certify)?;
    Ok(())
}

/// A replica that does not sign rebuilds its state from the shared store when the
/// signing replica committed more.
pub(crate) async fn follow_store(state: &Arc<Consensus>) -> Result<(), ChainError> {
    let stored = state.store.ledger_len().await?;
    let blocks = state.store.committed_blocks().await?.len() as u64;
    {
        let chain = state.chain.lock().await;
        if stored == chain.ledger_len && blocks == chain.commit_seq {
            return Ok(());
        }
    }
    reload(state).await
}

/// Rebuilds the chain from the store (a replica that begins to sign after another did,
/// or one that follows).
pub(crate) async fn reload(state: &Arc<Consensus>) -> Result<(), ChainError> {
    let mut chain = state.chain.lock().await;
    let params = chain.engine.params();
    let fresh = super::replay::load(
        chain.genesis.clone(),
        &state.store,
        params,
        &state.node_id,
        state.leadership.is_leader(),
    )
    .await?;
    *chain = fresh;
    state.publish_head(&chain);
    Ok(())
}
