//! RFC 9162 Merkle trees with BLAKE3 (docs/protocol.md §3.2): roots, inclusion proofs, and
//! their verification by a client that does not trust the node.

use serde::{Deserialize, Serialize};

use crate::hash::Hash32;

/// H(0x00 ‖ digest).
pub fn leaf_hash(digest: &Hash32) -> Hash32 {
    Hash32::digest_parts(&[&[0x00], digest.as_bytes()])
}

/// H(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    Hash32::digest_parts(&[&[0x01], left.as_bytes(), right.as_bytes()])
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Root of the tree over `digests` in order; H("") for none.
pub fn root(digests: &[Hash32]) -> Hash32 {
    if digests.is_empty() {
        return Hash32::digest(b"");
    }
    let leaves: Vec<Hash32> = digests.iter().map(leaf_hash).collect();
    subtree_root(&leaves)
}

fn subtree_root(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// A whole tree kept level by level, for many proofs of one block: building it costs as
/// much as one [`root`], and each proof after that is O(log n) with no hashing.
///
/// Level 0 holds the leaf hashes; each level above pairs neighbours and carries an odd
/// last node up unchanged. That is the RFC 9162 tree (its split at the largest power of
/// two below n leaves exactly the rightmost node unpaired at each level); a test checks
/// it against the recursive definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    levels: Vec<Vec<Hash32>>,
}

impl Tree {
    pub fn new(digests: &[Hash32]) -> Tree {
        let mut levels = vec![digests.iter().map(leaf_hash).collect::<Vec<_>>()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [only] => *only,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        Tree { levels }
    }

    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    pub fn root(&self) -> Hash32 {
        match self.levels.last().and_then(|l| l.first()) {
            Some(r) if !self.is_empty() => *r,
            _ => Hash32::digest(b""),
        }
    }

    /// The inclusion proof of leaf `index`, or `None` when out of range.
    pub fn prove(&self, index: usize) -> Option<InclusionProof> {
        if index >= self.len() {
            return None;
        }
        let mut hashes = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            // A node without a sibling was carried up: no hash at this level.
            if let Some(sibling) = level.get(i ^ 1) {
                hashes.push(*sibling);
            }
            i >>= 1;
        }
        Some(InclusionProof {
            leaf_index: index as u64,
            tree_size: self.len() as u64,
            hashes,
        })
    }
}

/// An audit path (RFC 9162 §2.1.3.1), bottom to top.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub hashes: Vec<Hash32>,
}

/// The proof that `digests[index]` is in the tree, or `None` when `index` is out of range.
pub fn prove(digests: &[Hash32], index: usize) -> Option<InclusionProof> {
    if index >= digests.len() {
        return None;
    }
    let leaves: Vec<Hash32> = digests.iter().map(leaf_hash).collect();
    let mut hashes = Vec::new();
    path(&leaves, index, &mut hashes);
    Some(InclusionProof {
        leaf_index: index as u64,
        tree_size: digests.len() as u64,
        hashes,
    })
}

fn path(leaves: &[Hash32], m: usize, out: &mut Vec<Hash32>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(&leaves[..k], m, out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        path(&leaves[k..], m - k, out);
        out.push(subtree_root(&leaves[..k]));
    }
}

impl InclusionProof {
    /// RFC 9162 §2.1.3.2: true when this proof shows `digest` at `leaf_index` in a tree of
    /// `tree_size` leaves whose root is `root`. The root does not pin the size for every
    /// index (a left leaf of 3 has the same path in a tree of 4), so a client also checks
    /// `tree_size` against the block's `att_count`.
    pub fn verify(&self, digest: &Hash32, root: &Hash32) -> bool {
        if self.leaf_index >= self.tree_size {
            return false;
        }
        let mut f_n = self.leaf_index;
        let mut s_n = self.tree_size - 1;
        let mut r = leaf_hash(digest);
        for p in &self.hashes {
            if s_n == 0 {
                return false;
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = node_hash(p, &r);
                if f_n & 1 == 0 {
                    while f_n & 1 == 0 && f_n != 0 {
                        f_n >>= 1;
                        s_n >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        s_n == 0 && r == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digests(n: usize) -> Vec<Hash32> {
        (0..n as u32)
            .map(|i| Hash32::digest(&i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_by_hand() {
        let d = digests(3);
        assert_eq!(root(&[]), Hash32::digest(b""));
        assert_eq!(root(&d[..1]), leaf_hash(&d[0]));
        let ab = node_hash(&leaf_hash(&d[0]), &leaf_hash(&d[1]));
        assert_eq!(root(&d[..2]), ab);
        // n = 3 splits 2 | 1.
        assert_eq!(root(&d), node_hash(&ab, &leaf_hash(&d[2])));
        let p = prove(&d, 2).unwrap();
        assert_eq!(p.hashes, vec![ab]);
    }

    #[test]
    fn every_proof_of_sizes_1_to_40_verifies() {
        for n in 1..=40 {
            let d = digests(n);
            let r = root(&d);
            for i in 0..n {
                let p = prove(&d, i).unwrap();
                assert!(p.verify(&d[i], &r), "n={n} i={i}");
                // Wrong leaf, wrong index, wrong size, wrong root: all refused.
                assert!(!p.verify(&Hash32::digest(b"x"), &r));
                let mut q = p.clone();
                q.leaf_index = ((i + 1) % n) as u64;
                assert!(n == 1 || !q.verify(&d[i], &r));
                assert!(!p.verify(&d[i], &Hash32::digest(b"root")));
            }
            assert!(prove(&d, n).is_none());
        }
    }

    #[test]
    fn level_tree_equals_the_recursive_definition() {
        for n in 0..=300 {
            let d = digests(n);
            let t = Tree::new(&d);
            assert_eq!(t.root(), root(&d), "root n={n}");
            for i in 0..n {
                assert_eq!(t.prove(i), prove(&d, i), "proof n={n} i={i}");
            }
            assert!(t.prove(n).is_none());
        }
    }

    proptest! {
        #[test]
        fn a_changed_path_hash_breaks_the_proof(n in 2usize..200, i in 0usize..200, j in 0usize..16, bit in 0u8..8) {
            let i = i % n;
            let d = digests(n);
            let r = root(&d);
            let mut p = prove(&d, i).unwrap();
            let j = j % p.hashes.len();
            p.hashes[j].0[0] ^= 1 << bit;
            prop_assert!(!p.verify(&d[i], &r));
        }
    }
}
