//! The PostgreSQL store: the same tables and guarantees as the embedded one, shared by
//! every replica of a node.
//!
//! - **One pool** of `2 × cores + 4` connections by default (at most 256); a caller waits
//!   at most `acquire_timeout` for one, every statement at most `statement_timeout`, idle
//!   connections close after `idle_timeout`. Every acquire is timed for the
//!   `db_pool_acquire_seconds` histogram ([`PgConfig::on_acquire`]).
//! - **Commit order.** Attestation inserts take a transaction-scoped advisory lock, so seq
//!   values become visible in the order they were handed out, across replicas too; group
//!   commit makes that one lock per batch, not per row.
//! - **PgBouncer mode** (transaction pooling): no named prepared statements; every
//!   statement is sent unnamed. Advisory locks here are transaction-scoped, which that
//!   pooling mode allows.
//! - **Schemas.** [`PgConfig::schema`] puts the tables in a schema of their own (created if
//!   missing), so one database can hold several networks, or one test run each. Advisory
//!   lock keys are derived from the schema name for the same reason.

mod attestations;
mod blocks;
mod ledger;
mod meta;
mod migrate;
mod registry;
mod signing;
mod votes;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizra_ledger::block::Block;
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgPool, Postgres};

use crate::cursor::{Cursor, Page};
use crate::error::StoreError;
use crate::rows::{COUNT_ALL, COUNT_LEDGER, COUNT_PENDING, COUNT_REJECTED};
use crate::types::*;
use crate::Store;

pub use migrate::SCHEMA_VERSION as PG_SCHEMA_VERSION;

/// Most connections a pool may be configured with.
pub const MAX_POOL_SIZE: u32 = 256;

/// Called with how long each connection acquire waited (also for ones that timed out).
pub type AcquireObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Settings of the PostgreSQL store. [`PgConfig::new`] gives the defaults (the `--db-*`
/// rows of README.md).
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user@host:port/database?...`
    pub url: String,
    /// Pool size, 1..=[`MAX_POOL_SIZE`].
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Server-side limit on every statement (`statement_timeout`).
    pub statement_timeout: Duration,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// PgBouncer transaction pooling: no named prepared statements.
    pub pgbouncer: bool,
    /// Schema for the tables (created if missing); the server's default search path when
    /// `None`.
    pub schema: Option<String>,
    pub on_acquire: Option<AcquireObserver>,
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: never printed.
        f.debug_struct("PgConfig")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("pgbouncer", &self.pgbouncer)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> PgConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        PgConfig {
            url: url.into(),
            max_connections: default_pool_size(cores),
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_millis(7500),
            idle_timeout: Duration::from_secs(300),
            pgbouncer: false,
            schema: None,
            on_acquire: None,
        }
    }
}

/// `2 × cores + 4`: enough to keep every core busy while as many connections wait on
/// I/O, without the per-connection memory of a larger pool.
pub fn default_pool_size(cores: u32) -> u32 {
    (2 * cores + 4).min(MAX_POOL_SIZE)
}

/// A schema name this store will quote into DDL: lower-case ASCII letters, digits and
/// `_`, not starting with a digit, at most 63 bytes (PostgreSQL's identifier limit).
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The purposes of the advisory locks, second half of each two-part key.
#[derive(Debug, Clone, Copy)]
#[repr(i32)]
pub(crate) enum LockPurpose {
    Migrate = 1,
    Identity = 2,
    Attestations = 3,
    /// Commits and revives, one at a time across replicas.
    Commit = 4,
}

/// The PostgreSQL store. Cloning is cheap: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Statements prepared once per connection and reused (false in PgBouncer mode).
    persistent: bool,
    /// First half of every advisory lock key: this schema's.
    lock_space: i32,
    schema: String,
    on_acquire: Option<AcquireObserver>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("persistent", &self.persistent)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, creates the schema if asked, and brings the tables up to date.
    pub async fn open(config: PgConfig) -> Result<PostgresStore, StoreError> {
        if !(1..=MAX_POOL_SIZE).contains(&config.max_connections) {
            return Err(StoreError::Invalid(format!(
                "pool size {} must be between 1 and {MAX_POOL_SIZE}",
                config.max_connections
            )));
        }
        let base: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?;
        let base = base.application_name("node0");
        if let Some(schema) = &config.schema {
            if !valid_schema_name(schema) {
                return Err(StoreError::Invalid(format!(
                    "schema name {schema:?}: use lower-case letters, digits and _ (at most 63)"
                )));
            }
            // Before the pool: its connections set this schema as their search path,
            // which PostgreSQL ignores for a schema that does not exist yet.
            let mut conn = sqlx::PgConnection::connect_with(&base).await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        let mut options = base.options([(
            "statement_timeout",
            config.statement_timeout.as_millis().to_string(),
        )]);
        if let Some(schema) = &config.schema {
            options = options.options([("search_path", schema.as_str())]);
        }
        if config.pgbouncer {
            options = options.statement_cache_capacity(0);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(Some(config.idle_timeout))
            // No ping before each use: it doubled the round trips of every operation.
            // sqlx already pings a connection when it is returned, and drops it if that
            // fails; a connection broken in between fails its one statement as
            // `Unavailable` (a 503), and is dropped then.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .persistent(!config.pgbouncer)
            .fetch_one(&pool)
            .await?;
        let digest = blake3::hash(schema.as_bytes());
        let lock_space = i32::from_le_bytes([
            digest.as_bytes()[0],
            digest.as_bytes()[1],
            digest.as_bytes()[2],
            digest.as_bytes()[3],
        ]);
        let store = PostgresStore {
            pool,
            persistent: !config.pgbouncer,
            lock_space,
            schema,
            on_acquire: config.on_acquire,
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    /// The schema the tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let mut c = self.acquire().await?;
        migrate::current(self, &mut c).await
    }

    /// A connection from the pool, its wait reported to the observer.
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        let started = Instant::now();
        let conn = self.pool.acquire().await;
        if let Some(observe) = &self.on_acquire {
            observe(started.elapsed());
        }
        Ok(conn?)
    }

    /// Diagnostics (`node0 db-pool-probe --hold-ms`): takes a connection from this store's
    /// pool, exactly as every store operation does (timed for [`PgConfig::on_acquire`]),
    /// and keeps it busy inside a read-only transaction for `hold` (`pg_sleep`, bounded
    /// by the statement timeout), so a probe can saturate the pool on purpose. Writes
    /// nothing and takes no lock.
    pub async fn hold_connection(&self, hold: Duration) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin().await?;
        // Simple query protocol: a utility statement, never prepared.
        sqlx::Executor::execute(&mut *tx, "SET TRANSACTION READ ONLY").await?;
        self.query("SELECT pg_sleep($1)")
            .bind(hold.as_secs_f64())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A statement, prepared and cached per connection unless in PgBouncer mode.
    pub(crate) fn query<'q>(
        &self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql).persistent(self.persistent)
    }

    pub(crate) fn query_scalar<'q, O>(
        &self,
        sql: &'q str,
    ) -> sqlx::query::QueryScalar<'q, Postgres, O, sqlx::postgres::PgArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_scalar(sql).persistent(self.persistent)
    }

    /// Holds `purpose`'s advisory lock until `conn`'s transaction ends.
    pub(crate) async fn lock(
        &self,
        conn: &mut sqlx::PgConnection,
        purpose: LockPurpose,
    ) -> Result<(), StoreError> {
        self.query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(self.lock_space)
            .bind(purpose as i32)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl Store for PostgresStore {
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        meta::set(self, key, value).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        meta::get(self, key).await
    }

    async fn bind_identity(
        &self,
        chain_id: &str,
        genesis_hash: &Hash32,
    ) -> Result<IdentityCheck, StoreError> {
        meta::bind_identity(self, chain_id, genesis_hash).await
    }

    async fn insert_attestations(
        &self,
        items: &[NewAttestation],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        attestations::insert(self, items).await
    }

    async fn insert_block_attestations(
        &self,
        items: &[NewAttestation],
    ) -> Result<Vec<BlockAttestation>, StoreError> {
        attestations::insert_from_block(self, items).await
    }

    async fn nonce_owner(
        &self,
        pubkey: &PublicKey,
        nonce: &str,
    ) -> Result<Option<Hash32>, StoreError> {
        let mut c = self.acquire().await?;
        attestations::nonce_owner(self, &mut c, pubkey, nonce).await
    }

    async fn nonce_owners(
        &self,
        pairs: &[(PublicKey, String)],
    ) -> Result<Vec<Option<Hash32>>, StoreError> {
        let mut c = self.acquire().await?;
        attestations::nonce_owners(self, &mut c, pairs).await
    }

    async fn get_attestation(
        &self,
        digest: &Hash32,
    ) -> Result<Option<AttestationRecord>, StoreError> {
        let mut c = self.acquire().await?;
        attestations::by_digest(self, &mut c, digest).await
    }

    async fn list_attestations(
        &self,
        attester: Option<&str>,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<AttestationRecord>, StoreError> {
        attestations::list(self, attester, cursor, limit).await
    }

    async fn pending_attestations(&self, limit: u32) -> Result<Vec<Hash32>, StoreError> {
        attestations::pending(self, limit).await
    }

    async fn count_attestations(&self) -> Result<u64, StoreError> {
        attestations::counter(self, COUNT_ALL).await
    }

    async fn count_pending_attestations(&self) -> Result<u64, StoreError> {
        attestations::counter(self, COUNT_PENDING).await
    }

    async fn impact_summary(
        &self,
        from_ms: u64,
        to_ms: u64,
        top: u32,
    ) -> Result<ImpactSummary, StoreError> {
        attestations::impact_summary(self, from_ms, to_ms, top).await
    }

    async fn insert_block(
        &self,
        block: &Block,
        created_at_ms: u64,
    ) -> Result<BlockInsert, StoreError> {
        blocks::insert(self, block, created_at_ms, None).await
    }

    async fn insert_block_fenced(
        &self,
        block: &Block,
        created_at_ms: u64,
        lease: &str,
        holder: &str,
    ) -> Result<BlockInsert, StoreError> {
        blocks::insert(self, block, created_at_ms, Some((lease, holder))).await
    }

    /// Always one transaction, whatever the block's size.
    async fn insert_peer_block(
        &self,
        block: &Block,
        attestations: &[NewAttestation],
        qc: Option<&QuorumCertificate>,
        created_at_ms: u64,
        certified_at_ms: u64,
    ) -> Result<PeerBlockInsert, StoreError> {
        blocks::insert_peer(
            self,
            block,
            attestations,
            qc,
            created_at_ms,
            certified_at_ms,
        )
        .await
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        ledger::commit(self, batch).await
    }

    async fn revive(&self, blocks: &[Hash32]) -> Result<u64, StoreError> {
        ledger::revive(self, blocks).await
    }

    async fn ledger_len(&self) -> Result<u64, StoreError> {
        attestations::counter(self, COUNT_LEDGER).await
    }

    async fn count_rejected(&self) -> Result<u64, StoreError> {
        attestations::counter(self, COUNT_REJECTED).await
    }

    async fn ledger_page(&self, from: u64, limit: u32) -> Result<Vec<LedgerRow>, StoreError> {
        ledger::page(self, from, limit).await
    }

    async fn ledger_lookup(
        &self,
        digests: &[Hash32],
        pairs: &[(PublicKey, String)],
    ) -> Result<(Vec<bool>, Vec<Option<Hash32>>), StoreError> {
        ledger::lookup(self, digests, pairs).await
    }

    async fn commit_state(&self) -> Result<Option<serde_json::Value>, StoreError> {
        crate::ledger::commit_state(meta::get(self, META_COMMIT_STATE).await?)
    }

    async fn committed_blocks(&self) -> Result<Vec<Hash32>, StoreError> {
        ledger::committed_blocks(self).await
    }

    async fn attestation_keys(
        &self,
        digests: &[Hash32],
    ) -> Result<Vec<Option<(PublicKey, String)>>, StoreError> {
        ledger::keys(self, digests).await
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
        let mut c = self.acquire().await?;
        // Autocommit: the insert is committed when its statement returns.
        signing::sign_in(self, &mut c, &slot).await
    }

    async fn insert_own_block(
        &self,
        block: &Block,
        created_at_ms: u64,
        lease: Option<(&str, &str)>,
    ) -> Result<Signing, StoreError> {
        blocks::insert_own(self, block, created_at_ms, lease).await
    }

    async fn get_block(&self, hash: &Hash32) -> Result<Option<StoredBlock>, StoreError> {
        let mut c = self.acquire().await?;
        blocks::by_hash(self, &mut c, hash).await
    }

    async fn blocks_from_height(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        blocks::from_height(self, from, limit).await
    }

    async fn blocks_of_epoch(
        &self,
        epoch: u64,
        from_height: u64,
        limit: u32,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        blocks::of_epoch(self, epoch, from_height, limit).await
    }

    async fn all_blocks(&self) -> Result<Vec<StoredBlock>, StoreError> {
        blocks::all(self).await
    }

    async fn mark_certified(&self, qc: &QuorumCertificate, at_ms: u64) -> Result<bool, StoreError> {
        blocks::mark_certified(self, qc, at_ms).await
    }

    async fn finalized_height(&self) -> Result<Option<u64>, StoreError> {
        blocks::finalized_height(self).await
    }

    async fn insert_vote(&self, vote: &Vote) -> Result<bool, StoreError> {
        votes::insert(self, vote).await
    }

    async fn votes_for(&self, block_hash: &Hash32) -> Result<Vec<Vote>, StoreError> {
        votes::for_block(self, block_hash).await
    }

    async fn insert_registry_entry(
        &self,
        kind: &str,
        body: &serde_json::Value,
        epoch: u64,
    ) -> Result<u64, StoreError> {
        registry::insert(self, kind, body, epoch).await
    }

    async fn pending_registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        registry::list(self, true).await
    }

    async fn mark_registry_entries_included(
        &self,
        block_hash: &Hash32,
        seqs: &[u64],
    ) -> Result<(), StoreError> {
        registry::mark_included(self, block_hash, seqs).await
    }

    async fn registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        registry::list(self, false).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl_ms = i64::try_from(ttl.as_millis())
            .map_err(|_| StoreError::Invalid("lease ttl too long".into()))?;
        let mut c = self.acquire().await?;
        // One statement: take a free or expired lease, or renew our own; a row comes back
        // only when we hold it afterwards.
        let held: Option<String> = self
            .query_scalar(
                "INSERT INTO leases (name, holder, expires_at) \
                 VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < clock_timestamp() \
                 RETURNING holder",
            )
            .bind(name)
            .bind(holder)
            .bind(ttl_ms as f64)
            .fetch_optional(&mut *c)
            .await?;
        Ok(held.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut c = self.acquire().await?;
        self.query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *c)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.acquire().await?;
        self.query("SELECT 1").execute(&mut *c).await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle())
            .unwrap_or(u32::MAX)
            .min(size);
        PoolStats {
            size,
            idle,
            in_use: size - idle,
            max_size: self.pool.options().get_max_connections(),
            queued_writes: 0,
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_follows_the_cores_and_is_capped() {
        assert_eq!(default_pool_size(2), 8);
        assert_eq!(default_pool_size(1), 6);
        assert_eq!(default_pool_size(1000), MAX_POOL_SIZE);
    }

    #[test]
    fn schema_names_that_are_safe_to_quote() {
        assert!(valid_schema_name("node0"));
        assert!(valid_schema_name("t_1a2b"));
        for bad in ["", "1abc", "Node0", "a-b", "a\"b", "a b", &"x".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_url_is_not_printed() {
        let c = PgConfig::new("postgres://u:secret@h/db");
        assert!(!format!("{c:?}").contains("secret"));
    }
}
