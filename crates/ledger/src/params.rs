//! Protocol constants (docs/protocol.md §11) and the network identity attestations anchor
//! to.

use serde::{Deserialize, Serialize};

use crate::hash::Hash32;

pub const DEFAULT_CHAIN_ID: &str = "bizra-testnet-001";
pub const DEFAULT_GENESIS_MERKLE_ROOT: &str =
    "d9c9fa504add65a1be737f3fe3447bc056fd1aad2850f491184208354f41926f";

/// Slot length.
pub const SLOT_MS: u64 = 2000;
/// Slots per epoch.
pub const EPOCH_SLOTS: u64 = 32;
/// A block is final when voters hold at least this share of active weight, in basis points.
pub const FINALITY_THRESHOLD_BPS: u64 = 6667;
/// Largest active set.
pub const MAX_ACTIVE_VALIDATORS: usize = 100;
/// Reputation of a new validator, and the least an activation needs.
pub const INITIAL_REP_SCORE: u64 = 500;
/// Reputation ceiling.
pub const MAX_REP_SCORE: u64 = 100_000;
/// Reputation kept per epoch: ×95/100, truncated.
pub const REP_DECAY_NUM: u64 = 95;
pub const REP_DECAY_DEN: u64 = 100;
/// Epochs between an exit request and the exit.
pub const EXIT_DELAY_EPOCHS: u64 = 2;
/// Most parents a block may name: one per active validator.
pub const MAX_PARENTS: usize = MAX_ACTIVE_VALIDATORS;
/// Default largest number of attestations in one block.
pub const MAX_BLOCK_ATTESTATIONS: usize = 4096;

/// The values an attestation's `anchor` must carry to be accepted on this network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAnchor {
    pub chain_id: String,
    pub genesis_merkle_root: Hash32,
}

impl Default for NetworkAnchor {
    fn default() -> Self {
        NetworkAnchor {
            chain_id: DEFAULT_CHAIN_ID.to_string(),
            genesis_merkle_root: DEFAULT_GENESIS_MERKLE_ROOT.parse().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_genesis_root_parses() {
        assert_eq!(
            super::NetworkAnchor::default()
                .genesis_merkle_root
                .to_string(),
            super::DEFAULT_GENESIS_MERKLE_ROOT
        );
    }
}
