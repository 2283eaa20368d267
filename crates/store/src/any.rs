//! [`AnyStore`]: the store the node holds, whichever backend it runs on. An enum rather
//! than `dyn Store` because `Store`'s methods return `impl Future` (not object-safe);
//! matching on a variant is static dispatch and keeps the node free of type parameters.

use std::path::Path;

use bizra_ledger::block::Block;
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;

use crate::cursor::{Cursor, Page};
use crate::error::StoreError;
use crate::postgres::{PgConfig, PostgresStore};
use crate::sqlite::{SqliteConfig, SqliteStore};
use crate::types::*;
use crate::Store;

/// One of the store backends. Cloning is cheap (the pools are shared).
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    /// The embedded store at `path` (created and migrated if needed).
    pub async fn open_sqlite(
        path: impl AsRef<Path>,
        config: SqliteConfig,
    ) -> Result<AnyStore, StoreError> {
        SqliteStore::open_with(path, config)
            .await
            .map(AnyStore::Sqlite)
    }

    /// The PostgreSQL store `config` names (schema created and migrated if needed).
    pub async fn open_postgres(config: PgConfig) -> Result<AnyStore, StoreError> {
        PostgresStore::open(config).await.map(AnyStore::Postgres)
    }

    /// Name of the backend, for logs and metrics labels.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }

    /// Whether other processes (replicas) may be writing to this store too.
    pub fn is_shared(&self) -> bool {
        matches!(self, AnyStore::Postgres(_))
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> AnyStore {
        AnyStore::Sqlite(s)
    }
}

impl From<PostgresStore> for AnyStore {
    fn from(s: PostgresStore) -> AnyStore {
        AnyStore::Postgres(s)
    }
}

/// Forwards a call to whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

/// Runs a write to its end on a task of its own, with owned arguments. A caller that stops
/// waiting (a request whose client went away, a timeout) drops only the handle: the
/// transaction still commits or rolls back. A PostgreSQL transaction abandoned half-way
/// would hold its connection and locks until sqlx cleans it up; the embedded store's
/// writer thread runs what it was sent to its end by itself.
macro_rules! detached {
    ($self:ident, $s:ident => $call:expr) => {{
        let store = $self.clone();
        tokio::spawn(async move {
            let this = &store;
            dispatch!(this, $s => $call)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store write task ended: {e}")))?
    }};
}

impl Store for AnyStore {
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        detached!(self, s => s.set_meta(&key, &value).await)
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get_meta(key).await)
    }

    async fn bind_identity(
        &self,
        chain_id: &str,
        genesis_hash: &Hash32,
    ) -> Result<IdentityCheck, StoreError> {
        let (chain_id, genesis_hash) = (chain_id.to_string(), *genesis_hash);
        detached!(self, s => s.bind_identity(&chain_id, &genesis_hash).await)
    }

    async fn insert_attestations(
        &self,
        items: &[NewAttestation],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        let items = items.to_vec();
        detached!(self, s => s.insert_attestations(&items).await)
    }

    async fn insert_block_attestations(
        &self,
        items: &[NewAttestation],
    ) -> Result<Vec<BlockAttestation>, StoreError> {
        let items = items.to_vec();
        detached!(self, s => s.insert_block_attestations(&items).await)
    }

    async fn nonce_owner(
        &self,
        pubkey: &PublicKey,
        nonce: &str,
    ) -> Result<Option<Hash32>, StoreError> {
        dispatch!(self, s => s.nonce_owner(pubkey, nonce).await)
    }

    async fn nonce_owners(
        &self,
        pairs: &[(PublicKey, String)],
    ) -> Result<Vec<Option<Hash32>>, StoreError> {
        dispatch!(self, s => s.nonce_owners(pairs).await)
    }

    async fn get_attestation(
        &self,
        digest: &Hash32,
    ) -> Result<Option<AttestationRecord>, StoreError> {
        dispatch!(self, s => s.get_attestation(digest).await)
    }

    async fn list_attestations(
        &self,
        attester: Option<&str>,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<AttestationRecord>, StoreError> {
        dispatch!(self, s => s.list_attestations(attester, cursor, limit).await)
    }

    async fn pending_attestations(&self, limit: u32) -> Result<Vec<Hash32>, StoreError> {
        dispatch!(self, s => s.pending_attestations(limit).await)
    }

    async fn count_attestations(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count_attestations().await)
    }

    async fn count_pending_attestations(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count_pending_attestations().await)
    }

    async fn impact_summary(
        &self,
        from_ms: u64,
        to_ms: u64,
        top: u32,
    ) -> Result<ImpactSummary, StoreError> {
        dispatch!(self, s => s.impact_summary(from_ms, to_ms, top).await)
    }

    async fn insert_block(
        &self,
        block: &Block,
        created_at_ms: u64,
    ) -> Result<BlockInsert, StoreError> {
        let block = block.clone();
        detached!(self, s => s.insert_block(&block, created_at_ms).await)
    }

    async fn insert_block_fenced(
        &self,
        block: &Block,
        created_at_ms: u64,
        lease: &str,
        holder: &str,
    ) -> Result<BlockInsert, StoreError> {
        let (block, lease, holder) = (block.clone(), lease.to_string(), holder.to_string());
        detached!(self, s => s.insert_block_fenced(&block, created_at_ms, &lease, &holder).await)
    }

    async fn insert_peer_block(
        &self,
        block: &Block,
        attestations: &[NewAttestation],
        qc: Option<&QuorumCertificate>,
        created_at_ms: u64,
        certified_at_ms: u64,
    ) -> Result<PeerBlockInsert, StoreError> {
        let (block, attestations, qc) = (block.clone(), attestations.to_vec(), qc.cloned());
        detached!(self, s => {
            s.insert_peer_block(&block, &attestations, qc.as_ref(), created_at_ms, certified_at_ms)
                .await
        })
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        let batch = batch.clone();
        detached!(self, s => s.commit(&batch).await)
    }

    async fn revive(&self, blocks: &[Hash32]) -> Result<u64, StoreError> {
        let blocks = blocks.to_vec();
        detached!(self, s => s.revive(&blocks).await)
    }

    async fn ledger_len(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.ledger_len().await)
    }

    async fn count_rejected(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count_rejected().await)
    }

    async fn ledger_page(&self, from: u64, limit: u32) -> Result<Vec<LedgerRow>, StoreError> {
        dispatch!(self, s => s.ledger_page(from, limit).await)
    }

    async fn ledger_lookup(
        &self,
        digests: &[Hash32],
        pairs: &[(PublicKey, String)],
    ) -> Result<(Vec<bool>, Vec<Option<Hash32>>), StoreError> {
        dispatch!(self, s => s.ledger_lookup(digests, pairs).await)
    }

    async fn commit_state(&self) -> Result<Option<serde_json::Value>, StoreError> {
        dispatch!(self, s => s.commit_state().await)
    }

    async fn committed_blocks(&self) -> Result<Vec<Hash32>, StoreError> {
        dispatch!(self, s => s.committed_blocks().await)
    }

    async fn attestation_keys(
        &self,
        digests: &[Hash32],
    ) -> Result<Vec<Option<(PublicKey, String)>>, StoreError> {
        dispatch!(self, s => s.attestation_keys(digests).await)
    }

    async fn record_signing(
        &self,
        epoch: u64,
        height: u64,
        proposer: &Hash32,
        block: &Hash32,
        at_ms: u64,
    ) -> Result<Signing, StoreError> {
        let (proposer, block) = (*proposer, *block);
        detached!(self, s => s.record_signing(epoch, height, &proposer, &block, at_ms).await)
    }

    async fn insert_own_block(
        &self,
        block: &Block,
        created_at_ms: u64,
        lease: Option<(&str, &str)>,
    ) -> Result<Signing, StoreError> {
        let block = block.clone();
        let lease = lease.map(|(name, holder)| (name.to_string(), holder.to_string()));
        detached!(self, s => {
            let lease = lease.as_ref().map(|(n, h)| (n.as_str(), h.as_str()));
            s.insert_own_block(&block, created_at_ms, lease).await
        })
    }

    async fn get_block(&self, hash: &Hash32) -> Result<Option<StoredBlock>, StoreError> {
        dispatch!(self, s => s.get_block(hash).await)
    }

    async fn blocks_from_height(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        dispatch!(self, s => s.blocks_from_height(from, limit).await)
    }

    async fn blocks_of_epoch(
        &self,
        epoch: u64,
        from_height: u64,
        limit: u32,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        dispatch!(self, s => s.blocks_of_epoch(epoch, from_height, limit).await)
    }

    async fn all_blocks(&self) -> Result<Vec<StoredBlock>, StoreError> {
        dispatch!(self, s => s.all_blocks().await)
    }

    async fn mark_certified(&self, qc: &QuorumCertificate, at_ms: u64) -> Result<bool, StoreError> {
        let qc = qc.clone();
        detached!(self, s => s.mark_certified(&qc, at_ms).await)
    }

    async fn finalized_height(&self) -> Result<Option<u64>, StoreError> {
        dispatch!(self, s => s.finalized_height().await)
    }

    async fn insert_vote(&self, vote: &Vote) -> Result<bool, StoreError> {
        let vote = vote.clone();
        detached!(self, s => s.insert_vote(&vote).await)
    }

    async fn votes_for(&self, block_hash: &Hash32) -> Result<Vec<Vote>, StoreError> {
        dispatch!(self, s => s.votes_for(block_hash).await)
    }

    async fn insert_registry_entry(
        &self,
        kind: &str,
        body: &serde_json::Value,
        epoch: u64,
    ) -> Result<u64, StoreError> {
        let (kind, body) = (kind.to_string(), body.clone());
        detached!(self, s => s.insert_registry_entry(&kind, &body, epoch).await)
    }

    async fn pending_registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        dispatch!(self, s => s.pending_registry_entries().await)
    }

    async fn mark_registry_entries_included(
        &self,
        block_hash: &Hash32,
        seqs: &[u64],
    ) -> Result<(), StoreError> {
        let (block_hash, seqs) = (*block_hash, seqs.to_vec());
        detached!(self, s => s.mark_registry_entries_included(&block_hash, &seqs).await)
    }

    async fn registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        dispatch!(self, s => s.registry_entries().await)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        detached!(self, s => s.acquire_lease(&name, &holder, ttl).await)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        detached!(self, s => s.release_lease(&name, &holder).await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    fn pool_stats(&self) -> PoolStats {
        dispatch!(self, s => s.pool_stats())
    }

    async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}
