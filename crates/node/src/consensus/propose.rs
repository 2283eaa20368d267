//! This validator's blocks (docs/protocol.md §3.3). At each look the proposer finds the
//! height above the highest height that holds certified blocks of 2/3 of the weight;
//! it proposes there once, when it has pending work, the DAG holds work not yet
//! committed, or another validator already opened that height; at least `min_height`
//! after its previous block; and, above a leader height, once the leader's block is
//! certified or `leader_timeout` has passed (at once for a leader that is unreachable,
//! has no block at the height below its own, or made no block at its last two leader
//! heights). An idle network makes no blocks.
//!
//! The block is stored with the record of its slot in one transaction: a restart never
//! makes a second block at a height it proposed at, it asks for votes on the first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bizra_ledger::block::{Block, BlockContent};
use bizra_ledger::consensus::committee::is_leader_height;
use bizra_ledger::registry::RegistryEntry;
use bizra_ledger::vote::{QcVote, QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use bizra_store::{Signing, Store, StoreError};
use serde_json::json;

use super::certify::{certify, CertifyError};
use super::chain::{Chain, ChainError};
use super::commit::{after_commits, flush};
use super::fanout::{load_proposal, proposal_for, solicit};
use super::Consensus;
use crate::clock::now_ms;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProposeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build a block: {0}")]
    Build(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Certify(#[from] CertifyError),
    #[error("the signing lease ran out")]
    NotSigner,
}

/// How often a replica that does not sign looks at what the signing replica stored.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Runs until shutdown: a look at least every slot (so that pending work is proposed
/// within a slot of its arrival), sooner when a full block's worth is pending or a block
/// was certified. Errors are logged and the next look retries: pending attestations stay
/// durable in the store meanwhile.
pub(crate) async fn run(state: Arc<Consensus>) {
    let mut shutdown = state.shutdown.clone();
    let mut last_own: Option<Instant> = None;
    let mut last_resolicit = Instant::now();
    let mut was_signer = state.leadership.is_leader();
    loop {
        let signer = state.leadership.is_leader();
        if signer && !was_signer {
            // Another replica signed until now: what it stored comes first.
            if let Err(e) = super::catchup::reload(&state).await {
                tracing::warn!(error = %e, "cannot rebuild the chain from the shared store");
                tokio::time::sleep(FOLLOW_EVERY).await;
                continue;
            }
        }
        was_signer = signer;
        let wait = if signer {
            match look(&state, &mut last_own).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "proposing failed; retrying");
                    state.settings.slot
                }
            }
        } else {
            if let Err(e) = super::catchup::follow_store(&state).await {
                tracing::warn!(error = %e, "following the signing replica's store failed; retrying");
            }
            FOLLOW_EVERY
        };
        // This node's latest block without a certificate is asked for again once a
        // slot: validators that were away vote for it now.
        if last_resolicit.elapsed() >= state.settings.slot {
            last_resolicit = Instant::now();
            resolicit(&state).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.pending.woken() => {}
            _ = state.certified.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    tracing::info!("proposer stopped");
}

/// One look: proposes if it is time. Returns how long until the next look is worth it.
async fn look(
    state: &Arc<Consensus>,
    last_own: &mut Option<Instant>,
) -> Result<Duration, ProposeError> {
    let mut chain = state.chain.lock().await;
    // Commits an earlier store failure left unwritten come first.
    flush(state, &mut chain).await?;
    after_commits(state, &mut chain).await?;
    if !chain.engine.committee().contains(&state.node_id) || state.is_behind() {
        return Ok(state.settings.slot);
    }
    let height = next_height(&chain);
    if height <= chain.own_height {
        // Waiting for the certificates of the height below.
        return Ok(state.settings.slot);
    }
    let pending = state.store.count_pending_attestations().await?;
    let entries = state.store.pending_registry_entries().await?;
    // Entries committed in this epoch apply only when a leader of a later epoch closes
    // it: once the clock is past the epoch, blocks go on until one does.
    let to_close = !chain.engine.committed_entries().is_empty()
        && chain.epoch_at(now_ms()) > chain.engine.epoch();
    // Another validator proposed at this height: joining it (with an empty block, if
    // need be) gives the height its quorum, so that whoever has work can go on above.
    let joined = someone_at(&chain, height, &state.node_id);
    if pending == 0 && entries.is_empty() && !to_close && !joined && !dag_has_work(&chain) {
        state.pending.none_left();
        return Ok(state.settings.slot);
    }
    if let Some(t) = last_own {
        let since = t.elapsed();
        if since < state.settings.min_height {
            return Ok(state.settings.min_height - since);
        }
    }
    if let Some(wait) = leader_wait(state, &chain, height) {
        return Ok(wait);
    }
    let to_send = propose_at(state, &mut chain, height, entries).await?;
    drop(chain);
    *last_own = Some(Instant::now());
    // The attestations' bodies are read for the peers outside the lock: votes and
    // certificates for other blocks go on meanwhile.
    if let Some(block) = to_send {
        let own = Vote::sign(block.hash, &state.key);
        match load_proposal(state, block).await {
            Ok(p) => solicit(state, Arc::new(p), own),
            Err(e) => tracing::warn!(error = %e, "cannot build the proposal for the peers"),
        }
    }
    Ok(state.settings.min_height)
}

/// One above the highest height holding certified blocks of 2/3 of the weight; 1 in an
/// epoch that has none.
fn next_height(chain: &Chain) -> u64 {
    let dag = chain.engine.dag();
    let committee = chain.engine.committee();
    let mut h = dag.max_height();
    while h >= dag.horizon() && h >= 1 {
        if committee.is_quorum(dag.weight_at(h, committee)) {
            return h + 1;
        }
        h -= 1;
    }
    1
}

/// Whether the DAG holds work that is not committed: certified or waiting blocks with
/// attestations or entries. While it does, heights go on (possibly with empty blocks)
/// until the work is committed.
fn dag_has_work(chain: &Chain) -> bool {
    let dag = chain.engine.dag();
    let committer = chain.engine.committer();
    let certified = (committer.horizon()..=dag.max_height()).any(|h| {
        dag.at(h).any(|(_, b)| {
            !committer.is_committed(b)
                && dag
                    .header(b)
                    .is_some_and(|hd| hd.att_count + hd.entries_count > 0)
        })
    });
    certified
        || chain
            .uncertified
            .values()
            .any(|b| b.header.att_count + b.header.entries_count > 0)
}

/// Whether another validator has a block (certified or not) at `height`.
fn someone_at(chain: &Chain, height: u64, me: &Hash32) -> bool {
    chain.engine.dag().at(height).any(|(p, _)| p != me)
        || chain
            .uncertified
            .values()
            .any(|b| b.header.height == height && b.header.proposer != *me)
}

/// How long to wait for the leader of the height below, if at all.
fn leader_wait(state: &Consensus, chain: &Chain, height: u64) -> Option<Duration> {
    let below = height.checked_sub(1)?;
    if !is_leader_height(below) {
        return None;
    }
    let committee = chain.engine.committee();
    let dag = chain.engine.dag();
    let leader = committee.leader(below)?;
    if leader == state.node_id || dag.block_of(below, &leader).is_some() {
        return None;
    }
    // A leader this node cannot reach is not waited for either.
    if state
        .network
        .peers
        .by_validator(&leader)
        .is_some_and(|p| p.reachable() == Some(false))
    {
        return None;
    }
    // Every live validator proposes at every height that opens (it joins the others), so
    // a leader without a certified block at the height below its own is down or far
    // behind: not waited for.
    if below >= 2 && below > dag.horizon() && dag.block_of(below - 1, &leader).is_none() {
        return None;
    }
    // Nor is a leader that made no block at its last two leader heights.
    let round = 2 * committee.len() as u64;
    let absent = [1u64, 2].iter().all(|k| {
        below
            .checked_sub(k * round)
            .filter(|h| *h >= dag.horizon().max(2))
            .is_some_and(|h| dag.block_of(h, &leader).is_none())
    });
    if absent {
        return None;
    }
    let since = chain.quorum_at.get(&below)?;
    let waited = now_ms().saturating_sub(*since);
    let timeout = state.settings.leader_timeout.as_millis() as u64;
    (waited < timeout).then(|| Duration::from_millis(timeout - waited))
}

/// Builds and stores this validator's block at `height`. Returns the block when it
/// needs the other validators' votes.
async fn propose_at(
    state: &Arc<Consensus>,
    chain: &mut Chain,
    height: u64,
    entries: Vec<bizra_store::RegistryEntry>,
) -> Result<Option<Block>, ProposeError> {
    let committee = chain.engine.committee();
    let parents = chain
        .engine
        .dag()
        .parents_for(height, committee)
        .ok_or_else(|| ProposeError::Build(format!("no quorum below height {height}")))?;
    let parent_time = parents
        .iter()
        .filter_map(|p| chain.engine.dag().header(p).map(|h| h.timestamp_ms))
        .max()
        .unwrap_or_else(|| chain.engine.dag().start_timestamp_ms());
    let ids = state
        .store
        .pending_attestations(state.settings.max_block_attestations as u32)
        .await?;
    // Entries that do not parse are left out of the block (they would not apply).
    let mut included: Vec<(u64, RegistryEntry, Hash32)> = Vec::new();
    for e in entries {
        match serde_json::from_value::<RegistryEntry>(e.body) {
            Ok(entry) => match entry.digest() {
                Ok(d) => {
                    if !included.iter().any(|(_, _, x)| *x == d) {
                        included.push((e.seq, entry, d));
                    }
                }
                Err(err) => {
                    tracing::error!(seq = e.seq, error = %err, "registry entry has no digest")
                }
            },
            Err(err) => {
                tracing::error!(seq = e.seq, error = %err, "stored registry entry does not parse")
            }
        }
    }
    let count = ids.len();
    let block = Block::propose(
        BlockContent {
            chain_id: chain.anchor.chain_id.clone(),
            epoch: chain.engine.epoch(),
            height,
            parents,
            attestation_ids: ids,
            entry_ids: included.iter().map(|(_, _, d)| *d).collect(),
            timestamp_ms: now_ms().max(parent_time + 1),
        },
        &state.key,
    )
    .map_err(|e| ProposeError::Build(e.to_string()))?;
    if !state.leadership.is_leader() {
        return Err(ProposeError::NotSigner);
    }
    let lease = state
        .leadership
        .shared()
        .then(|| (super::leadership::LEASE_NAME, state.leadership.holder()));
    let started = Instant::now();
    match state
        .store
        .insert_own_block(&block, now_ms(), lease)
        .await?
    {
        Signing::First | Signing::Again => {}
        Signing::Conflict { signed } => {
            // A block for this height was stored before a restart: that one is ours.
            tracing::info!(height, block = %signed, "this height was proposed before; asking for votes on that block");
            chain.own_height = chain.own_height.max(height);
            return Ok(state
                .store
                .get_block(&signed)
                .await?
                .filter(|sb| !sb.certified)
                .map(|sb| sb.block));
        }
    }
    if !included.is_empty() {
        let seqs: Vec<u64> = included.iter().map(|(s, _, _)| *s).collect();
        state
            .store
            .mark_registry_entries_included(&block.hash, &seqs)
            .await?;
    }
    state
        .metrics
        .block_write_seconds
        .observe(started.elapsed().as_secs_f64());
    state.metrics.blocks_produced.inc();
    chain.own_height = height;
    chain.note_block(&block);
    chain.uncertified.insert(block.hash, block.clone());
    state.pending.taken(count);
    state.events.publish(
        "block_proposed",
        json!({"hash": block.hash, "epoch": block.header.epoch, "height": height, "proposer": state.node_id, "att_count": count, "timestamp_ms": block.header.timestamp_ms}),
    );
    let committee = chain.engine.committee();
    if committee.is_quorum(committee.weight(&state.node_id)) {
        let own = Vote::sign(block.hash, &state.key);
        // This validator alone holds 2/3 of the weight: its vote certifies the block.
        let qc = QuorumCertificate {
            block_hash: block.hash,
            votes: vec![QcVote {
                validator_id: own.validator_id,
                signature: own.signature,
            }],
            weight: committee.weight(&state.node_id),
            total_weight: committee.total(),
        };
        certify(state, chain, &block, &qc).await?;
        return Ok(None);
    }
    state.publish_head(chain);
    Ok(Some(block))
}

/// Asks again for votes on this node's latest block that has no certificate.
async fn resolicit(state: &Arc<Consensus>) {
    let latest = {
        let chain = state.chain.lock().await;
        chain
            .uncertified
            .values()
            .filter(|b| b.header.proposer == state.node_id)
            .max_by_key(|b| b.header.height)
            .map(|b| b.hash)
    };
    let Some(hash) = latest else { return };
    if state.network.is_in_flight(&hash) {
        return;
    }
    match proposal_for(state, &hash).await {
        Ok(p) => solicit(state, p, Vote::sign(hash, &state.key)),
        Err(e) => tracing::warn!(block = %hash, error = %e, "cannot rebuild a proposal"),
    }
}
