//! The embedded store: one SQLite file in WAL mode.
//!
//! - **One writer.** One thread owns the only read-write connection and runs every write
//!   transaction whole (`write_thread`), so SQLite never answers `SQLITE_BUSY` between
//!   our own writers, and `seq` values are handed out in commit order (the cursor
//!   guarantee). Writes use rusqlite on that thread; reads use sqlx's async pool.
//! - **Readers.** A pool of read-only connections. In WAL mode they read the last
//!   committed snapshot without waiting for the writer, so reads never queue behind a
//!   group commit.
//! - **Durability.** `synchronous = FULL` on the writer: each commit fsyncs the WAL before
//!   it returns. NORMAL would already survive `kill -9` (the WAL is in the OS page cache),
//!   but not a power cut or kernel crash; group commit makes the one fsync per batch cheap
//!   enough to pay for "acknowledged means on disk".

mod attestations;
mod blocks;
mod checkpointer;
mod chunks;
mod columns;
mod ledger;
mod meta;
mod migrate;
mod registry;
mod signing;
mod votes;
mod write_thread;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bizra_ledger::block::Block;
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

use crate::codec::{registry_body_column, Certificate};
use crate::cursor::{Cursor, Page};
use crate::error::StoreError;
use crate::rows::{COUNT_ALL, COUNT_LEDGER, COUNT_PENDING, COUNT_REJECTED};
use crate::types::*;
use crate::Store;
use write_thread::WriteThread;

pub use migrate::SCHEMA_VERSION;

/// Tuning of the embedded store. The defaults suit a single node.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Read-only connections (at least 1).
    pub readers: u32,
    /// How long a statement waits on a lock held by another process (a backup, the
    /// `sqlite3` shell) before failing as `Unavailable`.
    pub busy_timeout: Duration,
    /// How long a reader waits for a free connection before failing as `Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// The embedded store. Cloning is cheap: clones share the writer thread and the pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: WriteThread,
    readers: SqlitePool,
    path: PathBuf,
    /// Held for the whole of a block insert, which spans several transactions: a second
    /// insert of the same block waits for the first instead of taking its half-placed
    /// block for the leftover of a failed one. (The single writer serializes the
    /// transactions anyway, so this costs no concurrency.)
    block_inserts: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with the default configuration and
    /// brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteConfig::default()).await
    }

    pub async fn open_with(
        path: impl AsRef<Path>,
        config: SqliteConfig,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let writer = WriteThread::open(&path, config.busy_timeout).await?;
        writer.run(migrate::run).await?;
        // A block a crash left half placed was never acknowledged: its attestations go
        // back to the pending queue before anyone reads them.
        writer
            .run(|conn| blocks::undo_unfinished(conn).map(drop))
            .await?;

        // Opened after the writer so that the file, its WAL and schema exist; read-only
        // so that nothing can write around the single writer.
        let readers = SqlitePoolOptions::new()
            .max_connections(config.readers.max(1))
            .min_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .busy_timeout(config.busy_timeout)
                    .foreign_keys(true)
                    .read_only(true),
            )
            .await?;

        Ok(SqliteStore {
            writer,
            readers,
            path,
            block_inserts: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the file is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        migrate::current(&self.readers).await
    }
}

impl Store for SqliteStore {
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer
            .run(move |conn| meta::set(conn, &key, &value))
            .await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        meta::get(&self.readers, key).await
    }

    async fn bind_identity(
        &self,
        chain_id: &str,
        genesis_hash: &Hash32,
    ) -> Result<IdentityCheck, StoreError> {
        let (chain_id, genesis_hash) = (chain_id.to_string(), *genesis_hash);
        self.writer
            .run(move |conn| meta::bind_identity(conn, &chain_id, &genesis_hash))
            .await
    }

    async fn insert_attestations(
        &self,
        items: &[NewAttestation],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        let items = items.to_vec();
        self.writer
            .run(move |conn| attestations::insert(conn, &items))
            .await
    }

    async fn insert_block_attestations(
        &self,
        items: &[NewAttestation],
    ) -> Result<Vec<BlockAttestation>, StoreError> {
        let items = items.to_vec();
        self.writer
            .run(move |conn| attestations::insert_from_block(conn, &items))
            .await
    }

    async fn nonce_owner(
        &self,
        pubkey: &PublicKey,
        nonce: &str,
    ) -> Result<Option<Hash32>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        attestations::nonce_owner(&mut conn, pubkey, nonce).await
    }

    async fn nonce_owners(
        &self,
        pairs: &[(PublicKey, String)],
    ) -> Result<Vec<Option<Hash32>>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        attestations::nonce_owners(&mut conn, pairs).await
    }

    async fn get_attestation(
        &self,
        digest: &Hash32,
    ) -> Result<Option<AttestationRecord>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        attestations::by_digest(&mut conn, digest).await
    }

    async fn list_attestations(
        &self,
        attester: Option<&str>,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<AttestationRecord>, StoreError> {
        attestations::list(&self.readers, attester, cursor, limit).await
    }

    async fn pending_attestations(&self, limit: u32) -> Result<Vec<Hash32>, StoreError> {
        attestations::pending(&self.readers, limit).await
    }

    async fn count_attestations(&self) -> Result<u64, StoreError> {
        attestations::counter(&self.readers, COUNT_ALL).await
    }

    async fn count_pending_attestations(&self) -> Result<u64, StoreError> {
        attestations::counter(&self.readers, COUNT_PENDING).await
    }

    async fn impact_summary(
        &self,
        from_ms: u64,
        to_ms: u64,
        top: u32,
    ) -> Result<ImpactSummary, StoreError> {
        attestations::impact_summary(&self.readers, from_ms, to_ms, top).await
    }

    async fn insert_block(
        &self,
        block: &Block,
        created_at_ms: u64,
    ) -> Result<BlockInsert, StoreError> {
        let _one_at_a_time = self.block_inserts.lock().await;
        blocks::insert(&self.writer, block, created_at_ms).await
    }

    /// One process holds every lease of the embedded store (see `acquire_lease`).
    async fn insert_block_fenced(
        &self,
        block: &Block,
        created_at_ms: u64,
        _lease: &str,
        _holder: &str,
    ) -> Result<BlockInsert, StoreError> {
        let _one_at_a_time = self.block_inserts.lock().await;
        blocks::insert(&self.writer, block, created_at_ms).await
    }

    /// One transaction for a block of up to 128 attestations; a larger one is placed in
    /// several, as `insert_block` places it (see [`Store::insert_peer_block`]).
    async fn insert_peer_block(
        &self,
        block: &Block,
        attestations: &[NewAttestation],
        qc: Option<&QuorumCertificate>,
        created_at_ms: u64,
        certified_at_ms: u64,
    ) -> Result<PeerBlockInsert, StoreError> {
        let _one_at_a_time = self.block_inserts.lock().await;
        blocks::insert_peer(
            &self.writer,
            block,
            attestations,
            qc,
            created_at_ms,
            certified_at_ms,
        )
        .await
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        let batch = batch.clone();
        self.writer
            .run(move |conn| {
                let c = crate::ledger::Commit::new(&batch)?;
                ledger::commit(conn, &c)
            })
            .await
    }

    async fn revive(&self, blocks: &[Hash32]) -> Result<u64, StoreError> {
        let blocks = blocks.to_vec();
        self.writer
            .run(move |conn| ledger::revive(conn, &blocks))
            .await
    }

    async fn ledger_len(&self) -> Result<u64, StoreError> {
        attestations::counter(&self.readers, COUNT_LEDGER).await
    }

    async fn count_rejected(&self) -> Result<u64, StoreError> {
        attestations::counter(&self.readers, COUNT_REJECTED).await
    }

    async fn ledger_page(&self, from: u64, limit: u32) -> Result<Vec<LedgerRow>, StoreError> {
        ledger::page(&self.readers, from, limit).await
    }

    async fn ledger_lookup(
        &self,
        digests: &[Hash32],
        pairs: &[(PublicKey, String)],
    ) -> Result<(Vec<bool>, Vec<Option<Hash32>>), StoreError> {
        ledger::lookup(&self.readers, digests, pairs).await
    }

    async fn commit_state(&self) -> Result<Option<serde_json::Value>, StoreError> {
        crate::ledger::commit_state(meta::get(&self.readers, META_COMMIT_STATE).await?)
    }

    async fn committed_blocks(&self) -> Result<Vec<Hash32>, StoreError> {
        ledger::committed_blocks(&self.readers).await
    }

    async fn attestation_keys(
        &self,
        digests: &[Hash32],
    ) -> Result<Vec<Option<(PublicKey, String)>>, StoreError> {
        ledger::keys(&self.readers, digests).await
    }

    async fn record_signing(
        &self,
        epoch: u64,
        height: u64,
        proposer: &Hash32,
        block: &Hash32,
        at_ms: u64,
    ) -> Result<Signing, StoreError> {
        let slot = crate::signing::Slot::new(epoch, height, proposer, block, at_ms)?;
        self.writer
            .run(move |conn| signing::record(conn, &slot))
            .await
    }

    /// One process holds every lease of the embedded store (see `acquire_lease`).
    async fn insert_own_block(
        &self,
        block: &Block,
        created_at_ms: u64,
        _lease: Option<(&str, &str)>,
    ) -> Result<Signing, StoreError> {
        let _one_at_a_time = self.block_inserts.lock().await;
        blocks::insert_own(&self.writer, block, created_at_ms).await
    }

    async fn get_block(&self, hash: &Hash32) -> Result<Option<StoredBlock>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        blocks::by_hash(&mut conn, hash).await
    }

    async fn blocks_from_height(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        blocks::from_height(&self.readers, from, limit).await
    }

    async fn blocks_of_epoch(
        &self,
        epoch: u64,
        from_height: u64,
        limit: u32,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        blocks::of_epoch(&self.readers, epoch, from_height, limit).await
    }

    async fn all_blocks(&self) -> Result<Vec<StoredBlock>, StoreError> {
        blocks::all(&self.readers).await
    }

    async fn mark_certified(&self, qc: &QuorumCertificate, at_ms: u64) -> Result<bool, StoreError> {
        let qc = Certificate::new(qc, at_ms)?;
        self.writer
            .run(move |conn| blocks::mark_certified(conn, &qc))
            .await
    }

    async fn finalized_height(&self) -> Result<Option<u64>, StoreError> {
        blocks::finalized_height(&self.readers).await
    }

    async fn insert_vote(&self, vote: &Vote) -> Result<bool, StoreError> {
        let vote = vote.clone();
        self.writer
            .run(move |conn| votes::insert(conn, &vote))
            .await
    }

    async fn votes_for(&self, block_hash: &Hash32) -> Result<Vec<Vote>, StoreError> {
        votes::for_block(&self.readers, block_hash).await
    }

    async fn insert_registry_entry(
        &self,
        kind: &str,
        body: &serde_json::Value,
        epoch: u64,
    ) -> Result<u64, StoreError> {
        let (kind, body) = (kind.to_string(), registry_body_column(body)?);
        self.writer
            .run(move |conn| registry::insert(conn, &kind, &body, epoch))
            .await
    }

    async fn pending_registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        registry::list(&self.readers, true).await
    }

    async fn mark_registry_entries_included(
        &self,
        block_hash: &Hash32,
        seqs: &[u64],
    ) -> Result<(), StoreError> {
        let (block_hash, seqs) = (*block_hash, seqs.to_vec());
        self.writer
            .run(move |conn| registry::mark_included(conn, &block_hash, &seqs))
            .await
    }

    async fn registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        registry::list(&self.readers, false).await
    }

    /// The embedded store belongs to the one process that owns its data directory, so that
    /// process holds every lease.
    async fn acquire_lease(
        &self,
        _name: &str,
        _holder: &str,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release_lease(&self, _name: &str, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    /// The writer counts as one connection, in use while a transaction runs.
    fn pool_stats(&self) -> PoolStats {
        let writer_idle = u32::from(!self.writer.busy());
        let size = 1 + self.readers.size();
        let idle = u32::try_from(self.readers.num_idle())
            .unwrap_or(u32::MAX)
            .saturating_add(writer_idle)
            .min(size);
        PoolStats {
            size,
            idle,
            in_use: size - idle,
            max_size: 1 + self.readers.options().get_max_connections(),
            queued_writes: self.writer.queued(),
        }
    }

    async fn close(&self) {
        // Readers first: the writer's close then checkpoints the WAL into the main file
        // as the last connection.
        self.readers.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod send_check {
    fn assert_send<T: Send>(_: T) {}

    /// Compiles only if opening can happen inside `tokio::spawn`.
    #[allow(dead_code)]
    fn open_is_send() {
        assert_send(super::SqliteStore::open("x"));
        assert_send(crate::AnyStore::open_sqlite(
            "x",
            super::SqliteConfig::default(),
        ));
    }
}
