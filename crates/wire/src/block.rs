//! The JSON answers of the block routes (`/api/consensus/block/{hash}`,
//! `/api/consensus/blocks`, `/api/consensus/finality/{hash}`).

use bizra_ledger::block::BlockHeader;
use serde::{Deserialize, Serialize};

/// A block with its attestation ids and, once final, its certificate.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockView {
    pub hash: String,
    #[schema(value_type = Object)]
    pub header: BlockHeader,
    pub signature: Option<String>,
    pub attestation_ids: Vec<String>,
    pub finalized: bool,
    pub finalized_at_ms: Option<u64>,
    pub qc: Option<QcView>,
}

/// A quorum certificate: the votes that finalized a block and their weight.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QcView {
    pub votes: Vec<QcVoteView>,
    pub weight: u64,
    pub total_weight: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QcVoteView {
    pub validator_id: String,
    pub signature: String,
}

/// Blocks in height order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockPage {
    pub items: Vec<BlockView>,
    /// Height to ask for next; null when the chain has no more blocks.
    pub next_from_height: Option<u64>,
}

/// How far a block is from final on this node.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FinalityView {
    pub hash: String,
    pub height: u64,
    pub finalized: bool,
    pub weight: u64,
    pub total_weight: u64,
    pub threshold_bps: u64,
    pub voters: Vec<String>,
}
