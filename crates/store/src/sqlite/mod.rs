//! The embedded store: one SQLite file in WAL mode (SPEC §5.4).
//!
//! - **One writer.** A pool of exactly one read-write connection: every write transaction
//!   is serialized through it, so SQLite never answers `SQLITE_BUSY` between our own
//!   writers, and `seq` values are handed out in commit order (the cursor guarantee).
//! - **Readers.** A pool of read-only connections. In WAL mode they read the last
//!   committed snapshot without waiting for the writer, so reads never queue behind a
//!   group commit.
//! - **Durability.** `synchronous = FULL` on the writer: each commit fsyncs the WAL before
//!   it returns. NORMAL would already survive `kill -9` (the WAL is in the OS page cache),
//!   but not a power cut or kernel crash; group commit makes the one fsync per batch cheap
//!   enough to pay for "acknowledged means on disk".

mod attestations;
mod blocks;
mod chunks;
mod meta;
mod migrate;
mod registry;
mod votes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bizra_ledger::block::Block;
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::cursor::{Cursor, Page};
use crate::error::StoreError;
use crate::types::*;
use crate::Store;

pub use migrate::SCHEMA_VERSION;

/// Tuning of the embedded store. The defaults suit a single node.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Read-only connections (at least 1).
    pub readers: u32,
    /// How long a statement waits on a lock held by another process (a backup, the
    /// `sqlite3` shell) before failing as `Unavailable`.
    pub busy_timeout: Duration,
    /// How long a caller waits for a free connection before failing as `Unavailable`.
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

/// The embedded store. Cloning is cheap: clones share the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
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
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(config.busy_timeout)
            .foreign_keys(true);

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(config.acquire_timeout)
            // The writer is kept open for the life of the store: reopening it would only
            // add latency to the next commit.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    // Multi-row inserts keep a statement journal (to undo one statement
                    // on a constraint error); beyond 64 KiB SQLite spills it to a temp
                    // file, which the writer then wrote for every chunk.
                    .pragma("temp_store", "memory"),
            )
            .await?;
        migrate::run(&writer).await?;
        // A block a crash left half placed was never acknowledged: its attestations go
        // back to the pending queue before anyone reads them.
        blocks::undo_unfinished(&writer).await?;

        // Opened after the writer so that the file, its WAL and schema exist; read-only
        // so that nothing can write around the single writer.
        let readers = SqlitePoolOptions::new()
            .max_connections(config.readers.max(1))
            .min_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_with(base.read_only(true))
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

/// A write transaction that holds the write lock from its first statement
/// (`BEGIN IMMEDIATE`): waiting for the lock is covered by `busy_timeout`, and a transaction
/// that reads before it writes cannot fail halfway on a lock upgrade.
pub(super) async fn begin_write(
    writer: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
    Ok(writer.begin_with("BEGIN IMMEDIATE").await?)
}

impl Store for SqliteStore {
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        meta::set(&self.writer, key, value).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        meta::get(&self.readers, key).await
    }

    async fn bind_identity(
        &self,
        chain_id: &str,
        genesis_hash: &Hash32,
    ) -> Result<IdentityCheck, StoreError> {
        meta::bind_identity(&self.writer, chain_id, genesis_hash).await
    }

    async fn insert_attestations(
        &self,
        items: &[NewAttestation],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        attestations::insert(&self.writer, items).await
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
        attestations::counter(&self.readers, attestations::COUNT_ALL).await
    }

    async fn count_pending_attestations(&self) -> Result<u64, StoreError> {
        attestations::counter(&self.readers, attestations::COUNT_PENDING).await
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

    async fn mark_finalized(
        &self,
        hashes: &[Hash32],
        qc: Option<&QuorumCertificate>,
        at_ms: u64,
    ) -> Result<u64, StoreError> {
        blocks::mark_finalized(&self.writer, hashes, qc, at_ms).await
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
        blocks::from_height(&self.readers, from, Some(limit)).await
    }

    async fn all_blocks(&self) -> Result<Vec<StoredBlock>, StoreError> {
        blocks::from_height(&self.readers, 0, None).await
    }

    async fn finalized_height(&self) -> Result<Option<u64>, StoreError> {
        blocks::finalized_height(&self.readers).await
    }

    async fn insert_vote(&self, vote: &Vote) -> Result<bool, StoreError> {
        votes::insert(&self.writer, vote).await
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
        registry::insert(&self.writer, kind, body, epoch).await
    }

    async fn pending_registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        registry::list(&self.readers, true).await
    }

    async fn mark_registry_entries_included(
        &self,
        block_hash: &Hash32,
        seqs: &[u64],
    ) -> Result<(), StoreError> {
        registry::mark_included(&self.writer, block_hash, seqs).await
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

    fn pool_stats(&self) -> PoolStats {
        let size = self.writer.size() + self.readers.size();
        let idle = u32::try_from(self.writer.num_idle() + self.readers.num_idle())
            .unwrap_or(u32::MAX)
            .min(size);
        PoolStats {
            size,
            idle,
            in_use: size - idle,
            max_size: self.writer.options().get_max_connections()
                + self.readers.options().get_max_connections(),
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
