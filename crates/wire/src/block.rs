//! The JSON answers of the block and ledger routes (`/api/consensus/block/{hash}`,
//! `/api/consensus/blocks`, `/api/consensus/finality/{hash}`, `/api/ledger`).

use bizra_ledger::block::BlockHeader;
use serde::{Deserialize, Serialize};

/// A block with its attestation and entry ids, its certificate once certified, and
/// whether it is committed (in the ledger).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockView {
    pub hash: String,
    #[schema(value_type = Object)]
    pub header: BlockHeader,
    pub signature: Option<String>,
    pub attestation_ids: Vec<String>,
    #[serde(default)]
    pub entry_ids: Vec<String>,
    /// A quorum certificate is stored with it.
    pub certified: bool,
    /// Committed: its attestations have their `log_index`.
    pub finalized: bool,
    pub finalized_at_ms: Option<u64>,
    /// Its place in the order in which blocks were committed (0 for the first), the same
    /// on every node; `None` until committed, and for the genesis block.
    #[serde(default)]
    pub commit_seq: Option<u64>,
    pub qc: Option<QcView>,
}

/// A quorum certificate: the votes that certified a block and their weight.
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

/// Blocks of one epoch in height order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockPage {
    pub epoch: u64,
    pub items: Vec<BlockView>,
    /// Height to ask for next; null when this node has no more blocks of the epoch.
    pub next_from_height: Option<u64>,
}

/// Where a block stands on this node.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FinalityView {
    pub hash: String,
    pub epoch: u64,
    pub height: u64,
    pub certified: bool,
    pub finalized: bool,
    /// Weight of the certificate's voters (0 before it is certified).
    pub weight: u64,
    pub total_weight: u64,
    pub threshold_bps: u64,
    pub voters: Vec<String>,
}

/// One finalized attestation in ledger order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerItem {
    pub log_index: u64,
    pub attestation_id: String,
    pub block_hash: String,
}

/// A page of the ledger: `next` is the `from` of the next page, null at the end.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerPage {
    pub items: Vec<LedgerItem>,
    pub next: Option<u64>,
}
