//! The node's in-memory consensus state: the pure [`Engine`] (registry, committee,
//! certified DAG and commit rule of the current epoch), the blocks stored here that are
//! not certified yet, and the counters the API shows. Rebuilt at start by replaying the
//! store through the engine; changed only under the consensus lock. Readers never touch
//! it: they load the [`Head`] snapshot it publishes after every change.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bizra_ledger::block::Block;
use bizra_ledger::consensus::commit::CommittedLeader;
use bizra_ledger::consensus::engine::{Engine, EngineError, EngineParams};
use bizra_ledger::genesis::Genesis;
use bizra_ledger::params::{NetworkAnchor, FINALITY_THRESHOLD_BPS};
use bizra_ledger::registry::{epoch_of_time, Registry};
use bizra_ledger::Hash32;
use serde::Serialize;

/// Blocks remembered for the moving averages of `/api/consensus/stats`.
const RECENT_BLOCKS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChainError {
    #[error(transparent)]
    Store(#[from] bizra_store::StoreError),
    #[error("the store does not agree with the commit rule: {0}")]
    Inconsistent(String),
    #[error("genesis: {0}")]
    Genesis(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One tip as the API shows it: a certified block no certified block cites yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct TipView {
    #[schema(value_type = String)]
    pub(crate) hash: Hash32,
    pub(crate) height: u64,
    #[schema(value_type = String)]
    pub(crate) proposer: Hash32,
    pub(crate) timestamp_ms: u64,
    /// Certified (always, for a tip) and committed (in the ledger).
    pub(crate) certified: bool,
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
    pub(crate) epoch: u64,
    /// Highest height with a certified block in the current epoch.
    pub(crate) height: u64,
    /// Height of the last committed leader in the current epoch.
    pub(crate) finalized_height: u64,
    pub(crate) tips: Vec<TipView>,
    /// Weight of the proposers at the highest certified height.
    pub(crate) tips_weight: u64,
    /// Blocks stored here (every epoch), certified ones, committed ones.
    pub(crate) blocks: u64,
    pub(crate) certified_blocks: u64,
    pub(crate) finalized_blocks: u64,
    /// Attestations in the ledger: the next `log_index`.
    pub(crate) ledger_len: u64,
    pub(crate) last_commit_ms: Option<u64>,
    pub(crate) validator_count: usize,
    pub(crate) active_validators: usize,
    pub(crate) total_active_weight: u64,
    pub(crate) threshold_bps: u64,
    pub(crate) avg_block_time_ms: Option<f64>,
    pub(crate) avg_finality_time_ms: Option<f64>,
    /// Attestations committed per second over the last minute.
    pub(crate) included_per_sec_1m: f64,
    /// Registry as of the current epoch's start, for the validator routes.
    #[serde(skip)]
    pub(crate) registry: Arc<Registry>,
}

#[derive(Debug, Clone, Copy)]
struct RecentBlock {
    timestamp_ms: u64,
    att_count: u64,
    committed_ms: Option<u64>,
}

pub(crate) struct Chain {
    pub(crate) genesis: Genesis,
    pub(crate) genesis_block: Block,
    pub(crate) anchor: NetworkAnchor,
    pub(crate) engine: Engine,
    /// Blocks of the current epoch stored here and not certified yet: this node's own,
    /// waiting for votes, and other validators' that it checked (and voted for).
    pub(crate) uncertified: HashMap<Hash32, Block>,
    /// This node's certified blocks left behind uncited whose work it proposed again
    /// (each once; forgotten when the DAG prunes them).
    pub(crate) reproposed: HashSet<Hash32>,
    /// The highest height this node proposed at in the current epoch (0: none yet).
    pub(crate) own_height: u64,
    /// When this node first held a quorum of certified blocks at a height: the leader
    /// wait of the height above is measured from it.
    pub(crate) quorum_at: BTreeMap<u64, u64>,
    /// Attestations in the ledger (the next `log_index`) and blocks committed (the next
    /// block position).
    pub(crate) ledger_len: u64,
    pub(crate) commit_seq: u64,
    pub(crate) last_commit_ms: Option<u64>,
    pub(crate) blocks_stored: u64,
    pub(crate) certified_blocks: u64,
    /// Leaders the engine committed whose store write has not succeeded yet: written,
    /// in order, before anything else changes.
    pub(crate) to_write: VecDeque<CommittedLeader>,
    /// Blocks that can no longer be committed, whose work the store has not yet put back
    /// in the pending queue.
    pub(crate) to_revive: Vec<Hash32>,
    recent: VecDeque<(Hash32, RecentBlock)>,
}

impl Chain {
    /// An empty chain at genesis; [`super::replay::load`] brings it up to the store.
    pub(crate) fn new(genesis: Genesis, params: EngineParams) -> Result<Chain, ChainError> {
        let genesis_block = genesis
            .block()
            .map_err(|e| ChainError::Genesis(e.to_string()))?;
        let engine = Engine::new(&genesis, &genesis_block, params)?;
        Ok(Chain {
            anchor: genesis.anchor(),
            genesis,
            genesis_block,
            engine,
            uncertified: HashMap::new(),
            reproposed: HashSet::new(),
            own_height: 0,
            quorum_at: BTreeMap::new(),
            ledger_len: 0,
            commit_seq: 0,
            last_commit_ms: None,
            blocks_stored: 0,
            certified_blocks: 0,
            to_write: VecDeque::new(),
            to_revive: Vec::new(),
            recent: VecDeque::new(),
        })
    }

    /// The epoch of a timestamp, by the network's slot arithmetic.
    pub(crate) fn epoch_at(&self, ms: u64) -> u64 {
        let p = self.engine.params();
        epoch_of_time(p.genesis_ms, ms, p.slot_ms)
    }

    /// A block stored here: certified or not, of the current epoch.
    pub(crate) fn knows(&self, hash: &Hash32) -> bool {
        self.engine.dag().contains(hash) || self.uncertified.contains_key(hash)
    }

    /// Remembers a new block for the moving averages.
    pub(crate) fn note_block(&mut self, block: &Block) {
        self.blocks_stored += 1;
        self.recent.push_back((
            block.hash,
            RecentBlock {
                timestamp_ms: block.header.timestamp_ms,
                att_count: block.header.att_count,
                committed_ms: None,
            },
        ));
        while self.recent.len() > RECENT_BLOCKS {
            self.recent.pop_front();
        }
    }

    /// Records when a block was committed (its finality time is measured from its
    /// header timestamp).
    pub(crate) fn note_committed(&mut self, hash: &Hash32, at_ms: u64) {
        if let Some((_, r)) = self.recent.iter_mut().rev().find(|(h, _)| h == hash) {
            r.committed_ms = Some(at_ms.saturating_sub(r.timestamp_ms));
        }
    }

    /// Notes the heights at which a quorum of certified blocks is now held.
    pub(crate) fn note_quorums(&mut self, now_ms: u64) {
        let dag = self.engine.dag();
        let committee = self.engine.committee();
        let top = dag.max_height();
        let from = self
            .quorum_at
            .keys()
            .next_back()
            .map_or(dag.horizon(), |h| h + 1);
        for h in from..=top {
            if committee.is_quorum(dag.weight_at(h, committee)) {
                self.quorum_at.entry(h).or_insert(now_ms);
            }
        }
        // Only the heights near the top matter for pacing.
        while self.quorum_at.len() > 8 {
            self.quorum_at.pop_first();
        }
    }

    /// The snapshot readers see.
    pub(crate) fn head(&self, now_ms: u64) -> Head {
        let dag = self.engine.dag();
        let committee = self.engine.committee();
        let committer = self.engine.committer();
        let height = dag.max_height();
        // Tips: certified blocks of the top two heights that no certified block cites.
        let mut cited = std::collections::HashSet::new();
        for (_, b) in dag.at(height) {
            if let Some(h) = dag.header(b) {
                cited.extend(h.parents.iter().copied());
            }
        }
        let mut tips: Vec<TipView> = [height.saturating_sub(1), height]
            .into_iter()
            .filter(|h| *h >= 1)
            .flat_map(|h| dag.at(h).map(|(_, b)| *b).collect::<Vec<_>>())
            .filter(|b| !cited.contains(b))
            .filter_map(|b| {
                dag.header(&b).map(|hd| TipView {
                    hash: b,
                    height: hd.height,
                    proposer: hd.proposer,
                    timestamp_ms: hd.timestamp_ms,
                    certified: true,
                    finalized: committer.is_committed(&b),
                })
            })
            .collect();
        tips.sort_by_key(|t| std::cmp::Reverse((t.height, t.hash)));
        if tips.is_empty() {
            // Nothing certified in this epoch yet: the block that began it is the tip.
            let (height, proposer) = dag.start_place();
            tips.push(TipView {
                hash: dag.start(),
                height,
                proposer,
                timestamp_ms: dag.start_timestamp_ms(),
                certified: true,
                finalized: true,
            });
        }
        let tips_weight = dag.weight_at(height, committee);
        let times: Vec<u64> = self.recent.iter().map(|(_, r)| r.timestamp_ms).collect();
        let avg_block_time_ms = (times.len() >= 2).then(|| {
            let span = times[times.len() - 1].saturating_sub(times[0]);
            span as f64 / (times.len() - 1) as f64
        });
        let fin: Vec<u64> = self
            .recent
            .iter()
            .filter_map(|(_, r)| r.committed_ms)
            .collect();
        let avg_finality_time_ms =
            (!fin.is_empty()).then(|| fin.iter().sum::<u64>() as f64 / fin.len() as f64);
        let minute_ago = now_ms.saturating_sub(60_000);
        let included: u64 = self
            .recent
            .iter()
            .filter(|(_, r)| r.committed_ms.is_some() && r.timestamp_ms >= minute_ago)
            .map(|(_, r)| r.att_count)
            .sum();
        let finalized_height = committer.last_leader_height();
        let epoch = self.engine.epoch();
        Head {
            version: 0,
            view_id: head_view_id(
                epoch,
                height,
                finalized_height,
                self.ledger_len,
                tips_weight,
                &tips,
            ),
            epoch,
            height,
            finalized_height,
            tips,
            tips_weight,
            blocks: self.blocks_stored,
            certified_blocks: self.certified_blocks,
            finalized_blocks: self.commit_seq,
            ledger_len: self.ledger_len,
            last_commit_ms: self.last_commit_ms,
            validator_count: self.engine.registry().len(),
            active_validators: committee.len(),
            total_active_weight: committee.total(),
            threshold_bps: FINALITY_THRESHOLD_BPS,
            avg_block_time_ms,
            avg_finality_time_ms,
            included_per_sec_1m: included as f64 / 60.0,
            registry: Arc::new(self.engine.registry().clone()),
        }
    }
}

/// The id of a head for view keys: a digest of what the views show of it, the same on
/// every replica that has applied the same blocks and commits.
fn head_view_id(
    epoch: u64,
    height: u64,
    finalized_height: u64,
    ledger_len: u64,
    tips_weight: u64,
    tips: &[TipView],
) -> u128 {
    let mut h = blake3::Hasher::new();
    for v in [epoch, height, finalized_height, ledger_len, tips_weight] {
        h.update(&v.to_le_bytes());
    }
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
            proposer: Hash32::digest(b"p"),
            timestamp_ms: 1000,
            certified: true,
            finalized,
        };
        let tips = vec![tip(1, false), tip(2, false)];
        let id = head_view_id(0, 7, 5, 3, 10, &tips);
        assert_eq!(
            id,
            head_view_id(0, 7, 5, 3, 10, &tips.clone()),
            "replicas agree"
        );
        assert_ne!(id, head_view_id(0, 7, 5, 3, 10, &tips[..1]));
        assert_ne!(
            id,
            head_view_id(0, 7, 6, 3, 10, &tips),
            "a leader committed"
        );
        assert_ne!(id, head_view_id(0, 7, 5, 4, 10, &tips), "the ledger grew");
        assert_ne!(id, head_view_id(1, 7, 5, 3, 10, &tips), "a new epoch");
        assert_ne!(
            id,
            head_view_id(0, 7, 5, 3, 10, &[tip(1, true), tip(2, false)])
        );
    }
}
