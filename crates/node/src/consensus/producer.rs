//! The block producer (docs/protocol.md §3.3, §3.4): every slot, or as soon as
//! `max_block_attestations` are pending, pack pending attestations into a block on the
//! current tips, store it, vote for it as a validator and finalize it once the votes
//! reach the threshold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bizra_ledger::block::{Block, BlockContent};
use bizra_ledger::registry::RegistryEntry;
use bizra_ledger::vote::Vote;
use bizra_ledger::Hash32;
use bizra_store::{Store, StoreError};
use serde_json::json;

use super::fanout::{load_proposal, resolicit, solicit};
use super::finality::{count_vote, publish_finalized, FinalityStepError};
use super::Consensus;
use crate::clock::now_ms;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProduceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build a block: {0}")]
    Build(String),
    #[error(transparent)]
    Chain(#[from] super::chain::ChainError),
    #[error("the producer lease ran out")]
    NotLeader,
}

/// One catch-up with the producing replica's blocks (see [`super::chain::Chain::follow`]).
pub(crate) async fn follow(state: &Arc<Consensus>) -> Result<(), ProduceError> {
    let mut chain = state.chain.lock().await;
    let epoch = chain.epoch_at(now_ms());
    let reports = chain.advance_registry(epoch);
    let followed = chain.follow(&state.store).await?;
    if !followed.is_empty() || !reports.is_empty() {
        announce_followed(state, &chain, &followed);
    }
    Ok(())
}

/// Events and a new head for blocks and finality learned from the store.
fn announce_followed(
    state: &Arc<Consensus>,
    chain: &super::chain::Chain,
    followed: &super::chain::Followed,
) {
    for hash in &followed.blocks {
        if let Some(h) = chain.dag.header(hash) {
            state.events.publish(
                "block_proposed",
                json!({"hash": hash, "height": h.height, "att_count": h.att_count, "timestamp_ms": h.timestamp_ms}),
            );
        }
    }
    for hash in &followed.finalized {
        publish_finalized(state, chain, hash);
    }
    state.publish_head(chain);
}

/// How often a replica that does not produce looks for blocks the producer stored.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Runs until `shutdown` turns true. Errors are logged and retried next slot: pending
/// attestations stay durable in the store meanwhile. A replica that does not hold the
/// producer lease (several replicas on one PostgreSQL store) follows the chain instead.
pub(crate) async fn run(state: Arc<Consensus>) {
    let mut shutdown = state.shutdown.clone();
    if !state.is_proposer {
        tracing::info!("not the proposer of this network: block production is off");
        return;
    }
    let slot = state.settings.slot;
    let every = if state.leadership.shared() {
        slot.min(FOLLOW_EVERY)
    } else {
        slot
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_slot = Instant::now();
    loop {
        let woken = tokio::select! {
            _ = tick.tick() => false,
            _ = state.pending.woken() => true,
            _ = shutdown.changed() => break,
        };
        if *shutdown.borrow() {
            break;
        }
        if !state.leadership.is_leader() {
            if let Err(e) = follow(&state).await {
                tracing::warn!(error = %e, "following the producer's blocks failed; retrying");
            }
            continue;
        }
        // The tick may be shorter than a slot (to follow quickly); a leader still makes
        // at most one block per slot unless enough attestations wake it. Half a tick of
        // tolerance: ticks fire a hair early relative to `last_slot`, and comparing with
        // the slot alone skipped every other one (blocks every two slots).
        if !woken && last_slot.elapsed() + every / 2 < slot {
            continue;
        }
        last_slot = Instant::now();
        loop {
            match produce_once(&state).await {
                // A full block: more may be waiting, go again without waiting a slot.
                Ok(Some(n)) if n >= state.settings.max_block_attestations => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "block production failed; retrying next slot");
                    break;
                }
            }
        }
        // Validators that were away or catching up are asked again, once a slot.
        resolicit(&state).await;
    }
    tracing::info!("block producer stopped");
}

/// Makes at most one block. Returns how many attestations it holds (`None`: nothing was
/// pending).
pub(crate) async fn produce_once(state: &Arc<Consensus>) -> Result<Option<usize>, ProduceError> {
    let max = state.settings.max_block_attestations;
    // Holding the chain lock across the store calls keeps blocks in order; readers never
    // take this lock.
    let mut chain = state.chain.lock().await;
    // Finality an earlier store outage left in memory only is written first.
    super::finality::save_unsaved(state, &mut chain).await?;
    if state.leadership.shared() {
        // Blocks a previous leader stored before this replica took over come first.
        let followed = chain.follow(&state.store).await?;
        if !followed.is_empty() {
            announce_followed(state, &chain, &followed);
        }
    }
    let epoch = chain.epoch_at(now_ms());
    let reports = chain.advance_registry(epoch);
    if !reports.is_empty() {
        for r in &reports {
            if !r.activated.is_empty() || !r.exited.is_empty() {
                state.events.publish(
                    "validator_update",
                    json!({"epoch": r.epoch, "activated": r.activated, "exited": r.exited}),
                );
            }
        }
        state.publish_head(&chain);
    }
    let pending = state.store.pending_attestations(max as u32).await?;
    let (entries, unreadable) = includable(state.store.pending_registry_entries().await?);
    if pending.is_empty() && entries.is_empty() {
        state.pending.none_left();
        return Ok(None);
    }
    // Logged once per block made, not once per slot: they stay pending.
    for (seq, why) in &unreadable {
        tracing::error!(seq, error = %why, "stored registry entry does not parse; left out of the block");
    }
    let parents = chain.dag.next_parents();
    let parent_time = parents
        .iter()
        .filter_map(|p| chain.dag.header(p).map(|h| h.timestamp_ms))
        .max()
        .unwrap_or(0);
    let timestamp = now_ms().max(parent_time);
    // Entries apply at the epoch of the block's own timestamp, as a restart replays them.
    let block_epoch = chain.epoch_at(timestamp);
    chain.advance_registry(block_epoch);
    let count = pending.len();
    let block = Block::propose(
        BlockContent {
            chain_id: chain.dag.chain_id().to_string(),
            epoch: block_epoch,
            height: chain.dag.next_height(),
            parents,
            attestation_ids: pending,
            entry_ids: entries.iter().map(|e| e.id).collect(),
            timestamp_ms: timestamp,
        },
        &state.key,
    )
    .map_err(|e| ProduceError::Build(e.to_string()))?;
    chain
        .dag
        .check(&block)
        .map_err(|e| ProduceError::Build(e.to_string()))?;

    if !state.leadership.is_leader() {
        // The lease ran out while this block was being built: another replica may be
        // producing now. Its attestations stay pending for whoever leads.
        return Err(ProduceError::NotLeader);
    }
    let created = now_ms();
    let started = std::time::Instant::now();
    state
        .store
        .insert_block_fenced(
            &block,
            created,
            super::leadership::LEASE_NAME,
            state.leadership.holder(),
        )
        .await?;
    state
        .metrics
        .block_write_seconds
        .observe(started.elapsed().as_secs_f64());
    chain
        .dag
        .insert(&block)
        .map_err(|e| ProduceError::Build(e.to_string()))?;
    chain.note_block(&block);
    state.metrics.blocks_produced.inc();
    // The proposal carries exactly the block's entries, in block order.
    let proposal_entries: Vec<RegistryEntry> = entries.iter().map(|e| e.entry.clone()).collect();
    if !entries.is_empty() {
        apply_registry_entries(state, &mut chain, &block.hash, entries).await?;
    }
    state.pending.taken(count);
    state.events.publish(
        "block_proposed",
        json!({"hash": block.hash, "height": block.header.height, "att_count": count, "timestamp_ms": timestamp}),
    );

    let vote = Vote::sign(block.hash, &state.key);
    let finalized = match count_vote(state, &mut chain, &vote).await {
        Ok(qc) => qc.is_some(),
        Err(FinalityStepError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "own vote not counted");
            false
        }
    };
    state.publish_head(&chain);
    drop(chain);
    if !finalized && !state.network.peers.is_empty() {
        // The attestations were just read for this block; the peers get them from here.
        match load_proposal(state, block, proposal_entries).await {
            Ok(p) => solicit(state, Arc::new(p)),
            Err(e) => tracing::warn!(error = %e, "cannot build the proposal for the peers"),
        }
    }
    Ok(Some(count))
}

/// A pending registry entry that can go into a block: parsed, with its digest.
struct Includable {
    seq: u64,
    entry: RegistryEntry,
    id: Hash32,
}

/// The pending entries a block can include, in filing order, and those it cannot (with
/// why): an entry that does not parse has no digest the header could commit to.
fn includable(pending: Vec<bizra_store::RegistryEntry>) -> (Vec<Includable>, Vec<(u64, String)>) {
    let mut ok = Vec::with_capacity(pending.len());
    let mut unreadable = Vec::new();
    for e in pending {
        let parsed = serde_json::from_value::<RegistryEntry>(e.body)
            .map_err(|err| err.to_string())
            .and_then(|entry| {
                let id = entry.digest().map_err(|err| err.to_string())?;
                Ok((entry, id))
            });
        match parsed {
            Ok((entry, id)) => ok.push(Includable {
                seq: e.seq,
                entry,
                id,
            }),
            Err(why) => unreadable.push((e.seq, why)),
        }
    }
    (ok, unreadable)
}

/// Places the block's registry entries in it and applies them to the registry, in block
/// order.
async fn apply_registry_entries(
    state: &Arc<Consensus>,
    chain: &mut super::chain::Chain,
    block: &Hash32,
    entries: Vec<Includable>,
) -> Result<(), ProduceError> {
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    state
        .store
        .mark_registry_entries_included(block, &seqs)
        .await?;
    let parsed: Vec<(u64, RegistryEntry)> = entries.into_iter().map(|e| (e.seq, e.entry)).collect();
    for (seq, result) in chain.apply_entries(&parsed) {
        match result {
            Ok(applied) => state.events.publish(
                "validator_update",
                json!({"entry_seq": seq, "block_hash": block, "applied": applied}),
            ),
            Err(e) => {
                tracing::info!(seq, error = %e, "registry entry included without effect");
                state.events.publish(
                    "validator_update",
                    json!({"entry_seq": seq, "block_hash": block, "rejected": e.to_string()}),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bizra_ledger::crypto::Keypair;
    use bizra_ledger::registry::ExitRequest;

    use super::*;

    fn stored(seq: u64, body: serde_json::Value) -> bizra_store::RegistryEntry {
        bizra_store::RegistryEntry {
            seq,
            kind: "exit".into(),
            epoch: 0,
            body,
            block_hash: None,
        }
    }

    #[test]
    fn only_entries_that_parse_go_into_a_block_in_filing_order() {
        let exit = |epoch| {
            RegistryEntry::Exit(
                ExitRequest::sign("c", epoch, &Keypair::from_seed([3; 32])).expect("signed"),
            )
        };
        let (first, second) = (exit(0), exit(1));
        let pending = vec![
            stored(4, serde_json::to_value(&first).expect("json")),
            stored(5, serde_json::json!({"not": "an entry"})),
            stored(6, serde_json::to_value(&second).expect("json")),
        ];
        let (ok, unreadable) = includable(pending);
        let got: Vec<(u64, Hash32)> = ok.iter().map(|e| (e.seq, e.id)).collect();
        assert_eq!(
            got,
            vec![
                (4, first.digest().expect("digest")),
                (6, second.digest().expect("digest"))
            ]
        );
        assert_eq!(ok[1].entry, second);
        assert_eq!(
            unreadable.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            vec![5]
        );
    }
}
