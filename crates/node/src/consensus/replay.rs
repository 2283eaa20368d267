//! Rebuilding the consensus state at start: every stored block goes through the engine
//! again, in (epoch, height, hash) order, certified ones into the DAG. The commit rule
//! decides the same commits it decided before (it depends only on the DAG), so the replay
//! must meet the store's committed blocks in the store's order; anything else is refused
//! as an inconsistent store. Commits the replay finds beyond them (a crash between a
//! certificate and its commit) are written now, when `writes` allows; a replica that
//! does not sign stops there instead, and replays again once the store has them.

use bizra_ledger::consensus::engine::EngineParams;
use bizra_ledger::genesis::Genesis;
use bizra_ledger::Hash32;
use bizra_store::{AnyStore, Store};

use super::chain::{Chain, ChainError};
use super::commit::write_leader;

pub(crate) async fn load(
    genesis: Genesis,
    store: &AnyStore,
    params: EngineParams,
    node_id: &Hash32,
    writes: bool,
) -> Result<Chain, ChainError> {
    let mut chain = Chain::new(genesis, params)?;
    let committed = store.committed_blocks().await?;
    chain.ledger_len = store.ledger_len().await?;
    let mut expected = committed.into_iter();
    let mut pending_expected = expected.next();
    'blocks: for sb in store.all_blocks().await? {
        if sb.block.hash == chain.genesis_block.hash {
            continue;
        }
        chain.note_block(&sb.block);
        let epoch = sb.block.header.epoch;
        if epoch < chain.engine.epoch() {
            // A block of a closed epoch that was never committed: its work is pending
            // again (idempotent, so every start may say it once more).
            if !sb.finalized {
                chain.to_revive.push(sb.block.hash);
            }
            continue;
        }
        if epoch > chain.engine.epoch() {
            // Of an epoch this replay has not reached: the store took it before its own
            // commits caught up. Catch-up fetches it again once they have.
            continue;
        }
        if !(sb.certified && sb.qc.is_some()) {
            if sb.block.header.proposer == *node_id {
                chain.own_height = chain.own_height.max(sb.block.header.height);
            }
            chain.uncertified.insert(sb.block.hash, sb.block.clone());
            continue;
        }
        if sb.block.header.proposer == *node_id {
            chain.own_height = chain.own_height.max(sb.block.header.height);
        }
        chain.engine.restore(&sb.block).map_err(|e| {
            ChainError::Inconsistent(format!("stored block {}: {e}", sb.block.hash))
        })?;
        chain.certified_blocks += 1;
        let commits = chain.engine.commit();
        for leader in commits.leaders {
            // Either the store committed exactly these blocks next, or none of them.
            let already = pending_expected.is_some();
            if !already && !writes {
                break 'blocks;
            }
            if already {
                for b in &leader.blocks {
                    if pending_expected != Some(*b) {
                        return Err(ChainError::Inconsistent(format!(
                            "the replay commits {b} where the store committed {}",
                            pending_expected.map_or("nothing".to_string(), |h| h.to_hex())
                        )));
                    }
                    pending_expected = expected.next();
                }
            }
            let written = write_leader(store, &chain, &leader, already).await?;
            if !already {
                tracing::info!(leader = %leader.leader, height = leader.height, "commit found on replay written");
                chain.ledger_len += written.appended;
            }
            chain.commit_seq += written.blocks.len() as u64;
            chain.engine.record_entries(written.entries);
        }
        if let Some(close) = chain.engine.closed() {
            let closing = store.get_block(&close.closing).await?.ok_or_else(|| {
                ChainError::Inconsistent(format!("closing block {} is not stored", close.closing))
            })?;
            let change = chain.engine.begin_next_epoch(&closing.block)?;
            chain.to_revive.extend(change.orphaned);
            chain
                .to_revive
                .extend(chain.uncertified.drain().map(|(h, _)| h));
            chain.own_height = 0;
        }
    }
    if let Some(h) = pending_expected {
        return Err(ChainError::Inconsistent(format!(
            "the store committed {h}, which the replay does not commit"
        )));
    }
    chain.to_revive.extend(chain.engine.collect_garbage());
    chain.note_quorums(crate::clock::now_ms());
    Ok(chain)
}
