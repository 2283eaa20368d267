//! The node's in-memory consensus state: the DAG, finality and the validator registry,
//! rebuilt from the store at start and changed only by the block producer. Readers never
//! touch it: they load the [`Head`] snapshot it publishes after every change.

use std::collections::VecDeque;
use std::sync::Arc;

use bizra_ledger::block::Block;
use bizra_ledger::dag::Dag;
use bizra_ledger::finality::{Finality, WeightTable};
use bizra_ledger::genesis::Genesis;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::registry::{
    epoch_of_time, Applied, EpochReport, Registry, RegistryEntry, RegistryError,
};
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::Hash32;
use bizra_store::{AnyStore, Store, StoreError, StoredBlock, MAX_PAGE_LIMIT};
use serde::Serialize;

/// Blocks remembered for the moving averages of `/api/consensus/stats`.
const RECENT_BLOCKS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored block {hash} does not fit the DAG: {reason}")]
    Inconsistent { hash: Hash32, reason: String },
    #[error("genesis: {0}")]
    Genesis(String),
}

/// Registry entries by the block that included them, in filing order.
type IncludedEntries = std::collections::HashMap<Hash32, Vec<(u64, RegistryEntry)>>;

async fn included_entries(store: &AnyStore) -> Result<IncludedEntries, ChainError> {
    let mut entries = IncludedEntries::default();
    for e in store.registry_entries().await? {
        let Some(block) = e.block_hash else { continue };
        let parsed: RegistryEntry =
            serde_json::from_value(e.body).map_err(|err| ChainError::Inconsistent {
                hash: block,
                reason: format!("registry entry {}: {err}", e.seq),
            })?;
        entries.entry(block).or_default().push((e.seq, parsed));
    }
    Ok(entries)
}

/// What [`Chain::follow`] found.
#[derive(Debug, Default)]
pub(crate) struct Followed {
    /// Blocks added, in height order.
    pub(crate) blocks: Vec<Hash32>,
    /// Blocks the store marked final that were not final here.
    pub(crate) finalized: Vec<Hash32>,
}

impl Followed {
    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.finalized.is_empty()
    }
}

/// One tip as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct TipView {
    #[schema(value_type = String)]
    pub(crate) hash: Hash32,
    pub(crate) height: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) finalized: bool,
}

/// What readers see of the chain: replaced whole after every change, never mutated.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Head {
    /// Bumped on every publish by this process.
    pub(crate) version: u64,
    /// A digest of what the head views show; cached views are keyed by it, the same on
    /// every replica at the same head (`cache::head_view_id`).
    #[serde(skip)]
    pub(crate) view_id: u128,
    pub(crate) height: u64,
    pub(crate) finalized_height: u64,
    pub(crate) tips: Vec<TipView>,
    /// Sum of the vote weight the tips have gathered.
    pub(crate) tips_weight: u64,
    pub(crate) blocks: u64,
    pub(crate) finalized_blocks: u64,
    pub(crate) epoch: u64,
    pub(crate) validator_count: usize,
    pub(crate) active_validators: usize,
    pub(crate) total_active_weight: u64,
    pub(crate) threshold_bps: u64,
    pub(crate) avg_block_time_ms: Option<f64>,
    pub(crate) avg_finality_time_ms: Option<f64>,
    /// Attestations included per second over the last minute of blocks.
    pub(crate) included_per_sec_1m: f64,
    /// Registry as of this head, for the validator routes.
    #[serde(skip)]
    pub(crate) registry: Arc<Registry>,
}

#[derive(Debug, Clone, Copy)]
struct RecentBlock {
    timestamp_ms: u64,
    att_count: u64,
    finality_ms: Option<u64>,
}

pub(crate) struct Chain {
    pub(crate) genesis: Genesis,
    pub(crate) genesis_block: Block,
    pub(crate) anchor: NetworkAnchor,
    pub(crate) dag: Dag,
    pub(crate) finality: Finality,
    pub(crate) registry: Registry,
    genesis_ms: u64,
    slot_ms: u64,
    recent: VecDeque<(Hash32, RecentBlock)>,
    /// Finality decided in memory whose store write failed (the store was down): written
    /// again before the next change, so memory and store never disagree for long.
    pub(crate) unsaved_final: Vec<(QuorumCertificate, Vec<Hash32>)>,
}

impl Chain {
    /// Rebuilds the state from the store: every block into the DAG, stored finality and
    /// certificates, then votes of blocks that are not final yet (a crash between storing
    /// a vote and marking finality loses nothing).
    pub(crate) async fn load(
        genesis: Genesis,
        store: &AnyStore,
        slot_ms: u64,
    ) -> Result<Chain, ChainError> {
        let genesis_block = genesis
            .block()
            .map_err(|e| ChainError::Genesis(e.to_string()))?;
        let genesis_ms = genesis
            .genesis_time_ms()
            .map_err(|e| ChainError::Genesis(e.to_string()))?;
        let dag = Dag::new(&genesis_block).map_err(|e| ChainError::Genesis(e.to_string()))?;
        let finality = Finality::new(&dag);
        let registry =
            Registry::from_genesis(&genesis).map_err(|e| ChainError::Genesis(e.to_string()))?;
        let mut chain = Chain {
            anchor: genesis.anchor(),
            genesis,
            genesis_block,
            dag,
            finality,
            registry,
            genesis_ms,
            slot_ms,
            recent: VecDeque::new(),
            unsaved_final: Vec::new(),
        };
        let stored = store.all_blocks().await?;
        let entries = included_entries(store).await?;
        let mut unfinal = Vec::new();
        for sb in &stored {
            if sb.block.hash == chain.genesis_block.hash {
                continue;
            }
            chain.apply_stored_block(sb, &entries)?;
            if !sb.finalized {
                unfinal.push(sb.block.hash);
            }
        }
        let active = chain.active_set();
        for hash in unfinal {
            if chain.finality.is_final(&hash) {
                continue;
            }
            for vote in store.votes_for(&hash).await? {
                if let Ok(bizra_ledger::finality::VoteOutcome::Finalized {
                    certificate,
                    newly_final,
                }) = chain.finality.add_vote(&chain.dag, &vote, &active)
                {
                    let now = crate::clock::now_ms();
                    store
                        .mark_finalized(&newly_final, Some(&certificate), now)
                        .await?;
                    chain.note_final(&hash, now);
                }
            }
        }
        Ok(chain)
    }

    /// Adds a block another process stored (or this one, at start): the registry moves
    /// to the block's epoch and takes its entries, as it did when the block was made;
    /// the stored finality is restored.
    fn apply_stored_block(
        &mut self,
        sb: &StoredBlock,
        entries: &IncludedEntries,
    ) -> Result<(), ChainError> {
        let epoch = self.epoch_at(sb.block.header.timestamp_ms);
        self.advance_registry(epoch);
        if let Some(list) = entries.get(&sb.block.hash) {
            self.apply_entries(list);
        }
        self.dag
            .insert(&sb.block)
            .map_err(|e| ChainError::Inconsistent {
                hash: sb.block.hash,
                reason: e.to_string(),
            })?;
        self.note_block(&sb.block);
        self.restore_stored_finality(sb);
        Ok(())
    }

    /// True when the store says final and this chain did not know yet.
    fn restore_stored_finality(&mut self, sb: &StoredBlock) -> bool {
        if !sb.finalized || self.finality.is_final(&sb.block.hash) {
            return false;
        }
        self.finality
            .restore_final(&self.dag, sb.block.hash, sb.qc.clone());
        if let Some(at) = sb.finalized_at_ms {
            self.note_final(&sb.block.hash, at);
        }
        true
    }

    /// Catches up with what another replica on the same store produced: blocks this
    /// chain does not have, and finality marked since. Reads from the lowest block that
    /// is not final here, so finality of blocks it already has is seen too.
    pub(crate) async fn follow(&mut self, store: &AnyStore) -> Result<Followed, ChainError> {
        let mut followed = Followed::default();
        let mut from = self.finality.finalized_height() + 1;
        let mut entries: Option<IncludedEntries> = None;
        loop {
            let page = store.blocks_from_height(from, MAX_PAGE_LIMIT).await?;
            let mut progressed = false;
            for sb in &page {
                if !self.dag.contains(&sb.block.hash) {
                    // Registry entries are read once per catch-up, and only when there
                    // is a block to apply them to.
                    let list = match entries {
                        Some(ref e) => e,
                        None => entries.insert(included_entries(store).await?),
                    };
                    let was_final = sb.finalized;
                    self.apply_stored_block(sb, list)?;
                    followed.blocks.push(sb.block.hash);
                    if was_final {
                        followed.finalized.push(sb.block.hash);
                    }
                    progressed = true;
                } else if self.restore_stored_finality(sb) {
                    followed.finalized.push(sb.block.hash);
                }
            }
            match page.last() {
                // A full page that brought something new: more may follow. Heights can
                // repeat in a DAG, so the next page starts at the last height again.
                Some(last) if page.len() == MAX_PAGE_LIMIT as usize && progressed => {
                    from = last.block.header.height;
                }
                _ => break,
            }
        }
        Ok(followed)
    }

    /// Applies every epoch boundary up to `epoch`. Boundaries depend only on the epoch
    /// number, so applying them eagerly (each slot) or lazily (at the next block) gives
    /// the same registry.
    pub(crate) fn advance_registry(&mut self, epoch: u64) -> Vec<EpochReport> {
        let mut reports = Vec::new();
        while self.registry.epoch() < epoch {
            let next = self.registry.epoch() + 1;
            match self.registry.on_epoch_boundary(next) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    tracing::error!(error = %e, "epoch boundary refused");
                    break;
                }
            }
        }
        reports
    }

    /// Applies a block's registry entries in order. An entry that no longer applies (its
    /// epoch passed, say) has no effect, on every node alike.
    pub(crate) fn apply_entries(
        &mut self,
        entries: &[(u64, RegistryEntry)],
    ) -> Vec<(u64, Result<Applied, RegistryError>)> {
        let epoch = self.registry.epoch();
        entries
            .iter()
            .map(|(seq, e)| (*seq, self.registry.apply_entry(e, epoch)))
            .collect()
    }

    pub(crate) fn epoch_at(&self, now_ms: u64) -> u64 {
        epoch_of_time(self.genesis_ms, now_ms, self.slot_ms)
    }

    /// The active validators with their effective weights, as finality counts them.
    pub(crate) fn active_set(&self) -> WeightTable {
        WeightTable::new(
            self.registry
                .active_set()
                .into_iter()
                .map(|r| (r.pubkey_ed25519, r.effective_weight())),
        )
    }

    /// Remembers a block for the moving averages.
    pub(crate) fn note_block(&mut self, block: &Block) {
        self.recent.push_back((
            block.hash,
            RecentBlock {
                timestamp_ms: block.header.timestamp_ms,
                att_count: block.header.att_count,
                finality_ms: None,
            },
        ));
        while self.recent.len() > RECENT_BLOCKS {
            self.recent.pop_front();
        }
    }

    /// Records when a block became final (its finality time is measured from its header
    /// timestamp).
    pub(crate) fn note_final(&mut self, hash: &Hash32, at_ms: u64) {
        if let Some((_, r)) = self.recent.iter_mut().rev().find(|(h, _)| h == hash) {
            r.finality_ms = Some(at_ms.saturating_sub(r.timestamp_ms));
        }
    }

    /// The certificate stored with a block, if it was finalized by its own votes.
    pub(crate) fn certificate(&self, hash: &Hash32) -> Option<&QuorumCertificate> {
        self.finality.certificate(hash)
    }

    /// The snapshot readers see.
    pub(crate) fn head(&self, now_ms: u64) -> Head {
        let active = self.active_set();
        let tips: Vec<TipView> = self
            .dag
            .tips()
            .into_iter()
            .filter_map(|h| {
                self.dag.header(&h).map(|hd| TipView {
                    hash: h,
                    height: hd.height,
                    timestamp_ms: hd.timestamp_ms,
                    finalized: self.finality.is_final(&h),
                })
            })
            .collect();
        // A final tip counts its certificate's weight: the same on every node that
        // holds the certificate, whatever late votes each node saw.
        let tips_weight = tips
            .iter()
            .map(|t| match self.finality.certificate(&t.hash) {
                Some(qc) => qc.weight,
                None => self.finality.weight(&t.hash, &active),
            })
            .fold(0u64, u64::saturating_add);
        let times: Vec<u64> = self.recent.iter().map(|(_, r)| r.timestamp_ms).collect();
        let avg_block_time_ms = (times.len() >= 2).then(|| {
            let span = times[times.len() - 1].saturating_sub(times[0]);
            span as f64 / (times.len() - 1) as f64
        });
        let fin: Vec<u64> = self
            .recent
            .iter()
            .filter_map(|(_, r)| r.finality_ms)
            .collect();
        let avg_finality_time_ms =
            (!fin.is_empty()).then(|| fin.iter().sum::<u64>() as f64 / fin.len() as f64);
        let minute_ago = now_ms.saturating_sub(60_000);
        let included: u64 = self
            .recent
            .iter()
            .filter(|(_, r)| r.timestamp_ms >= minute_ago)
            .map(|(_, r)| r.att_count)
            .sum();
        let height = self.dag.max_height();
        let finalized_height = self.finality.finalized_height();
        Head {
            version: 0,
            view_id: head_view_id(height, finalized_height, tips_weight, &tips),
            height,
            finalized_height,
            tips,
            tips_weight,
            blocks: self.dag.len() as u64,
            finalized_blocks: self.finality.finalized_count() as u64,
            epoch: self.epoch_at(now_ms),
            validator_count: self.registry.len(),
            active_validators: active.len(),
            total_active_weight: active_total(&active),
            threshold_bps: self.finality.threshold_bps(),
            avg_block_time_ms,
            avg_finality_time_ms,
            included_per_sec_1m: included as f64 / 60.0,
            registry: Arc::new(self.registry.clone()),
        }
    }
}

fn active_total(active: &WeightTable) -> u64 {
    use bizra_ledger::finality::ActiveSet;
    active.total_weight()
}

/// The id of a head for view keys: a digest of what the views show of it, the same on
/// every replica that has applied the same blocks and votes.
fn head_view_id(height: u64, finalized_height: u64, tips_weight: u64, tips: &[TipView]) -> u128 {
    let mut h = blake3::Hasher::new();
    h.update(&height.to_le_bytes());
    h.update(&finalized_height.to_le_bytes());
    h.update(&tips_weight.to_le_bytes());
    for t in tips {
        h.update(t.hash.as_bytes());
        h.update(&t.height.to_le_bytes());
        h.update(&[u8::from(t.finalized)]);
    }
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d.as_bytes()[..16]);
    u128::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_ids_name_what_the_view_shows() {
        let tip = |n: u8, finalized| TipView {
            hash: Hash32::digest(&[n]),
            height: 7,
            timestamp_ms: 1000,
            finalized,
        };
        let tips = vec![tip(1, false), tip(2, false)];
        let id = head_view_id(7, 5, 10, &tips);
        assert_eq!(id, head_view_id(7, 5, 10, &tips.clone()), "replicas agree");
        assert_ne!(id, head_view_id(7, 5, 10, &tips[..1]));
        assert_ne!(id, head_view_id(7, 6, 10, &tips), "finality moved");
        assert_ne!(id, head_view_id(7, 5, 11, &tips), "a vote arrived");
        assert_ne!(id, head_view_id(7, 5, 10, &[tip(1, true), tip(2, false)]));
    }
}
