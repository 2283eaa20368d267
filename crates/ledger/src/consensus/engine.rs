//! The consensus state of a node across epochs (docs/protocol.md §3.6): the registry as
//! of the current epoch's start, that epoch's committee, certified DAG and committer, and
//! the registry entries committed in it. The node feeds it certified blocks and the
//! entries of the blocks it commits; it answers what to commit and, when a leader closes
//! the epoch, moves to the next one: entries applied in ledger order, the boundaries in
//! turn, a new committee, a new DAG that begins with the closing block.

use crate::block::Block;
use crate::genesis::Genesis;
use crate::hash::Hash32;
use crate::registry::{
    epoch_of_time, Applied, EpochReport, Registry, RegistryEntry, RegistryError,
};
use crate::vote::QuorumCertificate;

use super::commit::{Commits, Committer, EpochClose};
use super::committee::Committee;
use super::dag::{Dag, DagError, Inserted};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("the closing block {0} is not in this epoch's DAG")]
    UnknownClosingBlock(Hash32),
    #[error("the epoch is not closed")]
    NotClosed,
}

/// The network's fixed parameters that the engine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineParams {
    pub genesis_ms: u64,
    /// Slot length: epochs are 32 slots.
    pub slot_ms: u64,
    pub gc_depth: u64,
}

/// What moving to the next epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochChange {
    pub from: u64,
    pub to: u64,
    /// Each entry committed in the closed epoch, in ledger order, with its effect.
    pub applied: Vec<(RegistryEntry, Result<Applied, RegistryError>)>,
    pub boundaries: Vec<EpochReport>,
    /// Blocks of the closed epoch that were never committed: their proposers include
    /// their work again.
    pub orphaned: Vec<Hash32>,
}

#[derive(Debug, Clone)]
pub struct Engine {
    params: EngineParams,
    registry: Registry,
    committee: Committee,
    dag: Dag,
    committer: Committer,
    /// Registry entries committed in this epoch, in ledger order.
    entries: Vec<RegistryEntry>,
    /// Set when a leader closed the epoch; cleared by [`Engine::begin_next_epoch`].
    closed: Option<EpochClose>,
}

impl Engine {
    /// The state at genesis: epoch 0, the genesis validators, an empty DAG.
    pub fn new(
        genesis: &Genesis,
        genesis_block: &Block,
        params: EngineParams,
    ) -> Result<Engine, EngineError> {
        let registry =
            Registry::from_genesis(genesis).map_err(|e| EngineError::Genesis(e.to_string()))?;
        Ok(Engine {
            committee: committee_of(&registry),
            dag: Dag::new(0, genesis_block),
            committer: Committer::new(params.gc_depth),
            registry,
            params,
            entries: Vec::new(),
            closed: None,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.dag.epoch()
    }

    pub fn params(&self) -> EngineParams {
        self.params
    }

    /// The registry as of the current epoch's start (entries committed since apply at
    /// its close).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Registry entries committed in this epoch: they apply when it closes.
    pub fn committed_entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// The leader that closed the epoch, until the next one begins.
    pub fn closed(&self) -> Option<EpochClose> {
        self.closed
    }

    /// The epoch a timestamp falls in.
    pub fn epoch_of(&self, timestamp_ms: u64) -> u64 {
        epoch_of_time(self.params.genesis_ms, timestamp_ms, self.params.slot_ms)
    }

    /// [`Dag::check`] under this epoch's committee, judged at `now_ms`: what a validator
    /// checks of a block before it votes.
    pub fn check_proposal(&self, block: &Block, now_ms: u64) -> Result<(), DagError> {
        if self.closed.is_some() {
            return Err(DagError::Epoch {
                expected: self.epoch() + 1,
                got: block.header.epoch,
            });
        }
        self.dag.check(block, &self.committee, Some(now_ms))
    }

    /// Adds a certified block of the current epoch.
    pub fn insert(&mut self, block: &Block, qc: &QuorumCertificate) -> Result<Inserted, DagError> {
        self.dag.insert(block, qc, &self.committee)
    }

    /// Adds a certified block of the current epoch that this node checked before
    /// ([`Dag::restore`]).
    pub fn restore(&mut self, block: &Block) -> Result<Inserted, DagError> {
        self.dag.restore(block)
    }

    /// Runs the commit rule. When its last leader closes the epoch, nothing more is
    /// committed until [`Engine::begin_next_epoch`].
    pub fn commit(&mut self) -> Commits {
        let (genesis_ms, slot_ms) = (self.params.genesis_ms, self.params.slot_ms);
        let commits = self.committer.commit(&self.dag, &self.committee, |t| {
            epoch_of_time(genesis_ms, t, slot_ms)
        });
        if commits.closed.is_some() {
            self.closed = commits.closed;
        }
        commits
    }

    /// Records the registry entries of a committed block, in block order; call for each
    /// committed block in ledger order.
    pub fn record_entries(&mut self, entries: impl IntoIterator<Item = RegistryEntry>) {
        self.entries.extend(entries);
    }

    /// Prunes the DAG below the commit window; returns the blocks that can never be
    /// committed now.
    /// `proposer`'s certified blocks that will never be committed although they are
    /// above the garbage-collection horizon: not committed, and not cited at the height
    /// above though the DAG is `margin` heights past them ([`Dag::uncited`]). Their
    /// proposer can include their work again now instead of at garbage collection; if
    /// one is committed after all, the ledger order skips the copies.
    pub fn left_behind(&self, proposer: &Hash32, margin: u64) -> Vec<Hash32> {
        self.dag
            .uncited(proposer, margin)
            .into_iter()
            .filter(|b| !self.committer.is_committed(b))
            .collect()
    }

    pub fn collect_garbage(&mut self) -> Vec<Hash32> {
        self.committer.collect_garbage(&mut self.dag)
    }

    /// Moves to the epoch the closing leader began: the entries committed in this epoch
    /// apply in ledger order, then each boundary up to the new epoch; the new committee
    /// is the new active set; the new DAG begins with `closing`.
    pub fn begin_next_epoch(&mut self, closing: &Block) -> Result<EpochChange, EngineError> {
        let close = self.closed.ok_or(EngineError::NotClosed)?;
        if close.closing != closing.hash || !self.dag.contains(&closing.hash) {
            return Err(EngineError::UnknownClosingBlock(closing.hash));
        }
        let from = self.epoch();
        let mut orphaned: Vec<Hash32> = Vec::new();
        for h in self.dag.horizon()..=self.dag.max_height() {
            orphaned.extend(
                self.dag
                    .at(h)
                    .map(|(_, b)| *b)
                    .filter(|b| !self.committer.is_committed(b)),
            );
        }
        let epoch = self.registry.epoch();
        let applied = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|e| {
                let r = self.registry.apply_entry(&e, epoch);
                (e, r)
            })
            .collect();
        let mut boundaries = Vec::new();
        while self.registry.epoch() < close.next_epoch {
            let next = self.registry.epoch() + 1;
            match self.registry.on_epoch_boundary(next) {
                Ok(r) => boundaries.push(r),
                // Boundaries are numbered one by one from the registry's own epoch, so
                // this cannot be refused; stop rather than loop if it ever is.
                Err(_) => break,
            }
        }
        self.committee = committee_of(&self.registry);
        self.dag = Dag::new(close.next_epoch, closing);
        self.committer = Committer::new(self.params.gc_depth);
        self.closed = None;
        Ok(EpochChange {
            from,
            to: close.next_epoch,
            applied,
            boundaries,
            orphaned,
        })
    }
}

/// The active set of `registry` with effective weights.
fn committee_of(registry: &Registry) -> Committee {
    Committee::new(
        registry.epoch(),
        registry
            .active_set()
            .into_iter()
            .map(|r| (r.pubkey_ed25519, r.effective_weight())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockContent;
    use crate::crypto::Keypair;
    use crate::genesis::GenesisValidator;
    use crate::registry::{ExitRequest, ValidatorStatus};
    use crate::vote::{QcVote, Vote};

    struct Net {
        keys: Vec<Keypair>,
        genesis: Genesis,
        genesis_block: Block,
    }

    fn net() -> Net {
        let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let genesis = Genesis {
            chain_id: crate::params::DEFAULT_CHAIN_ID.into(),
            genesis_time: "2026-01-01T00:00:00Z".into(),
            genesis_merkle_root: Hash32::digest(b"root"),
            validators: keys
                .iter()
                .map(|k| GenesisValidator {
                    pubkey_ed25519: k.public(),
                    stake_bond: 0,
                    network_address: "http://127.0.0.1:1".into(),
                })
                .collect(),
        };
        let genesis_block = genesis.block().unwrap();
        Net {
            keys,
            genesis,
            genesis_block,
        }
    }

    fn certify(net: &Net, b: &Block) -> QuorumCertificate {
        QuorumCertificate {
            block_hash: b.hash,
            votes: net
                .keys
                .iter()
                .map(|k| {
                    let v = Vote::sign(b.hash, k);
                    QcVote {
                        validator_id: v.validator_id,
                        signature: v.signature,
                    }
                })
                .collect(),
            weight: 0,
            total_weight: 0,
        }
    }

    /// Four blocks at `height` of `epoch`, each citing `parents`, at `t`.
    fn height(net: &Net, epoch: u64, height: u64, parents: &[Hash32], t: u64) -> Vec<Block> {
        net.keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Block::propose(
                    BlockContent {
                        chain_id: net.genesis.chain_id.clone(),
                        epoch,
                        height,
                        parents: parents.to_vec(),
                        attestation_ids: vec![],
                        entry_ids: vec![],
                        timestamp_ms: t + i as u64,
                    },
                    k,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn an_epoch_closes_applies_its_entries_and_the_next_begins_at_the_closing_block() {
        let net = net();
        let g = net.genesis_block.header.timestamp_ms;
        // 32 slots of 10 ms: epoch 1 begins 320 ms after genesis.
        let params = EngineParams {
            genesis_ms: g,
            slot_ms: 10,
            gc_depth: 50,
        };
        let mut engine = Engine::new(&net.genesis, &net.genesis_block, params).unwrap();
        assert_eq!(engine.committee().len(), 4);
        let leaving = net.keys[3].public().validator_id();
        let exit =
            RegistryEntry::Exit(ExitRequest::sign(&net.genesis.chain_id, 0, &net.keys[3]).unwrap());
        let mut parents = vec![net.genesis_block.hash];
        let mut blocks_by_height = Vec::new();
        let mut closing = None;
        for h in 1..=6u64 {
            let blocks = height(&net, 0, h, &parents, g + h * 100);
            for b in &blocks {
                assert_eq!(engine.insert(b, &certify(&net, b)).unwrap(), Inserted::New);
                let commits = engine.commit();
                for l in &commits.leaders {
                    // The exit entry was in a block of height 1, committed with leader 2.
                    if l.height == 2 {
                        engine.record_entries([exit.clone()]);
                    }
                }
                if let Some(c) = commits.closed {
                    closing = Some(c);
                }
            }
            parents = blocks.iter().map(|b| b.hash).collect();
            parents.sort();
            blocks_by_height.push(blocks);
        }
        // Leader 2 is at 200 ms (epoch 0); leader 4 at 400 ms is in epoch 1 and closes.
        let close = closing.expect("closed");
        assert_eq!(close.next_epoch, 1);
        let closing_block = blocks_by_height[3]
            .iter()
            .find(|b| b.hash == close.closing)
            .expect("the leader of 4")
            .clone();
        // Nothing more commits in a closed epoch.
        assert!(engine.commit().is_empty());
        assert!(engine
            .check_proposal(&blocks_by_height[5][0], g + 700)
            .is_err());

        let change = engine.begin_next_epoch(&closing_block).unwrap();
        assert_eq!((change.from, change.to), (0, 1));
        assert!(change.applied[0].1.is_ok());
        assert_eq!(change.boundaries.len(), 1);
        // Heights 5 and 6, and the blocks of 4 other than the leader, were never
        // committed: 3 + 4 + 4.
        assert_eq!(change.orphaned.len(), 11);
        assert_eq!(engine.epoch(), 1);
        assert_eq!(
            engine.registry().get(&leaving).map(|r| r.status),
            Some(ValidatorStatus::Exiting)
        );
        // Exiting validators still vote until they have exited.
        assert_eq!(engine.committee().len(), 4);
        assert_eq!(engine.dag().start(), closing_block.hash);

        // Height 1 of epoch 1 cites the closing block; a block of the old epoch is
        // refused.
        let first = height(&net, 1, 1, &[closing_block.hash], g + 800);
        engine
            .insert(&first[0], &certify(&net, &first[0]))
            .expect("height 1 of epoch 1");
        let stale = &blocks_by_height[5][1];
        assert!(matches!(
            engine.insert(stale, &certify(&net, stale)),
            Err(DagError::Epoch {
                expected: 1,
                got: 0
            })
        ));
        let wrong_start = height(&net, 1, 1, &[net.genesis_block.hash], g + 800);
        assert!(matches!(
            engine.insert(&wrong_start[1], &certify(&net, &wrong_start[1])),
            Err(DagError::StartParent { .. })
        ));
    }
}
