//! Committing (docs/protocol.md §3.6): the engine decides which leaders commit; here each
//! committed leader's blocks are placed in the ledger order (a `log_index` for each new
//! attestation, duplicates skipped, `duplicate_nonce` rejections) and written in one store
//! transaction per leader, oldest first. Memory follows the store: a leader whose write
//! failed stays queued and is written before anything else happens.
//!
//! After the writes: the epoch moves on when a leader closed it, and blocks that can no
//! longer be committed (below the window, or of a closed epoch) give their attestations
//! back to the pending queue of whoever holds them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bizra_ledger::consensus::commit::CommittedLeader;
use bizra_ledger::consensus::order::{place, Entry, LedgerView, Placement};
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::registry::RegistryEntry;
use bizra_ledger::Hash32;
use bizra_store::{CommitBatch, LedgerRow, RejectedRow, Store, StoreError, StoredBlock};
use serde_json::json;

use super::chain::{Chain, ChainError};
use super::Consensus;
use crate::clock::now_ms;

/// The ledger as the store holds it before a batch, for the ledger order.
struct Prefetched {
    in_ledger: HashSet<Hash32>,
    owners: HashMap<(PublicKey, String), Hash32>,
    next: u64,
}

impl LedgerView for Prefetched {
    fn contains(&self, digest: &Hash32) -> bool {
        self.in_ledger.contains(digest)
    }

    fn nonce_owner(&self, key: &PublicKey, nonce: &str) -> Option<Hash32> {
        self.owners.get(&(*key, nonce.to_string())).copied()
    }

    fn next_index(&self) -> u64 {
        self.next
    }
}

/// Heights the DAG must be past one of this node's certified blocks that nobody cited
/// before its work is proposed again: a block of the height above can still be in the
/// making for a validator that is a little behind, and it is cited by nothing past that.
const LEFT_BEHIND_MARGIN: u64 = 3;

/// What one committed leader's write put in the ledger.
pub(crate) struct Written {
    pub(crate) blocks: Vec<Hash32>,
    pub(crate) appended: u64,
    pub(crate) rejected: u64,
    pub(crate) entries: Vec<RegistryEntry>,
}

/// Builds and writes the batch of one committed leader. `already` is true when the store
/// holds it already (a restart replaying what it committed before): nothing is written,
/// but the entries are read back for the registry.
pub(crate) async fn write_leader(
    store: &bizra_store::AnyStore,
    chain: &Chain,
    leader: &CommittedLeader,
    already: bool,
) -> Result<Written, ChainError> {
    let mut blocks: Vec<StoredBlock> = Vec::with_capacity(leader.blocks.len());
    for h in &leader.blocks {
        let sb = store.get_block(h).await?.ok_or_else(|| {
            ChainError::Inconsistent(format!("committed block {h} is not stored"))
        })?;
        blocks.push(sb);
    }
    let entries = block_entries(store, &blocks).await?;
    let all_entries: Vec<RegistryEntry> = entries.iter().map(|(_, e)| e.clone()).collect();
    if already {
        return Ok(Written {
            blocks: leader.blocks.clone(),
            appended: 0,
            rejected: 0,
            entries: all_entries,
        });
    }
    let digests: Vec<Hash32> = blocks
        .iter()
        .flat_map(|b| b.block.attestation_ids.iter().copied())
        .collect();
    let keys = store.attestation_keys(&digests).await?;
    let mut pairs: Vec<(PublicKey, String)> = Vec::with_capacity(keys.len());
    for (d, k) in digests.iter().zip(&keys) {
        match k {
            Some(k) => pairs.push(k.clone()),
            None => {
                return Err(ChainError::Inconsistent(format!(
                    "attestation {d} of a committed block is not stored"
                )))
            }
        }
    }
    let (in_ledger, owners) = store.ledger_lookup(&digests, &pairs).await?;
    let view = Prefetched {
        in_ledger: digests
            .iter()
            .zip(&in_ledger)
            .filter(|(_, yes)| **yes)
            .map(|(d, _)| *d)
            .collect(),
        owners: pairs
            .iter()
            .zip(&owners)
            .filter_map(|(p, o)| o.map(|o| (p.clone(), o)))
            .collect(),
        next: chain.ledger_len,
    };
    let placements = place(
        &view,
        digests.iter().zip(&pairs).map(|(d, (k, n))| Entry {
            digest: *d,
            key: k,
            nonce: n,
        }),
    );
    let mut appended = Vec::new();
    let mut rejected = Vec::new();
    let mut i = 0;
    for sb in &blocks {
        for (index, digest) in sb.block.attestation_ids.iter().enumerate() {
            match placements.get(i) {
                Some(Placement::Appended { log_index }) => appended.push(LedgerRow {
                    log_index: *log_index,
                    digest: *digest,
                    block_hash: sb.block.hash,
                    block_index: index as u64,
                }),
                Some(Placement::Rejected { owner }) => rejected.push(RejectedRow {
                    digest: *digest,
                    owner: *owner,
                    block_hash: sb.block.hash,
                    block_index: index as u64,
                }),
                Some(Placement::Duplicate) | None => {}
            }
            i += 1;
        }
    }
    let batch = CommitBatch {
        blocks: leader.blocks.clone(),
        appended,
        rejected,
        entries: entries.iter().filter_map(|(seq, _)| *seq).collect(),
        state: json!({
            "epoch": chain.engine.epoch(),
            "leader": leader.leader,
            "leader_height": leader.height,
        }),
        at_ms: now_ms(),
    };
    store.commit(&batch).await?;
    Ok(Written {
        blocks: leader.blocks.clone(),
        appended: batch.appended.len() as u64,
        rejected: batch.rejected.len() as u64,
        entries: all_entries,
    })
}

/// The registry entries of `blocks`, in ledger order, each with the seq of this store's
/// row for it when that row is not committed yet. Found by digest: the same entry may be
/// filed more than once (a second validator's block, or a crash between filing and
/// inclusion), and any copy has the same content; an entry a block holds again after it
/// was committed goes to the registry again (to no effect) but its row is committed once.
async fn block_entries(
    store: &bizra_store::AnyStore,
    blocks: &[StoredBlock],
) -> Result<Vec<(Option<u64>, RegistryEntry)>, ChainError> {
    if blocks.iter().all(|b| b.block.entry_ids.is_empty()) {
        return Ok(Vec::new());
    }
    let mut by_digest: HashMap<Hash32, (Option<u64>, RegistryEntry)> = HashMap::new();
    for e in store.registry_entries().await? {
        let Ok(parsed) = serde_json::from_value::<RegistryEntry>(e.body) else {
            continue;
        };
        let Ok(digest) = parsed.digest() else {
            continue;
        };
        let seq = e.commit_seq.is_none().then_some(e.seq);
        match by_digest.get_mut(&digest) {
            // A committed copy wins: the entry is in the ledger already.
            Some(found) if e.commit_seq.is_some() => found.0 = None,
            Some(_) => {}
            None => {
                by_digest.insert(digest, (seq, parsed));
            }
        }
    }
    let mut out = Vec::new();
    for sb in blocks {
        for id in &sb.block.entry_ids {
            let found = by_digest.get_mut(id).ok_or_else(|| {
                ChainError::Inconsistent(format!(
                    "registry entry {id} of block {} is not stored",
                    sb.block.hash
                ))
            })?;
            out.push(found.clone());
            // Committed by this batch: a later block holding it again does not commit
            // the row twice.
            found.0 = None;
        }
    }
    Ok(out)
}

/// Runs the commit rule and writes whatever it committed; then moves the epoch and
/// collects garbage. Returns how many leaders it committed.
pub(crate) async fn commit_ready(
    state: &Arc<Consensus>,
    chain: &mut Chain,
) -> Result<usize, ChainError> {
    let commits = chain.engine.commit();
    chain.to_write.extend(commits.leaders);
    let n = flush(state, chain).await?;
    after_commits(state, chain).await?;
    Ok(n)
}

/// Writes the committed leaders still queued, oldest first.
pub(crate) async fn flush(state: &Arc<Consensus>, chain: &mut Chain) -> Result<usize, ChainError> {
    let mut n = 0;
    while let Some(leader) = chain.to_write.front().cloned() {
        let written = match write_leader(&state.store, chain, &leader, false).await {
            Ok(written) => written,
            Err(ChainError::Store(StoreError::Conflict(reason))) => {
                match written_before(&state.store, chain, &leader).await? {
                    Some(written) => {
                        tracing::warn!(leader = %leader.leader, height = leader.height, %reason, "the store holds this commit already; recording it");
                        written
                    }
                    None => return Err(StoreError::Conflict(reason).into()),
                }
            }
            Err(e) => return Err(e),
        };
        chain.to_write.pop_front();
        n += 1;
        record_written(state, chain, &leader, written);
    }
    Ok(n)
}

/// What the store holds of `leader`'s commit when an earlier write of it went through
/// but its caller stopped before recording it here (a dropped future). `None` when the
/// store did not commit it: the conflict is real.
async fn written_before(
    store: &bizra_store::AnyStore,
    chain: &Chain,
    leader: &CommittedLeader,
) -> Result<Option<Written>, ChainError> {
    let committed = store
        .get_block(&leader.leader)
        .await?
        .is_some_and(|b| b.finalized);
    if !committed {
        return Ok(None);
    }
    // Only this node writes its store, and this leader is the oldest not recorded: the
    // ledger beyond what memory counts is this leader's.
    let len = store.ledger_len().await?;
    let mut written = write_leader(store, chain, leader, true).await?;
    written.appended = len.saturating_sub(chain.ledger_len);
    Ok(Some(written))
}

/// Memory, metrics and events after a leader's write.
pub(crate) fn record_written(
    state: &Arc<Consensus>,
    chain: &mut Chain,
    leader: &CommittedLeader,
    written: Written,
) {
    let at = now_ms();
    let first_index = chain.ledger_len;
    chain.ledger_len += written.appended;
    chain.commit_seq += written.blocks.len() as u64;
    chain.last_commit_ms = Some(at);
    for b in &written.blocks {
        chain.note_committed(b, at);
    }
    chain.engine.record_entries(written.entries);
    state
        .metrics
        .blocks_finalized
        .inc_by(written.blocks.len() as u64);
    state.metrics.ledger_appended.inc_by(written.appended);
    state.metrics.ledger_rejected.inc_by(written.rejected);
    state.events.publish(
        "block_finalized",
        json!({
            "leader": leader.leader,
            "height": leader.height,
            "epoch": chain.engine.epoch(),
            "blocks": written.blocks,
            "log_index_from": first_index,
            "appended": written.appended,
            "rejected": written.rejected,
        }),
    );
}

/// The epoch change a closing leader asked for, garbage collection, and the pending
/// queue refilled from blocks that can no longer commit.
pub(crate) async fn after_commits(
    state: &Arc<Consensus>,
    chain: &mut Chain,
) -> Result<(), ChainError> {
    if !chain.to_write.is_empty() {
        return Ok(());
    }
    let mut dead: Vec<Hash32> = Vec::new();
    if let Some(close) = chain.engine.closed() {
        let closing = state
            .store
            .get_block(&close.closing)
            .await?
            .ok_or_else(|| {
                ChainError::Inconsistent(format!("closing block {} is not stored", close.closing))
            })?;
        let change = chain.engine.begin_next_epoch(&closing.block)?;
        tracing::info!(
            from = change.from,
            to = change.to,
            orphaned = change.orphaned.len(),
            "epoch closed"
        );
        dead.extend(change.orphaned);
        dead.extend(chain.uncertified.drain().map(|(h, _)| h));
        chain.own_height = 0;
        chain.quorum_at.clear();
        for (entry, result) in &change.applied {
            let event = match result {
                Ok(applied) => json!({"epoch": change.from, "entry": entry, "applied": applied}),
                Err(e) => json!({"epoch": change.from, "entry": entry, "rejected": e.to_string()}),
            };
            state.events.publish("validator_update", event);
        }
        for r in &change.boundaries {
            state.events.publish(
                "validator_update",
                json!({"epoch": r.epoch, "activated": r.activated, "exited": r.exited}),
            );
        }
    }
    dead.extend(chain.engine.collect_garbage());
    // This node's blocks that were never certified and that the DAG has left behind:
    // nobody can cite them any more, so their work goes into a new block.
    let top = chain.engine.dag().max_height();
    let behind: Vec<Hash32> = chain
        .uncertified
        .iter()
        .filter(|(_, b)| b.header.height + 2 <= top)
        .map(|(h, _)| *h)
        .collect();
    for h in &behind {
        chain.uncertified.remove(h);
    }
    dead.extend(behind);
    // This node's certified blocks that nobody cited at the height above, with the DAG
    // well past them: no leader will reach them, so their work goes into a new block now
    // rather than at garbage collection, `gc_depth` heights later.
    chain.reproposed.retain(|h| chain.engine.dag().contains(h));
    for h in chain.engine.left_behind(&state.node_id, LEFT_BEHIND_MARGIN) {
        if chain.reproposed.insert(h) {
            dead.push(h);
        }
    }
    chain.to_revive.extend(dead);
    revive(state, chain).await?;
    Ok(())
}

/// Gives the work of dead blocks back to the pending queue.
pub(crate) async fn revive(state: &Arc<Consensus>, chain: &mut Chain) -> Result<(), StoreError> {
    if chain.to_revive.is_empty() {
        return Ok(());
    }
    let n = match state.store.revive(&chain.to_revive).await {
        Ok(n) => n,
        // One of them was committed after all (a late certificate, a block citing it)
        // or is not stored: the store refuses the whole list, so each goes alone and
        // those refused are dropped (their work is in the ledger, or was never here).
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
            let mut n = 0;
            let list = std::mem::take(&mut chain.to_revive);
            for (i, b) in list.iter().enumerate() {
                match state.store.revive(std::slice::from_ref(b)).await {
                    Ok(k) => n += k,
                    Err(StoreError::Conflict(e) | StoreError::NotFound(e)) => {
                        tracing::debug!(block = %b, reason = %e, "not revived");
                    }
                    Err(e) => {
                        chain.to_revive.extend_from_slice(&list[i..]);
                        return Err(e);
                    }
                }
            }
            n
        }
        Err(e) => return Err(e),
    };
    chain.to_revive.clear();
    if n > 0 {
        state.pending.add(n as usize, usize::MAX);
        state.pending.wake();
        tracing::info!(
            attestations = n,
            "work of blocks that can no longer commit is pending again"
        );
    }
    Ok(())
}
