//! The certified DAG of one epoch (docs/protocol.md §3.1, §3.3): blocks by height and
//! proposer, each checked against the rules of its parents and certified by a quorum
//! certificate before it enters. A block that is only proposed (not yet certified) is
//! checked with [`Dag::check`] before a vote, and stays outside.
//!
//! Rules kept on every insert: at most one block per (height, proposer); a block at
//! height 1 cites the block that began the epoch as its one parent; a block at height
//! h ≥ 2 cites certified blocks of height h−1 by distinct proposers holding ≥ 2/3 of the
//! committee's weight; timestamps grow along every edge. So every path from a block
//! descends one height per edge, which the walks below rely on.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::block::{Block, BlockError, BlockHeader};
use crate::hash::Hash32;
use crate::vote::QuorumCertificate;
use crate::vote::{verify_certificate, CertificateError};

use super::committee::Committee;

/// How far ahead of the checking validator's clock a block's timestamp may be.
pub const MAX_CLOCK_AHEAD_MS: u64 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("block is for chain {got:?}, this network is {expected:?}")]
    Chain { expected: String, got: String },
    #[error("block is of epoch {got}, this DAG is epoch {expected}")]
    Epoch { expected: u64, got: u64 },
    #[error("height 0 is the genesis block's alone")]
    Genesis,
    #[error("proposer {0} is not in the epoch's committee")]
    NotMember(Hash32),
    #[error(
        "height {height} is below this DAG's horizon {horizon} and can no longer be committed"
    )]
    Stale { height: u64, horizon: u64 },
    #[error("a block at height 1 cites the block that began the epoch ({start}), and only it")]
    StartParent { start: Hash32 },
    #[error("parent {0} is not a certified block known here")]
    UnknownParent(Hash32),
    #[error("parent {parent} is at height {got}, not {expected}")]
    ParentHeight {
        parent: Hash32,
        expected: u64,
        got: u64,
    },
    #[error("two parents were proposed by {0}")]
    ParentProposer(Hash32),
    #[error("the parents' proposers hold {weight} of {total}, less than 2/3")]
    ParentWeight { weight: u64, total: u64 },
    #[error("timestamp_ms {got} is not after its latest parent's {parent}")]
    Timestamp { got: u64, parent: u64 },
    #[error("timestamp_ms {got} is more than {MAX_CLOCK_AHEAD_MS} ms ahead of this validator's clock {now}")]
    Ahead { got: u64, now: u64 },
    #[error("proposer {proposer} already has certified block {existing} at height {height}")]
    Equivocation {
        proposer: Hash32,
        height: u64,
        existing: Hash32,
    },
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("certificate is for block {got}, not {expected}")]
    CertificateBlock { expected: Hash32, got: Hash32 },
}

/// What [`Dag::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The block was already here; nothing changed.
    Known,
}

/// The certified blocks of one epoch.
#[derive(Debug, Clone)]
pub struct Dag {
    chain_id: String,
    epoch: u64,
    /// The block that began the epoch: genesis, or the block that closed the epoch
    /// before. It is in the ledger already, so no walk goes below it.
    start: Hash32,
    start_height: u64,
    start_proposer: Hash32,
    start_timestamp_ms: u64,
    blocks: HashMap<Hash32, BlockHeader>,
    /// height → proposer → block.
    by_height: BTreeMap<u64, BTreeMap<Hash32, Hash32>>,
    /// Heights below this were pruned.
    horizon: u64,
}

impl Dag {
    /// An empty DAG for `epoch`, begun by `start` (genesis, or the closing block of the
    /// epoch before).
    pub fn new(epoch: u64, start: &Block) -> Dag {
        Dag {
            chain_id: start.header.chain_id.clone(),
            epoch,
            start: start.hash,
            start_height: start.header.height,
            start_proposer: start.header.proposer,
            start_timestamp_ms: start.header.timestamp_ms,
            blocks: HashMap::new(),
            by_height: BTreeMap::new(),
            horizon: 1,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The block that began this epoch.
    pub fn start(&self) -> Hash32 {
        self.start
    }

    pub fn start_timestamp_ms(&self) -> u64 {
        self.start_timestamp_ms
    }

    /// Height and proposer of the block that began the epoch (in its own epoch).
    pub fn start_place(&self) -> (u64, Hash32) {
        (self.start_height, self.start_proposer)
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The lowest height still held.
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    pub fn contains(&self, hash: &Hash32) -> bool {
        self.blocks.contains_key(hash)
    }

    pub fn header(&self, hash: &Hash32) -> Option<&BlockHeader> {
        self.blocks.get(hash)
    }

    /// The highest height with a block; 0 when empty.
    pub fn max_height(&self) -> u64 {
        self.by_height.keys().next_back().copied().unwrap_or(0)
    }

    /// The certified block of `proposer` at `height`.
    pub fn block_of(&self, height: u64, proposer: &Hash32) -> Option<Hash32> {
        self.by_height.get(&height)?.get(proposer).copied()
    }

    /// The certified blocks at `height`, by proposer id.
    pub fn at(&self, height: u64) -> impl Iterator<Item = (&Hash32, &Hash32)> {
        self.by_height.get(&height).into_iter().flatten()
    }

    /// The weight of the proposers with a certified block at `height`.
    pub fn weight_at(&self, height: u64, committee: &Committee) -> u64 {
        committee.weight_of(self.at(height).map(|(p, _)| p))
    }

    /// The parents of a new block at `height`: every certified block of `height − 1`
    /// (the start block at height 1), sorted; `None` while those do not hold a quorum.
    pub fn parents_for(&self, height: u64, committee: &Committee) -> Option<Vec<Hash32>> {
        if height == 1 {
            return Some(vec![self.start]);
        }
        let below = height.checked_sub(1)?;
        if !committee.is_quorum(self.weight_at(below, committee)) {
            return None;
        }
        let mut parents: Vec<Hash32> = self.at(below).map(|(_, b)| *b).collect();
        parents.sort();
        Some(parents)
    }

    /// Everything a validator checks before it votes for `block`, or before a certified
    /// block enters: its integrity and proposer signature, its epoch, its parents, its
    /// timestamp (against `now_ms` too, when given: a vote is judged by the voter's
    /// clock, a certified block no longer is). Says nothing about its attestations and
    /// entries, which are the proposal's to check.
    pub fn check(
        &self,
        block: &Block,
        committee: &Committee,
        now_ms: Option<u64>,
    ) -> Result<(), DagError> {
        self.check_with(block, committee, now_ms, false)
    }

    /// [`Dag::check`]; with `certified`, parents below the horizon are not looked for: a
    /// quorum checked them when it certified the block, and no commit can reach them.
    /// Without that, a node that pruned could not take a late block that a node that
    /// had not pruned takes, and the two could commit differently.
    fn check_with(
        &self,
        block: &Block,
        committee: &Committee,
        now_ms: Option<u64>,
        certified: bool,
    ) -> Result<(), DagError> {
        block.check_integrity()?;
        let h = &block.header;
        if h.chain_id != self.chain_id {
            return Err(DagError::Chain {
                expected: self.chain_id.clone(),
                got: h.chain_id.clone(),
            });
        }
        if h.epoch != self.epoch {
            return Err(DagError::Epoch {
                expected: self.epoch,
                got: h.epoch,
            });
        }
        if h.height == 0 {
            return Err(DagError::Genesis);
        }
        let key = committee
            .key(&h.proposer)
            .ok_or(DagError::NotMember(h.proposer))?;
        block.verify_signature(key)?;
        if h.height < self.horizon {
            return Err(DagError::Stale {
                height: h.height,
                horizon: self.horizon,
            });
        }
        if certified && h.height >= 2 && h.height - 1 < self.horizon {
            return Ok(());
        }
        let latest_parent = self.check_parents(h, committee)?;
        if h.timestamp_ms <= latest_parent {
            return Err(DagError::Timestamp {
                got: h.timestamp_ms,
                parent: latest_parent,
            });
        }
        if let Some(now) = now_ms {
            if h.timestamp_ms > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
                return Err(DagError::Ahead {
                    got: h.timestamp_ms,
                    now,
                });
            }
        }
        Ok(())
    }

    /// The parent rules; returns the latest parent timestamp.
    fn check_parents(&self, h: &BlockHeader, committee: &Committee) -> Result<u64, DagError> {
        if h.height == 1 {
            if h.parents != [self.start] {
                return Err(DagError::StartParent { start: self.start });
            }
            return Ok(self.start_timestamp_ms);
        }
        let mut proposers = HashSet::with_capacity(h.parents.len());
        let mut latest = 0;
        for p in &h.parents {
            let parent = self.blocks.get(p).ok_or(DagError::UnknownParent(*p))?;
            if parent.height + 1 != h.height {
                return Err(DagError::ParentHeight {
                    parent: *p,
                    expected: h.height - 1,
                    got: parent.height,
                });
            }
            if !proposers.insert(parent.proposer) {
                return Err(DagError::ParentProposer(parent.proposer));
            }
            latest = latest.max(parent.timestamp_ms);
        }
        let weight = committee.weight_of(&proposers);
        if !committee.is_quorum(weight) {
            return Err(DagError::ParentWeight {
                weight,
                total: committee.total(),
            });
        }
        Ok(latest)
    }

    /// Adds a certified block: `qc` must certify it under `committee`, and the block must
    /// pass [`Dag::check`] (without the clock). A second certified block of one proposer
    /// at one height is refused as equivocation (it cannot happen while less than 1/3 of
    /// the weight is faulty, since each honest validator votes once per slot).
    pub fn insert(
        &mut self,
        block: &Block,
        qc: &QuorumCertificate,
        committee: &Committee,
    ) -> Result<Inserted, DagError> {
        if self.blocks.contains_key(&block.hash) {
            return Ok(Inserted::Known);
        }
        if qc.block_hash != block.hash {
            return Err(DagError::CertificateBlock {
                expected: block.hash,
                got: qc.block_hash,
            });
        }
        self.check_with(block, committee, None, true)?;
        let h = &block.header;
        if let Some(existing) = self.block_of(h.height, &h.proposer) {
            return Err(DagError::Equivocation {
                proposer: h.proposer,
                height: h.height,
                existing,
            });
        }
        verify_certificate(qc, committee)?;
        self.by_height
            .entry(h.height)
            .or_default()
            .insert(h.proposer, block.hash);
        self.blocks.insert(block.hash, block.header.clone());
        Ok(Inserted::New)
    }

    /// Adds a block this node checked and certified before (a restart replaying its
    /// store): no check but the one-block-per-slot rule. Its parents may be missing when
    /// they were below the horizon as it arrived; they were then, as now, out of reach
    /// of every commit.
    pub fn restore(&mut self, block: &Block) -> Result<Inserted, DagError> {
        if self.blocks.contains_key(&block.hash) {
            return Ok(Inserted::Known);
        }
        let h = &block.header;
        if h.epoch != self.epoch {
            return Err(DagError::Epoch {
                expected: self.epoch,
                got: h.epoch,
            });
        }
        if let Some(existing) = self.block_of(h.height, &h.proposer) {
            return Err(DagError::Equivocation {
                proposer: h.proposer,
                height: h.height,
                existing,
            });
        }
        self.by_height
            .entry(h.height)
            .or_default()
            .insert(h.proposer, block.hash);
        self.blocks.insert(block.hash, block.header.clone());
        Ok(Inserted::New)
    }

    /// True when `to` is `from` or reachable from it by parent edges.
    pub fn reaches(&self, from: &Hash32, to: &Hash32) -> bool {
        if from == to {
            return true;
        }
        let (Some(f), Some(t)) = (self.blocks.get(from), self.blocks.get(to)) else {
            return false;
        };
        if f.height <= t.height {
            return false;
        }
        // One height per edge: walk down layer by layer to the target's height.
        let mut layer: HashSet<Hash32> = f.parents.iter().copied().collect();
        let mut height = f.height - 1;
        while height > t.height {
            layer = layer
                .iter()
                .filter_map(|h| self.blocks.get(h))
                .flat_map(|b| b.parents.iter().copied())
                .collect();
            height -= 1;
        }
        layer.contains(to)
    }

    /// `from` and its ancestors in this DAG at heights ≥ `min_height`, leaving out the
    /// blocks `skip` names and everything reachable only through them. Unordered.
    pub fn history(
        &self,
        from: &Hash32,
        min_height: u64,
        skip: impl Fn(&Hash32) -> bool,
    ) -> Vec<Hash32> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![*from];
        while let Some(h) = stack.pop() {
            if !seen.insert(h) || skip(&h) {
                continue;
            }
            let Some(header) = self.blocks.get(&h) else {
                continue;
            };
            if header.height < min_height {
                continue;
            }
            out.push(h);
            stack.extend(header.parents.iter().copied());
        }
        out
    }

    /// `proposer`'s blocks that no block of the height above cites, at heights from the
    /// horizon up to `max_height() - margin`: the DAG has moved `margin` heights on
    /// without them, and only a block of the height above could still cite them (a
    /// block cites only the height below it), which the validators have left behind.
    /// Height order.
    pub fn uncited(&self, proposer: &Hash32, margin: u64) -> Vec<Hash32> {
        let last = match self.max_height().checked_sub(margin) {
            Some(last) if last >= self.horizon => last,
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        for (height, slot) in self.by_height.range(self.horizon..=last) {
            let Some(own) = slot.get(proposer) else {
                continue;
            };
            let cited = self.at(height + 1).any(|(_, b)| {
                self.blocks
                    .get(b)
                    .is_some_and(|h| h.parents.binary_search(own).is_ok())
            });
            if !cited {
                out.push(*own);
            }
        }
        out
    }

    /// Forgets every block below `height` and returns their hashes. Certified blocks
    /// below it are refused from then on; those at it enter without their parents.
    pub fn prune_below(&mut self, height: u64) -> Vec<Hash32> {
        if height <= self.horizon {
            return Vec::new();
        }
        let kept = self.by_height.split_off(&height);
        let gone = std::mem::replace(&mut self.by_height, kept);
        let removed: Vec<Hash32> = gone.values().flat_map(|m| m.values().copied()).collect();
        for h in &removed {
            self.blocks.remove(h);
        }
        self.horizon = height;
        removed
    }
}
