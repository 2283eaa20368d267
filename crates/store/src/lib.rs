//! The durable state of a BIZRA Node0: attestations (submitted here, or carried by other
//! validators' blocks), blocks and their certificates, the ledger order (committed blocks,
//! finalized and rejected attestations, committed registry entries), votes, the signing
//! guard, validator registry entries and node identity.
//!
//! # Shape
//! - [`Store`] is the interface every backend implements. Its methods return
//!   `impl Future + Send` (stable return-position `impl Trait` in traits), so generic code
//!   can `tokio::spawn` them and no call is boxed or dynamically dispatched.
//! - [`SqliteStore`] is the embedded backend: one file, WAL, one writer
//!   connection, a pool of read-only readers.
//! - [`PostgresStore`] is the shared backend: one pool, the same tables, usable by several
//!   node replicas at once.
//! - [`AnyStore`] is the concrete type the node holds: an enum over the backends with
//!   static dispatch, so the node is not generic over the store. Tests that must run on
//!   every backend are generic over [`Store`] (`tests/suite`).
//! - What does not depend on the driver is written once, in the crate's own modules
//!   (`rows`, `placement`, `contested`, `ledger`, `signing`, `identity`, `header_version`,
//!   `migrations`, `codec`): row checks, verdicts, migration bookkeeping. `sqlite` and
//!   `postgres` hold their SQL, transactions and driver calls.
//!
//! # Semantics every backend keeps
//! - A write returns only after it has committed durably; a batch is one transaction.
//! - `seq` only grows, is visible in commit order, and rows are never deleted, so
//!   newest-first cursor pages never skip or repeat under concurrent inserts. (SQLite gets
//!   commit order from its single writer; PostgreSQL from an advisory lock that every
//!   attestation insert holds until it commits.)
//! - An attestation has at most one placement, its first block's. A block-borne body whose
//!   attester key and nonce another digest holds is kept as contested; the ledger order
//!   decides, and the submit path's unique (key, nonce) rule stays on `attestations`.
//! - The ledger only grows: `log_index` continues without a gap, a committed block stays
//!   committed, and each commit is one transaction. Rows are deleted nowhere; `revive`
//!   only unplaces what dead blocks held and the ledger has not settled, and an attestation
//!   the ledger settled is always placed, so it is never pending.
//! - A slot (epoch, height, proposer) recorded as signed is durable before the caller may
//!   sign, and is never given to another block.
//! - A store holding block headers of another version than this build's is refused at
//!   open, before any migration (`header_version`).

use std::future::Future;

use bizra_ledger::block::Block;
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;

mod any;
mod codec;
mod contested;
pub mod cursor;
pub mod error;
mod header_version;
mod identity;
mod ledger;
mod migrations;
mod placement;
pub mod postgres;
mod rows;
mod signing;
pub mod sqlite;
pub mod types;

pub use any::AnyStore;
pub use cursor::{Cursor, CursorError, Page};
pub use error::StoreError;
pub use header_version::META_HEADER_VERSION;
pub use postgres::{PgConfig, PostgresStore};
pub use sqlite::{SqliteConfig, SqliteStore};
pub use types::*;

/// The storage interface of a node. See the crate documentation for the guarantees.
pub trait Store: Send + Sync + 'static {
    // --- identity and single values ---

    fn set_meta(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get_meta(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Binds an empty store to this chain, or checks that it already belongs to it; a
    /// different chain id or genesis hash is a `Conflict` (refuse to start). Binding
    /// records the block header version too ([`META_HEADER_VERSION`]).
    fn bind_identity(
        &self,
        chain_id: &str,
        genesis_hash: &Hash32,
    ) -> impl Future<Output = Result<IdentityCheck, StoreError>> + Send;

    // --- attestations ---

    /// Stores a batch in one transaction (the node's group commit); one outcome per
    /// item, in order. Duplicates inside the batch are judged against the items before
    /// them. Returns after the commit is durable.
    fn insert_attestations(
        &self,
        items: &[NewAttestation],
    ) -> impl Future<Output = Result<Vec<InsertOutcome>, StoreError>> + Send;

    /// Stores the attestations a block carries (another validator's), in one transaction;
    /// one outcome per item, in order. An item new here goes into `attestations` as a
    /// submission would (`Stored`); one whose digest is stored already, in either table or
    /// earlier in the call, is `Known`; one whose attester key and nonce another digest
    /// holds in `attestations` is kept as a contested attestation (`Contested`): the
    /// ledger order decides between them. Never refuses an item for its nonce.
    fn insert_block_attestations(
        &self,
        items: &[NewAttestation],
    ) -> impl Future<Output = Result<Vec<BlockAttestation>, StoreError>> + Send;

    /// The digest of the attestation that used `nonce` under `pubkey`, if any. Answers
    /// from `attestations` only (the submit rule), never from contested attestations.
    fn nonce_owner(
        &self,
        pubkey: &PublicKey,
        nonce: &str,
    ) -> impl Future<Output = Result<Option<Hash32>, StoreError>> + Send;

    /// [`Store::nonce_owner`] for many (key, nonce) pairs in one round trip; one answer
    /// per pair, in order.
    fn nonce_owners(
        &self,
        pairs: &[(PublicKey, String)],
    ) -> impl Future<Output = Result<Vec<Option<Hash32>>, StoreError>> + Send;

    /// The attestation with this digest, submitted here or carried by a block (a
    /// contested attestation has no placement here).
    fn get_attestation(
        &self,
        digest: &Hash32,
    ) -> impl Future<Output = Result<Option<AttestationRecord>, StoreError>> + Send;

    /// Newest first. `attester` filters on the attester id; `cursor` continues a walk;
    /// `limit` is clamped to 1..=[`MAX_PAGE_LIMIT`].
    fn list_attestations(
        &self,
        attester: Option<&str>,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<AttestationRecord>, StoreError>> + Send;

    /// Attestations submitted here that are in no block (never placed, or released by
    /// [`Store::revive`]), oldest first: the next block's content. Never a contested,
    /// finalized or rejected one (the ledger places what it settles).
    fn pending_attestations(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Hash32>, StoreError>> + Send;

    /// Rows of `attestations` (submitted here or new from a block; contested ones apart).
    fn count_attestations(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// How many [`Store::pending_attestations`] would return without a limit.
    fn count_pending_attestations(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Attestations in blocks whose header timestamp is in `[from_ms, to_ms)`, with the
    /// `top` attesters by total impact (epoch summaries).
    fn impact_summary(
        &self,
        from_ms: u64,
        to_ms: u64,
        top: u32,
    ) -> impl Future<Output = Result<ImpactSummary, StoreError>> + Send;

    // --- blocks and finality ---

    /// Stores a block and places its attestations in it, in one transaction. An
    /// attestation keeps its first placement: one already in another block (two
    /// validators included it) stays there, and a contested one is never placed.
    /// `NotFound` when an attestation is not stored (in either table), `Conflict` when one
    /// is twice in this block or the hash is stored with other content; nothing is
    /// written then. The identical block again is `AlreadyStored`.
    fn insert_block(
        &self,
        block: &Block,
        created_at_ms: u64,
    ) -> impl Future<Output = Result<BlockInsert, StoreError>> + Send;

    /// [`Store::insert_block`], but only while `holder` holds the lease `lease`, checked
    /// in the same transaction (a fence: a producer whose lease lapsed cannot store a
    /// block, however long it was paused). `Conflict` when it does not hold it.
    fn insert_block_fenced(
        &self,
        block: &Block,
        created_at_ms: u64,
        lease: &str,
        holder: &str,
    ) -> impl Future<Output = Result<BlockInsert, StoreError>> + Send;

    /// Stores another validator's block with its attestations
    /// ([`Store::insert_block_attestations`] semantics: new ones stored, known ones left,
    /// (key, nonce) conflicts filed as contested), then the block and its placement
    /// ([`Store::insert_block`] semantics: first placement kept), and, when `qc` is given,
    /// its certificate ([`Store::mark_certified`] semantics with `certified_at_ms`,
    /// idempotent), all in one transaction: either everything is written or nothing.
    /// Returns the per-attestation outcomes, whether the block was new
    /// (`Inserted`/`AlreadyStored`), and whether the QC certified it now.
    ///
    /// `attestations` must be exactly the block's, in block order (their digests are
    /// `block.attestation_ids`), and `qc` the block's own (`qc.block_hash == block.hash`):
    /// `Invalid` otherwise, before any transaction (as for a block whose header does not
    /// hash to its hash, or an attestation the tables cannot hold). `Conflict` when an
    /// attestation is twice in the block or the hash is stored with other content;
    /// nothing is written then.
    ///
    /// The embedded store writes a block of up to its placement batch (128 attestations)
    /// in exactly one transaction. A larger one is placed as [`Store::insert_block`]
    /// places it, in several transactions: the attestations go in the first (with the
    /// block row and the first placements), the certificate in the last (with the end of
    /// the placement). A failure or a crash between them leaves the attestations stored as
    /// [`Store::insert_block_attestations`] would have (the new ones pending), and neither
    /// the block nor its certificate (a crash is undone at the next open); the same call
    /// again then stores the rest, its attestations answering `Known`.
    fn insert_peer_block(
        &self,
        block: &Block,
        attestations: &[NewAttestation],
        qc: Option<&QuorumCertificate>,
        created_at_ms: u64,
        certified_at_ms: u64,
    ) -> impl Future<Output = Result<PeerBlockInsert, StoreError>> + Send;

    fn get_block(
        &self,
        hash: &Hash32,
    ) -> impl Future<Output = Result<Option<StoredBlock>, StoreError>> + Send;

    /// Blocks with height ≥ `from`, by height then hash; `limit` clamped as for lists.
    fn blocks_from_height(
        &self,
        from: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredBlock>, StoreError>> + Send;

    /// The blocks of `epoch` with height ≥ `from_height`, by height then hash (the API,
    /// peers catching up); `limit` clamped as for lists.
    fn blocks_of_epoch(
        &self,
        epoch: u64,
        from_height: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredBlock>, StoreError>> + Send;

    /// Every block by epoch, height and hash, for rebuilding the in-memory DAG at start.
    fn all_blocks(&self) -> impl Future<Output = Result<Vec<StoredBlock>, StoreError>> + Send;

    /// Stores `qc` on its block (`qc.block_hash`) as the block's own certificate, with
    /// `at_ms` as `certified_at_ms`: `true` when the block was not certified before, `false`
    /// when it was (the first certificate and its time stay). `NotFound` for an unknown
    /// block. The caller checks the certificate.
    fn mark_certified(
        &self,
        qc: &QuorumCertificate,
        at_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Height of the highest finalized block; `None` before any.
    fn finalized_height(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    // --- the ledger (docs/protocol.md §3.6) ---

    /// One step of the ledger order, in ONE transaction: marks `batch.blocks` committed in
    /// that order (`finalized`, `finalized_at_ms = batch.at_ms`, `commit_seq` continuing
    /// the stored block order), appends `batch.appended` to the ledger, records
    /// `batch.rejected`, marks the registry entries `batch.entries` committed in that order
    /// (`commit_seq` continuing the stored entry order), and stores `batch.state` as meta
    /// [`META_COMMIT_STATE`]. An attestation the batch settles that is in no block here (a
    /// `revive` released it) is placed where the ledger met it. `Conflict` when the first
    /// `log_index` is not the ledger's length or the rest do not follow one by one, when a
    /// block or entry is already committed (or twice in the batch), a row names a block
    /// that is not committed by the end of the batch, or a rejected digest would be in the
    /// ledger; `NotFound` for an unknown block, entry or attestation. Nothing is written
    /// then. A digest rejected before keeps its first rejection.
    fn commit(&self, batch: &CommitBatch) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many attestations the ledger holds: the next `log_index`.
    fn ledger_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// How many attestations the ledger order rejected.
    fn count_rejected(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Ledger rows from `log_index` `from` up, in ledger order; `limit` clamped to
    /// 1..=[`MAX_PAGE_LIMIT`].
    fn ledger_page(
        &self,
        from: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<LedgerRow>, StoreError>> + Send;

    /// Which of `digests` are in the ledger, and for each (key, nonce) of `pairs` the
    /// ledger digest that used it (through either attestation table), each answer in the
    /// order asked; one snapshot, one round trip per chunk.
    fn ledger_lookup(
        &self,
        digests: &[Hash32],
        pairs: &[(PublicKey, String)],
    ) -> impl Future<Output = Result<(Vec<bool>, Vec<Option<Hash32>>), StoreError>> + Send;

    /// The state the last [`Store::commit`] stored; `None` before any.
    fn commit_state(
        &self,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, StoreError>> + Send;

    /// The committed blocks by `commit_seq` (the rebuild compares its replay with it).
    fn committed_blocks(&self) -> impl Future<Output = Result<Vec<Hash32>, StoreError>> + Send;

    /// The attester key and nonce of each digest (from either attestation table), one
    /// answer per digest in order; multi-row statements in chunks.
    fn attestation_keys(
        &self,
        digests: &[Hash32],
    ) -> impl Future<Output = Result<Vec<Option<(PublicKey, String)>>, StoreError>> + Send;

    /// Releases the work of blocks that will never be committed (below the GC window, or
    /// of an epoch that closed without them), in one transaction: every attestation whose
    /// placement is one of them and that is neither in the ledger nor rejected is in no
    /// block again (pending, and counted so), and every registry entry included in one of
    /// them that is not committed is pending again. Returns how many attestations became
    /// pending. Idempotent: a second call releases nothing. `NotFound` for an unknown
    /// block, `Conflict` for a committed one (finality never reverts); nothing is written
    /// then.
    fn revive(&self, blocks: &[Hash32]) -> impl Future<Output = Result<u64, StoreError>> + Send;

    // --- the signing guard (docs/protocol.md §3.4) ---

    /// Records that this validator signs `block` for the slot (`epoch`, `height`,
    /// `proposer`), its own block or its vote for another's: `First` when the slot was
    /// free (durably committed before this returns, so the signature may leave the node),
    /// `Again` when this very block was recorded before, `Conflict` naming the block that
    /// was. Atomic across every process sharing the store.
    fn record_signing(
        &self,
        epoch: u64,
        height: u64,
        proposer: &Hash32,
        block: &Hash32,
        at_ms: u64,
    ) -> impl Future<Output = Result<Signing, StoreError>> + Send;

    /// Stores this validator's own block: records the signing of its slot
    /// (`block.header.epoch`, height, proposer) and stores the block with its placement as
    /// [`Store::insert_block`] does, fenced by the lease (`name`, `holder`) when given as
    /// [`Store::insert_block_fenced`] is, in one transaction. When another block holds the
    /// slot nothing is written and the answer is `Conflict` (the caller serves the stored
    /// block instead); `Again` when this block held it already (the block is stored, or
    /// found stored). The embedded store takes the slot in the first of a large block's
    /// transactions: a crash before the last leaves the slot taken and the block removed.
    fn insert_own_block(
        &self,
        block: &Block,
        created_at_ms: u64,
        lease: Option<(&str, &str)>,
    ) -> impl Future<Output = Result<Signing, StoreError>> + Send;

    // --- votes ---

    /// Stores a vote; `false` when this validator's vote for this block was already there.
    /// Signatures are the caller's to check.
    fn insert_vote(&self, vote: &Vote) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Votes for a block, by validator id.
    fn votes_for(
        &self,
        block_hash: &Hash32,
    ) -> impl Future<Output = Result<Vec<Vote>, StoreError>> + Send;

    // --- validator registry entries ---

    /// Files a registry entry as pending; returns its seq.
    fn insert_registry_entry(
        &self,
        kind: &str,
        body: &serde_json::Value,
        epoch: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Entries in no block and not committed, oldest first.
    fn pending_registry_entries(
        &self,
    ) -> impl Future<Output = Result<Vec<RegistryEntry>, StoreError>> + Send;

    /// Places entries in a stored block, in one transaction. Idempotent for the same
    /// block; `Conflict` if one is in another block, `NotFound` for an unknown seq/block.
    fn mark_registry_entries_included(
        &self,
        block_hash: &Hash32,
        seqs: &[u64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every entry, oldest first, for rebuilding the registry at start.
    fn registry_entries(
        &self,
    ) -> impl Future<Output = Result<Vec<RegistryEntry>, StoreError>> + Send;

    // --- replicas ---

    /// Takes or renews the lease `name` for `holder` when it is free, expired or already
    /// `holder`'s, for `ttl` by the database's clock. `true` when `holder` holds it now.
    /// Several processes sharing one store use it to agree which one produces blocks.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the lease up if `holder` has it, so another process can take it at once.
    fn release_lease(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // --- operations ---

    /// A cheap read that proves the store answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Connection counts right now; never blocks.
    fn pool_stats(&self) -> PoolStats;

    /// Waits for in-flight work, then closes every connection. Later calls fail with
    /// `Unavailable`.
    fn close(&self) -> impl Future<Output = ()> + Send;
}
