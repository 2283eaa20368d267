//! The commit rule (docs/protocol.md §3.6): Bullshark's partially synchronous rule over
//! the certified DAG, with stake weights.
//!
//! A leader block at an even height h is committed directly once certified blocks at
//! h+1 whose proposers hold more than 1/3 of the weight cite it. Committing a leader
//! first commits the earlier leaders, back to the last one committed, that it reaches by
//! a chain of such links; a leader height without a reachable leader block is skipped.
//! Each committed leader appends its causal history (what it reaches and the ledger does
//! not hold yet) by height, then hash.
//!
//! Why every node commits the same leaders in the same order: if any node commits L
//! directly, more than 1/3 of the weight cites L at h+1, and every block at h+2 cites at
//! least 2/3 of the weight at h+1, so it cites one of them: every later leader reaches L,
//! and whoever commits a later leader commits L first. The walk back from a leader
//! depends only on the DAG below it, which is the same on every node that holds it.

use std::collections::HashSet;

use crate::hash::Hash32;

use super::committee::{is_leader_height, Committee};
use super::dag::Dag;

/// Heights below the last committed leader whose uncommitted blocks may still be
/// committed, by default.
pub const DEFAULT_GC_DEPTH: u64 = 50;

/// One committed leader and the blocks its commit appended, in ledger order (the
/// leader is last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLeader {
    pub leader: Hash32,
    pub height: u64,
    pub blocks: Vec<Hash32>,
}

/// What one [`Committer::commit`] call decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commits {
    /// Oldest first.
    pub leaders: Vec<CommittedLeader>,
    /// Set when the last of `leaders` closed the epoch: its timestamp is in a later
    /// epoch, which begins with it. Nothing else of this epoch is ever committed.
    pub closed: Option<EpochClose>,
}

impl Commits {
    pub fn is_empty(&self) -> bool {
        self.leaders.is_empty()
    }

    /// Every block appended, in ledger order.
    pub fn blocks(&self) -> impl Iterator<Item = &Hash32> {
        self.leaders.iter().flat_map(|l| l.blocks.iter())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochClose {
    /// The leader block that closed the epoch; the next epoch's height-1 blocks cite it.
    pub closing: Hash32,
    /// The epoch of its timestamp: the epoch that begins now.
    pub next_epoch: u64,
}

/// The commit state of one epoch.
#[derive(Debug, Clone)]
pub struct Committer {
    gc_depth: u64,
    /// Height of the last committed leader; 0 before any.
    last_leader_height: u64,
    /// Blocks of this epoch in the ledger (down to the DAG's horizon).
    committed: HashSet<Hash32>,
    /// Whether a leader closed the epoch: then nothing more is committed here.
    closed: bool,
}

impl Committer {
    pub fn new(gc_depth: u64) -> Committer {
        Committer {
            gc_depth,
            last_leader_height: 0,
            committed: HashSet::new(),
            closed: false,
        }
    }

    /// A committer resuming after `last_leader_height`, with the blocks of this epoch
    /// the ledger already holds (a node rebuilding its state at start).
    pub fn resume(
        gc_depth: u64,
        last_leader_height: u64,
        committed: impl IntoIterator<Item = Hash32>,
    ) -> Committer {
        Committer {
            gc_depth,
            last_leader_height,
            committed: committed.into_iter().collect(),
            closed: false,
        }
    }

    pub fn last_leader_height(&self) -> u64 {
        self.last_leader_height
    }

    pub fn is_committed(&self, hash: &Hash32) -> bool {
        self.committed.contains(hash)
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn gc_depth(&self) -> u64 {
        self.gc_depth
    }

    /// The lowest height a future commit can still append: blocks below it that are
    /// not committed never will be (their proposers include their work again).
    pub fn horizon(&self) -> u64 {
        (self.last_leader_height + 2)
            .saturating_sub(self.gc_depth)
            .max(1)
    }

    /// The leader block of `height` in `dag`, if certified here.
    fn leader_block(dag: &Dag, committee: &Committee, height: u64) -> Option<Hash32> {
        committee
            .leader(height)
            .and_then(|id| dag.block_of(height, &id))
    }

    /// Whether the leader block at `height` has direct support: certified blocks at
    /// height+1 holding more than 1/3 of the weight cite it.
    pub fn directly_committable(dag: &Dag, committee: &Committee, height: u64) -> bool {
        let Some(leader) = Self::leader_block(dag, committee, height) else {
            return false;
        };
        let support = committee.weight_of(
            dag.at(height + 1)
                .filter(|(_, b)| {
                    dag.header(b)
                        .is_some_and(|hd| hd.parents.binary_search(&leader).is_ok())
                })
                .map(|(p, _)| p),
        );
        committee.is_validity(support)
    }

    /// Commits what `dag` now allows. `epoch_of` gives the epoch of a timestamp (the
    /// network's epoch arithmetic): the first committed leader whose timestamp is in a
    /// later epoch than the DAG's closes it.
    pub fn commit(
        &mut self,
        dag: &Dag,
        committee: &Committee,
        epoch_of: impl Fn(u64) -> u64,
    ) -> Commits {
        let mut out = Commits::default();
        if self.closed {
            return out;
        }
        // The highest leader with direct support; the walk back finds the others.
        let top = dag.max_height().saturating_sub(1);
        let Some(anchor_height) = (self.last_leader_height + 2..=top)
            .rev()
            .filter(|h| is_leader_height(*h))
            .find(|h| Self::directly_committable(dag, committee, *h))
        else {
            return out;
        };
        let Some(anchor) = Self::leader_block(dag, committee, anchor_height) else {
            return out;
        };
        let mut chain = vec![(anchor_height, anchor)];
        let mut current = anchor;
        let mut h = anchor_height;
        while h >= self.last_leader_height + 4 {
            h -= 2;
            if let Some(prev) = Self::leader_block(dag, committee, h) {
                if dag.reaches(&current, &prev) {
                    chain.push((h, prev));
                    current = prev;
                }
            }
        }
        for (height, leader) in chain.into_iter().rev() {
            let min_height = height.saturating_sub(self.gc_depth);
            let committed = &self.committed;
            let mut blocks = dag.history(&leader, min_height, |b| committed.contains(b));
            blocks.sort_by_key(|b| (dag.header(b).map_or(0, |hd| hd.height), *b));
            self.committed.extend(blocks.iter().copied());
            self.last_leader_height = height;
            out.leaders.push(CommittedLeader {
                leader,
                height,
                blocks,
            });
            let timestamp = dag.header(&leader).map_or(0, |hd| hd.timestamp_ms);
            let epoch = epoch_of(timestamp);
            if epoch > dag.epoch() {
                self.closed = true;
                out.closed = Some(EpochClose {
                    closing: leader,
                    next_epoch: epoch,
                });
                break;
            }
        }
        out
    }

    /// Prunes `dag` below the horizon and returns the blocks that were removed without
    /// ever being committed: their proposers include their work again.
    pub fn collect_garbage(&mut self, dag: &mut Dag) -> Vec<Hash32> {
        let removed = dag.prune_below(self.horizon());
        let mut dead = Vec::new();
        for h in removed {
            if !self.committed.remove(&h) {
                dead.push(h);
            }
        }
        dead
    }
}
