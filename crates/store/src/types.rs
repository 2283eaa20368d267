//! The values that go into and come out of a store. Backend-neutral: the SQLite store
//! and a later PostgreSQL store speak exactly these.

use bizra_ledger::attestation::Attestation;
use bizra_ledger::block::Block;
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::Hash32;
use serde::Serialize;

use crate::error::StoreError;

/// `meta` key of the genesis block hash this store belongs to.
pub const META_GENESIS_HASH: &str = "genesis_hash";
/// `meta` key of the chain id this store belongs to.
pub const META_CHAIN_ID: &str = "chain_id";
/// `meta` key of the consensus state [`crate::Store::commit`] writes with each commit.
pub const META_COMMIT_STATE: &str = "commit_state";

/// Largest page any list returns; larger limits are clamped so that one request cannot
/// pull a whole table into memory.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// An attestation that passed the rules, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAttestation {
    pub digest: Hash32,
    pub attester_pubkey: PublicKey,
    pub attester_id: String,
    pub nonce: String,
    /// `Attestation::to_canonical_json()`: stored and served byte for byte.
    pub body: Vec<u8>,
    pub impact_score: f64,
    pub received_at_ms: u64,
}

impl NewAttestation {
    /// From a validated attestation and the digest the rules computed for it (not
    /// recomputed here: the submit path already paid for it).
    pub fn new(
        att: &Attestation,
        digest: Hash32,
        received_at_ms: u64,
    ) -> Result<NewAttestation, StoreError> {
        let attester_pubkey = PublicKey::parse(&att.attester.pubkey_ed25519)
            .map_err(|e| StoreError::Invalid(format!("attester pubkey: {e}")))?;
        let body = att
            .to_canonical_json()
            .map_err(|e| StoreError::Invalid(format!("canonical body: {e}")))?;
        Ok(NewAttestation {
            digest,
            attester_pubkey,
            attester_id: att.attester.id.clone(),
            nonce: att.nonce.clone(),
            body,
            impact_score: att.measurement.impact_score,
            received_at_ms,
        })
    }
}

/// What happened to one item of [`crate::Store::insert_attestations`].
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// Stored now, at this position in the newest-first order.
    Inserted { seq: u64 },
    /// The same digest was already stored (earlier, or earlier in the same batch):
    /// idempotent, here is the stored record.
    AlreadyStored { record: Box<AttestationRecord> },
    /// The attester's key already used this nonce for a different attestation.
    DuplicateNonce { existing_digest: Hash32 },
}

/// What happened to one item of [`crate::Store::insert_block_attestations`]: attestations
/// carried by a block, stored whatever their nonce says (the ledger order decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockAttestation {
    /// Inserted now into `attestations` (counted, and pending until placed).
    Stored,
    /// The digest was already stored, in `attestations` or as a contested attestation
    /// (earlier, or earlier in the same call).
    Known,
    /// Inserted now as a contested attestation: `owner`, another digest, holds its
    /// attester key and nonce in `attestations`.
    Contested { owner: Hash32 },
}

/// The life of an attestation (docs/protocol.md §2.5), from what this store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationStatus {
    /// Durable, not placed in a block here (a contested one included).
    Accepted,
    /// Placed in a block that has no QC.
    Included,
    /// Placed in a block that has its QC.
    Certified,
    /// In the ledger: it has a `log_index`.
    Finalized,
    /// Rejected by the ledger order (`duplicate_nonce`): another digest with its attester
    /// key and nonce came first.
    Rejected,
}

impl AttestationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationStatus::Accepted => "accepted",
            AttestationStatus::Included => "included",
            AttestationStatus::Certified => "certified",
            AttestationStatus::Finalized => "finalized",
            AttestationStatus::Rejected => "rejected",
        }
    }
}

/// Where an attestation sits: the proof is `block.proof(index)` of that block. For an
/// included or certified attestation its placement (the first block that held it); for a
/// finalized one the block where the ledger met it; for a rejected one the block where the
/// ledger order rejected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub hash: Hash32,
    pub height: u64,
    pub index: u64,
}

/// A stored attestation and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestationRecord {
    /// Position in insertion order; cursors are built from it.
    pub seq: u64,
    pub digest: Hash32,
    pub attester_pubkey: PublicKey,
    pub attester_id: String,
    pub nonce: String,
    /// The canonical JSON bytes, signature included.
    pub body: Vec<u8>,
    pub impact_score: f64,
    pub received_at_ms: u64,
    pub status: AttestationStatus,
    pub block: Option<BlockRef>,
    /// Its position in the ledger, once finalized.
    pub log_index: Option<u64>,
    /// The ledger digest that used its attester key and nonce first, once rejected.
    pub rejected_by: Option<Hash32>,
}

impl AttestationRecord {
    /// The stored attestation, parsed back.
    pub fn attestation(&self) -> Result<Attestation, StoreError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| StoreError::corrupt(format!("attestation {} body: {e}", self.digest)))
    }
}

/// A block with what the store knows about its certification and commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    pub block: Block,
    /// Committed: in the ledger's block order (docs/protocol.md §3.6).
    pub finalized: bool,
    /// When it was committed.
    pub finalized_at_ms: Option<u64>,
    /// The block's own QC, once certified ([`crate::Store::mark_certified`]).
    pub qc: Option<QuorumCertificate>,
    pub created_at_ms: u64,
    /// A QC for it is stored.
    pub certified: bool,
    pub certified_at_ms: Option<u64>,
    /// Its position in the ledger's block order (0, 1, 2, …), once committed.
    pub commit_seq: Option<u64>,
}

/// One finalized attestation: its position in the ledger order and where the ledger met
/// it (a committed block and the attestation's index in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LedgerRow {
    pub log_index: u64,
    pub digest: Hash32,
    pub block_hash: Hash32,
    pub block_index: u64,
}

/// One attestation the ledger order rejected (`duplicate_nonce`): `owner` is the ledger
/// digest that used its attester key and nonce first; the block and index are where the
/// ledger order met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejectedRow {
    pub digest: Hash32,
    pub owner: Hash32,
    pub block_hash: Hash32,
    pub block_index: u64,
}

/// What one step of the ledger order commits ([`crate::Store::commit`]), in one
/// transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitBatch {
    /// Blocks newly committed, in ledger order; their `commit_seq` continues the stored
    /// block order.
    pub blocks: Vec<Hash32>,
    /// Attestations newly in the ledger, `log_index` ascending from the ledger's length.
    pub appended: Vec<LedgerRow>,
    pub rejected: Vec<RejectedRow>,
    /// Registry entry seqs newly committed, in ledger order; their `commit_seq` continues
    /// the stored entry order.
    pub entries: Vec<u64>,
    /// The consensus state after this step (epoch, last leader height, …), kept as
    /// [`META_COMMIT_STATE`].
    pub state: serde_json::Value,
    /// When: the blocks' `finalized_at_ms`.
    pub at_ms: u64,
}

/// What [`crate::Store::insert_block`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockInsert {
    Inserted,
    /// The identical block was already stored; nothing changed.
    AlreadyStored,
}

/// What [`crate::Store::insert_peer_block`] did: one outcome per attestation of the block,
/// in block order (as [`crate::Store::insert_block_attestations`] answers), what became of
/// the block (as [`crate::Store::insert_block`] answers), and whether the certificate given
/// certified it now (as [`crate::Store::mark_certified`] answers; `false` without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBlockInsert {
    pub attestations: Vec<BlockAttestation>,
    pub block: BlockInsert,
    pub newly_certified: bool,
}

/// What [`crate::Store::record_signing`] (and [`crate::Store::insert_own_block`]) found
/// for a slot (epoch, height, proposer): the safety rule that a validator signs at most
/// one block per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// The slot was free; it is this block's now, durably, and may be signed.
    First,
    /// This very block was recorded for the slot before: signing it again is safe.
    Again,
    /// Another block, `signed`, was recorded for the slot: do not sign.
    Conflict { signed: Hash32 },
}

/// What [`crate::Store::bind_identity`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityCheck {
    /// The store was empty and now belongs to this chain.
    Fresh,
    /// The store already belonged to this chain.
    Matches,
}

/// A validator-registry ledger entry (registration, exit, slashing; docs/protocol.md §3.5).
/// The body is opaque here: the registry types own its meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    pub seq: u64,
    pub kind: String,
    /// The epoch the caller filed it under.
    pub epoch: u64,
    pub body: serde_json::Value,
    /// The block that includes it; `None` while pending.
    pub block_hash: Option<Hash32>,
    /// Its position in the ledger's entry order, once committed.
    pub commit_seq: Option<u64>,
}

/// Attestations included in blocks of a time range, for epoch summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactSummary {
    pub attestations: u64,
    pub total_impact: f64,
    /// Highest total impact first, ties by attester id.
    pub top: Vec<AttesterImpact>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttesterImpact {
    pub attester_id: String,
    pub attestations: u64,
    pub total_impact: f64,
}

/// Connections of all the store's pools, for `db_pool_connections{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    pub idle: u32,
    pub in_use: u32,
    /// The most connections the pools may open.
    pub max_size: u32,
    /// Write transactions waiting for the embedded store's writer thread (bounded). Always
    /// 0 on PostgreSQL, whose writes wait for a pool connection instead.
    pub queued_writes: u32,
}
