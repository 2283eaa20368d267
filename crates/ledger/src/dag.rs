//! The block DAG (docs/protocol.md §3.3): insertion with every structural check, tips,
//! ancestors.
//!
//! The DAG holds headers only; attestation ids live in the store. Signatures are not
//! checked here, since that needs the validator registry: callers check the proposer
//! before inserting.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::block::{Block, BlockError, BlockHeader};
use crate::hash::Hash32;
use crate::params::MAX_PARENTS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    #[error("block {0} is already in the DAG")]
    Duplicate(Hash32),
    #[error("parent {0} is unknown")]
    UnknownParent(Hash32),
    #[error("height {got} should be {expected} (1 + highest parent)")]
    WrongHeight { expected: u64, got: u64 },
    #[error("chain id {got:?} is not this network's {expected:?}")]
    ChainMismatch { expected: String, got: String },
    #[error("only the genesis block may have height 0")]
    SecondGenesis,
    #[error(transparent)]
    Block(#[from] BlockError),
}

#[derive(Debug, Clone)]
struct Node {
    header: BlockHeader,
    children: Vec<Hash32>,
}

/// Blocks by hash, with the set of tips kept up to date on every insert.
#[derive(Debug, Clone)]
pub struct Dag {
    chain_id: String,
    genesis: Hash32,
    nodes: HashMap<Hash32, Node>,
    /// Ordered by (height, hash) so that "highest first" is a reverse walk.
    tips: BTreeSet<(u64, Hash32)>,
    max_height: u64,
}

impl Dag {
    /// A DAG holding only `genesis`.
    pub fn new(genesis: &Block) -> Result<Dag, DagError> {
        genesis.check_integrity()?;
        if genesis.header.height != 0 {
            return Err(DagError::WrongHeight {
                expected: 0,
                got: genesis.header.height,
            });
        }
        let mut nodes = HashMap::new();
        nodes.insert(
            genesis.hash,
            Node {
                header: genesis.header.clone(),
                children: vec![],
            },
        );
        Ok(Dag {
            chain_id: genesis.header.chain_id.clone(),
            genesis: genesis.hash,
            nodes,
            tips: [(0, genesis.hash)].into(),
            max_height: 0,
        })
    }

    /// Checks `block` against the DAG without inserting it.
    pub fn check(&self, block: &Block) -> Result<(), DagError> {
        block.check_integrity()?;
        let h = &block.header;
        if self.nodes.contains_key(&block.hash) {
            return Err(DagError::Duplicate(block.hash));
        }
        if h.chain_id != self.chain_id {
            return Err(DagError::ChainMismatch {
                expected: self.chain_id.clone(),
                got: h.chain_id.clone(),
            });
        }
        if h.height == 0 {
            return Err(DagError::SecondGenesis);
        }
        let mut highest = 0;
        for p in &h.parents {
            let parent = self.nodes.get(p).ok_or(DagError::UnknownParent(*p))?;
            highest = highest.max(parent.header.height);
        }
        if h.height != highest + 1 {
            return Err(DagError::WrongHeight {
                expected: highest + 1,
                got: h.height,
            });
        }
        Ok(())
    }

    /// Inserts a block whose parents are all present.
    pub fn insert(&mut self, block: &Block) -> Result<(), DagError> {
        self.check(block)?;
        for p in &block.header.parents {
            if let Some(parent) = self.nodes.get_mut(p) {
                parent.children.push(block.hash);
                self.tips.remove(&(parent.header.height, *p));
            }
        }
        self.tips.insert((block.header.height, block.hash));
        self.max_height = self.max_height.max(block.header.height);
        self.nodes.insert(
            block.hash,
            Node {
                header: block.header.clone(),
                children: vec![],
            },
        );
        Ok(())
    }

    pub fn genesis(&self) -> Hash32 {
        self.genesis
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, hash: &Hash32) -> bool {
        self.nodes.contains_key(hash)
    }

    pub fn header(&self, hash: &Hash32) -> Option<&BlockHeader> {
        self.nodes.get(hash).map(|n| &n.header)
    }

    pub fn children(&self, hash: &Hash32) -> &[Hash32] {
        self.nodes.get(hash).map_or(&[], |n| &n.children)
    }

    pub fn max_height(&self) -> u64 {
        self.max_height
    }

    /// Tips, highest first (ties by hash, descending).
    pub fn tips(&self) -> Vec<Hash32> {
        self.tips.iter().rev().map(|(_, h)| *h).collect()
    }

    /// The parents of the next block: the highest tips, at most [`MAX_PARENTS`].
    pub fn next_parents(&self) -> Vec<Hash32> {
        self.tips
            .iter()
            .rev()
            .take(MAX_PARENTS)
            .map(|(_, h)| *h)
            .collect()
    }

    /// Height of a block built on [`Dag::next_parents`].
    pub fn next_height(&self) -> u64 {
        self.tips
            .iter()
            .rev()
            .take(MAX_PARENTS)
            .map(|(h, _)| *h)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Every strict ancestor of `hash` for which `descend` holds, walking parents
    /// from `hash`; the walk does not continue past a block for which `descend` is false.
    pub fn ancestors_while(
        &self,
        hash: &Hash32,
        mut descend: impl FnMut(&Hash32) -> bool,
    ) -> Vec<Hash32> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack: Vec<Hash32> = self
            .nodes
            .get(hash)
            .map(|n| n.header.parents.clone())
            .unwrap_or_default();
        while let Some(h) = stack.pop() {
            if !seen.insert(h) || !descend(&h) {
                continue;
            }
            out.push(h);
            if let Some(n) = self.nodes.get(&h) {
                stack.extend(n.header.parents.iter().copied());
            }
        }
        out
    }

    /// Every strict ancestor of `hash`.
    pub fn ancestors(&self, hash: &Hash32) -> Vec<Hash32> {
        self.ancestors_while(hash, |_| true)
    }

    /// True when `ancestor` is `hash` or one of its ancestors.
    pub fn reaches(&self, hash: &Hash32, ancestor: &Hash32) -> bool {
        if hash == ancestor {
            return true;
        }
        let Some(target) = self.nodes.get(ancestor) else {
            return false;
        };
        let target_height = target.header.height;
        let mut found = false;
        // Heights strictly decrease along parents, so stop below the target's height.
        self.ancestors_while(hash, |h| {
            if h == ancestor {
                found = true;
            }
            !found
                && self
                    .nodes
                    .get(h)
                    .is_some_and(|n| n.header.height > target_height)
        });
        found
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::genesis::Genesis;
    use proptest::prelude::*;

    pub(crate) fn genesis_block() -> Block {
        Genesis::single(
            Keypair::from_seed([1; 32]).public(),
            "http://127.0.0.1:1",
            "2026-01-01T00:00:00Z",
        )
        .block()
        .unwrap()
    }

    pub(crate) fn child(dag: &Dag, parents: Vec<Hash32>, salt: u64) -> Block {
        let height = parents
            .iter()
            .map(|p| dag.header(p).unwrap().height)
            .max()
            .unwrap()
            + 1;
        propose(
            dag.chain_id(),
            height,
            parents,
            vec![Hash32::digest(&salt.to_le_bytes())],
            salt,
            &Keypair::from_seed([1; 32]),
        )
        .unwrap()
    }

    fn propose(
        chain_id: &str,
        height: u64,
        parents: Vec<Hash32>,
        attestation_ids: Vec<Hash32>,
        timestamp_ms: u64,
        key: &Keypair,
    ) -> Result<Block, BlockError> {
        Block::propose(
            crate::block::BlockContent {
                chain_id: chain_id.into(),
                epoch: 0,
                height,
                parents,
                attestation_ids,
                entry_ids: vec![],
                timestamp_ms,
            },
            key,
        )
    }

    #[test]
    fn chain_then_fork_then_merge() {
        let g = genesis_block();
        let mut dag = Dag::new(&g).unwrap();
        let a = child(&dag, vec![g.hash], 1);
        dag.insert(&a).unwrap();
        assert_eq!(dag.tips(), vec![a.hash]);
        let b1 = child(&dag, vec![a.hash], 2);
        let b2 = child(&dag, vec![a.hash], 3);
        dag.insert(&b1).unwrap();
        dag.insert(&b2).unwrap();
        assert_eq!(dag.tips().len(), 2);
        let m = child(&dag, dag.next_parents(), 4);
        assert_eq!(m.header.height, 3);
        dag.insert(&m).unwrap();
        assert_eq!(dag.tips(), vec![m.hash]);
        let mut anc = dag.ancestors(&m.hash);
        anc.sort();
        let mut want = vec![g.hash, a.hash, b1.hash, b2.hash];
        want.sort();
        assert_eq!(anc, want);
        assert!(dag.reaches(&m.hash, &g.hash));
        assert!(!dag.reaches(&b1.hash, &b2.hash));
    }

    #[test]
    fn insert_checks() {
        let g = genesis_block();
        let mut dag = Dag::new(&g).unwrap();
        let a = child(&dag, vec![g.hash], 1);
        dag.insert(&a).unwrap();
        assert_eq!(dag.insert(&a), Err(DagError::Duplicate(a.hash)));

        let kp = Keypair::from_seed([1; 32]);
        let unknown = Hash32::digest(b"nope");
        let orphan = propose(dag.chain_id(), 2, vec![unknown], vec![], 5, &kp).unwrap();
        assert_eq!(dag.insert(&orphan), Err(DagError::UnknownParent(unknown)));

        let tall = propose(dag.chain_id(), 5, vec![a.hash], vec![], 5, &kp).unwrap();
        assert_eq!(
            dag.insert(&tall),
            Err(DagError::WrongHeight {
                expected: 2,
                got: 5
            })
        );
        let other = propose("other", 2, vec![a.hash], vec![], 5, &kp).unwrap();
        assert!(matches!(
            dag.insert(&other),
            Err(DagError::ChainMismatch { .. })
        ));
        let mut forged = child(&dag, vec![a.hash], 9);
        forged.header.parents = (0..=MAX_PARENTS as u32)
            .map(|i| Hash32::digest(&i.to_be_bytes()))
            .collect();
        assert!(matches!(dag.insert(&forged), Err(DagError::Block(_))));
        // Failed inserts changed nothing.
        assert_eq!(dag.len(), 2);
        assert_eq!(dag.tips(), vec![a.hash]);
    }

    /// A random DAG: each new block takes 1–8 random existing blocks as parents.
    pub(crate) fn random_dag(choices: &[Vec<usize>]) -> (Dag, Vec<Hash32>) {
        let g = genesis_block();
        let mut dag = Dag::new(&g).unwrap();
        let mut order = vec![g.hash];
        for (i, picks) in choices.iter().enumerate() {
            let mut parents: Vec<Hash32> = picks.iter().map(|p| order[p % order.len()]).collect();
            parents.sort();
            parents.dedup();
            let b = child(&dag, parents, i as u64 + 1);
            dag.insert(&b).unwrap();
            order.push(b.hash);
        }
        (dag, order)
    }

    proptest! {
        #[test]
        fn tipset_invariants(choices in prop::collection::vec(prop::collection::vec(0usize..1000, 1..=8), 0..60)) {
            let (dag, order) = random_dag(&choices);
            let tips: HashSet<Hash32> = dag.tips().into_iter().collect();
            for h in &order {
                // A tip has no children, and every block with no children is a tip.
                prop_assert_eq!(tips.contains(h), dag.children(h).is_empty());
                // Every block reaches genesis.
                prop_assert!(dag.reaches(h, &dag.genesis()));
            }
            // Heights: 1 + max parent height.
            for h in &order[1..] {
                let hd = dag.header(h).unwrap();
                let m = hd.parents.iter().map(|p| dag.header(p).unwrap().height).max().unwrap();
                prop_assert_eq!(hd.height, m + 1);
            }
            prop_assert_eq!(dag.tips().first().map(|t| dag.header(t).unwrap().height), Some(dag.max_height()));
        }
    }
}
