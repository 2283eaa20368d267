//! A simulated network for the consensus core: a random certified DAG (validators that
//! skip heights, blocks that cite random quorums of the height below), delivered to
//! several nodes in different random orders, each running its own DAG and committer.
//! Every node must commit the same sequence, or a prefix of it.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::block::{Block, BlockContent};
use crate::crypto::Keypair;
use crate::genesis::Genesis;
use crate::hash::Hash32;
use crate::vote::{QcVote, QuorumCertificate, Vote};

use super::commit::{CommittedLeader, Committer};
use super::committee::Committee;
use super::dag::{Dag, DagError};

pub(super) struct Net {
    pub(super) keys: Vec<Keypair>,
    pub(super) committee: Committee,
    pub(super) genesis: Block,
}

impl Net {
    pub(super) fn new(weights: &[u64]) -> Net {
        let keys: Vec<Keypair> = (0..weights.len())
            .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
            .collect();
        let committee = Committee::new(0, keys.iter().zip(weights).map(|(k, w)| (k.public(), *w)));
        let genesis = Genesis::single(
            keys[0].public(),
            "http://127.0.0.1:1",
            "2026-01-01T00:00:00Z",
        )
        .block()
        .expect("genesis");
        Net {
            keys,
            committee,
            genesis,
        }
    }

    pub(super) fn block(&self, proposer: usize, height: u64, parents: Vec<Hash32>) -> Block {
        Block::propose(
            BlockContent {
                chain_id: self.genesis.header.chain_id.clone(),
                epoch: 0,
                height,
                parents,
                attestation_ids: vec![Hash32::digest(&[proposer as u8, height as u8])],
                entry_ids: vec![],
                timestamp_ms: self.genesis.header.timestamp_ms + height * 100 + proposer as u64,
            },
            &self.keys[proposer],
        )
        .expect("block")
    }

    /// A certificate with every member's vote.
    pub(super) fn qc(&self, block: &Block) -> QuorumCertificate {
        QuorumCertificate {
            block_hash: block.hash,
            votes: self
                .keys
                .iter()
                .map(|k| {
                    let v = Vote::sign(block.hash, k);
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

    /// A random DAG of `heights` heights: at each height some validators are absent
    /// (never more than the DAG can bear), and each block cites a random quorum of the
    /// height below (every block there with probability `full`).
    pub(super) fn random_dag(&self, rng: &mut StdRng, heights: u64, full: f64) -> Vec<Block> {
        let n = self.keys.len();
        let mut out = Vec::new();
        let mut below: Vec<(usize, Block)> = Vec::new();
        for h in 1..=heights {
            let mut present: Vec<usize> = (0..n).collect();
            present.shuffle(rng);
            // Drop validators while the rest still hold a quorum.
            let mut kept: Vec<usize> = Vec::new();
            for (i, v) in present.iter().enumerate() {
                let rest_weight = self.weight(present[i + 1..].iter().chain(&kept).copied());
                if rng.gen_bool(0.2) && self.committee.is_quorum(rest_weight) {
                    continue;
                }
                kept.push(*v);
            }
            let mut this: Vec<(usize, Block)> = Vec::new();
            for v in kept {
                let parents = if h == 1 {
                    vec![self.genesis.hash]
                } else if rng.gen_bool(full) {
                    below.iter().map(|(_, b)| b.hash).collect()
                } else {
                    let mut pick = below.clone();
                    pick.shuffle(rng);
                    let mut chosen = Vec::new();
                    for (p, b) in pick {
                        if self
                            .committee
                            .is_quorum(self.weight(chosen.iter().map(|(p, _)| *p)))
                        {
                            break;
                        }
                        chosen.push((p, b));
                    }
                    chosen.into_iter().map(|(_, b)| b.hash).collect()
                };
                this.push((v, self.block(v, h, parents)));
            }
            out.extend(this.iter().map(|(_, b)| b.clone()));
            below = this;
        }
        out
    }

    fn weight(&self, members: impl Iterator<Item = usize>) -> u64 {
        members
            .map(|i| self.committee.weight(&self.keys[i].public().validator_id()))
            .sum()
    }
}

/// A random order of `blocks` in which every block comes after its parents. About a
/// quarter of the blocks are slow: they arrive only when nothing else can, which is how
/// a block that few others cite reaches a node late.
pub(super) fn delivery_order(rng: &mut StdRng, blocks: &[Block], genesis: &Hash32) -> Vec<Block> {
    let slow: HashSet<Hash32> = blocks
        .iter()
        .filter(|_| rng.gen_bool(0.25))
        .map(|b| b.hash)
        .collect();
    let mut delivered: HashSet<Hash32> = [*genesis].into();
    let mut waiting: Vec<&Block> = blocks.iter().collect();
    let mut out = Vec::new();
    while !waiting.is_empty() {
        let ready: Vec<usize> = (0..waiting.len())
            .filter(|i| {
                waiting[*i]
                    .header
                    .parents
                    .iter()
                    .all(|p| delivered.contains(p))
            })
            .collect();
        let fast: Vec<usize> = ready
            .iter()
            .copied()
            .filter(|i| !slow.contains(&waiting[*i].hash))
            .collect();
        let from = if fast.is_empty() { &ready } else { &fast };
        let pick = from[rng.gen_range(0..from.len())];
        let b = waiting.swap_remove(pick);
        delivered.insert(b.hash);
        out.push(b.clone());
    }
    out
}

/// One node: its DAG and committer, and what it committed.
pub(super) struct Node {
    pub(super) dag: Dag,
    pub(super) committer: Committer,
    pub(super) leaders: Vec<CommittedLeader>,
    pub(super) sequence: Vec<Hash32>,
    pub(super) collect: bool,
}

impl Node {
    pub(super) fn new(net: &Net, gc_depth: u64, collect: bool) -> Node {
        Node {
            dag: Dag::new(0, &net.genesis),
            committer: Committer::new(gc_depth),
            leaders: Vec::new(),
            sequence: Vec::new(),
            collect,
        }
    }

    pub(super) fn deliver(&mut self, net: &Net, block: &Block, qc: &QuorumCertificate) {
        match self.dag.insert(block, qc, &net.committee) {
            Ok(_) => {}
            // Late, below what any commit can reach: a node that collects garbage drops
            // it, and loses nothing by that.
            Err(DagError::Stale { .. }) if self.collect => return,
            Err(e) => panic!("a certified block of the simulation is refused: {e}"),
        }
        let commits = self.committer.commit(&self.dag, &net.committee, |_| 0);
        for l in commits.leaders {
            self.sequence.extend(l.blocks.iter().copied());
            self.leaders.push(l);
        }
        if self.collect {
            self.committer.collect_garbage(&mut self.dag);
        }
    }
}

fn is_prefix(a: &[Hash32], b: &[Hash32]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Runs one schedule and checks what every node committed.
fn run(seed: u64, weights: &[u64], heights: u64, full: f64, gc_depth: u64, nodes: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let net = Net::new(weights);
    let blocks = net.random_dag(&mut rng, heights, full);
    let qcs: HashMap<Hash32, QuorumCertificate> =
        blocks.iter().map(|b| (b.hash, net.qc(b))).collect();
    let mut finished: Vec<Node> = Vec::new();
    for i in 0..nodes {
        let order = delivery_order(&mut rng, &blocks, &net.genesis.hash);
        // Some nodes collect garbage as they go, some never do: the sequence must not
        // depend on it.
        let mut node = Node::new(&net, gc_depth, i % 2 == 1);
        for b in &order {
            node.deliver(&net, b, &qcs[&b.hash]);
            for other in &finished {
                assert!(
                    is_prefix(&node.sequence, &other.sequence),
                    "seed {seed}: node {i} diverged from an earlier node"
                );
            }
        }
        check_sequence(&net, &blocks, &node, gc_depth);
        finished.push(node);
    }
    // A schedule that commits nothing would prove nothing.
    assert!(
        finished[0].leaders.len() >= 2,
        "seed {seed}: hardly anything committed"
    );
    // Nodes that received the same DAG committed the same sequence, not only prefixes.
    for n in &finished[1..] {
        assert_eq!(n.sequence, finished[0].sequence, "seed {seed}");
    }
}

/// A committed sequence never repeats a block, commits leaders at rising heights, and
/// appends each block after its parents (those the window still held).
fn check_sequence(net: &Net, blocks: &[Block], node: &Node, gc_depth: u64) {
    let by_hash: HashMap<Hash32, &Block> = blocks.iter().map(|b| (b.hash, b)).collect();
    let mut at: HashMap<Hash32, usize> = HashMap::new();
    for (i, h) in node.sequence.iter().enumerate() {
        assert!(at.insert(*h, i).is_none(), "block committed twice");
    }
    for w in node.leaders.windows(2) {
        assert!(w[0].height < w[1].height);
    }
    for l in &node.leaders {
        assert_eq!(
            l.blocks.last(),
            Some(&l.leader),
            "a leader is last in its history"
        );
        let keys: Vec<(u64, Hash32)> = l
            .blocks
            .iter()
            .map(|h| (by_hash[h].header.height, *h))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "history by height, then hash"
        );
        let leader = by_hash[&l.leader];
        assert_eq!(Some(leader.header.proposer), net.committee.leader(l.height));
        for h in &l.blocks {
            for p in &by_hash[h].header.parents {
                if let (Some(pi), Some(hi)) = (at.get(p), at.get(h)) {
                    assert!(pi < hi, "a parent after its child");
                } else if *p != net.genesis.hash {
                    // A parent that never entered the ledger fell below the window.
                    let ph = by_hash[p].header.height;
                    assert!(
                        ph + gc_depth < l.height,
                        "a parent missing within the window"
                    );
                }
            }
        }
    }
}

#[test]
fn four_equal_validators_commit_one_sequence() {
    for seed in 0..8 {
        run(seed, &[100, 100, 100, 100], 30, 0.5, 50, 4);
    }
}

#[test]
fn a_full_dag_commits_every_leader() {
    let mut rng = StdRng::seed_from_u64(1);
    let net = Net::new(&[1, 1, 1, 1]);
    // Every validator at every height, every block citing every block below: each
    // leader has all the support it can, and all but the last two heights commit.
    let mut blocks = Vec::new();
    let mut below: Vec<Hash32> = vec![net.genesis.hash];
    for h in 1..=10u64 {
        let this: Vec<Block> = (0..4).map(|v| net.block(v, h, below.clone())).collect();
        below = this.iter().map(|b| b.hash).collect();
        blocks.extend(this);
    }
    let order = delivery_order(&mut rng, &blocks, &net.genesis.hash);
    let mut node = Node::new(&net, 50, false);
    for b in &order {
        node.deliver(&net, b, &net.qc(b));
    }
    let heights: Vec<u64> = node.leaders.iter().map(|l| l.height).collect();
    assert_eq!(heights, vec![2, 4, 6, 8]);
    // Heights 1–7 and the leader of 8 are in the ledger; the rest of 8, 9 and 10 wait
    // for the next leader.
    assert_eq!(node.sequence.len(), 7 * 4 + 1);
}

#[test]
fn an_absent_leader_is_skipped_and_a_weak_one_committed_through_the_next() {
    let net = Net::new(&[1, 1, 1, 1]);
    let leader2 = net
        .keys
        .iter()
        .position(|k| Some(k.public().validator_id()) == net.committee.leader(2))
        .expect("leader of 2");
    let mut node = Node::new(&net, 50, false);
    let deliver = |node: &mut Node, b: &Block| node.deliver(&net, b, &net.qc(b));
    let h1: Vec<Block> = (0..4)
        .map(|v| net.block(v, 1, vec![net.genesis.hash]))
        .collect();
    h1.iter().for_each(|b| deliver(&mut node, b));
    let all1: Vec<Hash32> = h1.iter().map(|b| b.hash).collect();
    let h2: Vec<Block> = (0..4).map(|v| net.block(v, 2, all1.clone())).collect();
    h2.iter().for_each(|b| deliver(&mut node, b));
    let l2 = h2[leader2].hash;
    // At height 3 only one block cites the leader of 2: 1/4 is not more than 1/3.
    let without: Vec<Hash32> = h2.iter().filter(|b| b.hash != l2).map(|b| b.hash).collect();
    let all2: Vec<Hash32> = h2.iter().map(|b| b.hash).collect();
    let h3: Vec<Block> = (0..4)
        .map(|v| {
            net.block(
                v,
                3,
                if v == 0 {
                    all2.clone()
                } else {
                    without.clone()
                },
            )
        })
        .collect();
    h3.iter().for_each(|b| deliver(&mut node, b));
    assert!(
        node.leaders.is_empty(),
        "no direct support for the leader of 2"
    );
    // Height 4 cites all of height 3, so its leader reaches the leader of 2 through the
    // one block that cited it; height 5 supports the leader of 4.
    let all3: Vec<Hash32> = h3.iter().map(|b| b.hash).collect();
    let h4: Vec<Block> = (0..4).map(|v| net.block(v, 4, all3.clone())).collect();
    h4.iter().for_each(|b| deliver(&mut node, b));
    let all4: Vec<Hash32> = h4.iter().map(|b| b.hash).collect();
    let h5: Vec<Block> = (0..4).map(|v| net.block(v, 5, all4.clone())).collect();
    h5.iter().for_each(|b| deliver(&mut node, b));
    let heights: Vec<u64> = node.leaders.iter().map(|l| l.height).collect();
    assert_eq!(heights, vec![2, 4]);
    assert_eq!(node.leaders[0].leader, l2);
    // The leader of 2 brought height 1 and itself; the leader of 4 the rest of 2, all
    // of 3 and itself.
    assert_eq!(node.leaders[0].blocks.len(), 5);
    assert_eq!(node.leaders[1].blocks.len(), 3 + 4 + 1);

    // A network where the leader of 2 never made a block: it is skipped.
    let mut node = Node::new(&net, 50, false);
    h1.iter().for_each(|b| deliver(&mut node, b));
    let h2: Vec<Block> = (0..4)
        .filter(|v| *v != leader2)
        .map(|v| net.block(v, 2, all1.clone()))
        .collect();
    h2.iter().for_each(|b| deliver(&mut node, b));
    let all2: Vec<Hash32> = h2.iter().map(|b| b.hash).collect();
    let h3: Vec<Block> = (0..4).map(|v| net.block(v, 3, all2.clone())).collect();
    h3.iter().for_each(|b| deliver(&mut node, b));
    let all3: Vec<Hash32> = h3.iter().map(|b| b.hash).collect();
    let h4: Vec<Block> = (0..4).map(|v| net.block(v, 4, all3.clone())).collect();
    h4.iter().for_each(|b| deliver(&mut node, b));
    let all4: Vec<Hash32> = h4.iter().map(|b| b.hash).collect();
    let h5: Vec<Block> = (0..4).map(|v| net.block(v, 5, all4.clone())).collect();
    h5.iter().for_each(|b| deliver(&mut node, b));
    let heights: Vec<u64> = node.leaders.iter().map(|l| l.height).collect();
    assert_eq!(heights, vec![4]);
    assert_eq!(node.sequence.len(), 4 + 3 + 4 + 1);
}

#[test]
fn garbage_collection_drops_only_what_can_never_commit() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut rng = StdRng::seed_from_u64(7);
    let blocks = net.random_dag(&mut rng, 40, 0.3);
    let mut node = Node::new(&net, 4, true);
    let mut dead = Vec::new();
    for b in &blocks {
        node.dag
            .insert(b, &net.qc(b), &net.committee)
            .expect("insert");
        let c = node.committer.commit(&node.dag, &net.committee, |_| 0);
        node.sequence.extend(c.blocks().copied());
        dead.extend(node.committer.collect_garbage(&mut node.dag));
    }
    let committed: HashSet<Hash32> = node.sequence.iter().copied().collect();
    for d in &dead {
        assert!(!committed.contains(d), "a committed block reported dead");
    }
    // Everything delivered is committed, dead, or still above the horizon.
    for b in &blocks {
        assert!(
            committed.contains(&b.hash)
                || dead.contains(&b.hash)
                || b.header.height >= node.committer.horizon()
        );
    }
    assert!(node.dag.horizon() > 1, "the DAG was pruned");
}

#[test]
fn the_first_leader_in_a_later_epoch_closes_it() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut blocks = Vec::new();
    let mut below: Vec<Hash32> = vec![net.genesis.hash];
    for h in 1..=12u64 {
        let this: Vec<Block> = (0..4).map(|v| net.block(v, h, below.clone())).collect();
        below = this.iter().map(|b| b.hash).collect();
        blocks.extend(this);
    }
    // Epoch 1 begins at the timestamps of height 5.
    let boundary = net.genesis.header.timestamp_ms + 500;
    let epoch_of = |t: u64| u64::from(t >= boundary);
    let mut dag = Dag::new(0, &net.genesis);
    let mut committer = Committer::new(50);
    let mut leaders = Vec::new();
    let mut closed = None;
    for b in &blocks {
        dag.insert(b, &net.qc(b), &net.committee).expect("insert");
        let c = committer.commit(&dag, &net.committee, epoch_of);
        leaders.extend(c.leaders.iter().map(|l| l.height));
        if c.closed.is_some() {
            closed = c.closed;
        }
    }
    assert_eq!(leaders, vec![2, 4, 6], "6 is the first leader in epoch 1");
    let close = closed.expect("the epoch closed");
    assert_eq!(close.next_epoch, 1);
    assert_eq!(dag.header(&close.closing).map(|h| h.height), Some(6));
    assert!(committer.is_closed());
    assert!(committer.commit(&dag, &net.committee, epoch_of).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random DAGs, weights, delivery orders and GC depths: one committed sequence.
    #[test]
    fn every_node_commits_a_prefix_of_one_sequence(
        seed in any::<u64>(),
        weights in prop::collection::vec(1u64..1000, 3..=7),
        full in 0.0f64..1.0,
        gc_depth in 2u64..60,
    ) {
        run(seed, &weights, 24, full, gc_depth, 3);
    }
}

#[test]
fn a_block_nobody_cited_is_left_behind_once_the_dag_has_moved_on() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut dag = Dag::new(0, &net.genesis);
    let insert = |dag: &mut Dag, b: &Block| {
        dag.insert(b, &net.qc(b), &net.committee).expect("insert");
    };
    let h1: Vec<Block> = (0..4)
        .map(|v| net.block(v, 1, vec![net.genesis.hash]))
        .collect();
    h1.iter().for_each(|b| insert(&mut dag, b));
    // Height 2 cites validator 3's block of height 1 from no block.
    let mut cited: Vec<Hash32> = h1[..3].iter().map(|b| b.hash).collect();
    cited.sort();
    let mut below = cited.clone();
    let late = h1[3].hash;
    let id = |v: usize| net.keys[v].public().validator_id();
    for h in 2..=4u64 {
        let this: Vec<Block> = (0..3).map(|v| net.block(v, h, below.clone())).collect();
        this.iter().for_each(|b| insert(&mut dag, b));
        below = this.iter().map(|b| b.hash).collect();
        below.sort();
    }
    // Three heights past it: left behind; validator 0's blocks are all cited.
    assert_eq!(dag.uncited(&id(3), 3), vec![late]);
    assert!(dag.uncited(&id(0), 3).is_empty());
    // Not while the DAG is fewer heights past it than the margin asks.
    assert!(dag.uncited(&id(3), 4).is_empty());
    // The top blocks are cited by nothing yet, but are within the margin.
    assert!(dag.uncited(&id(1), 1).is_empty());
    assert_eq!(
        dag.uncited(&id(1), 0).len(),
        1,
        "the top block, with no margin"
    );
    // A margin past the whole DAG asks for nothing.
    assert!(dag.uncited(&id(3), 10).is_empty());
}
