//! Schema migrations for PostgreSQL: the same scheme as the embedded store (an ordered,
//! append-only list applied at open, each with its `schema_version` row in one
//! transaction). Replicas may start together, so the whole run holds an advisory lock: the
//! second one waits, then finds nothing left to do.

use sqlx::{Connection, Executor};

use super::{LockPurpose, PostgresStore};
use crate::codec::now_ms;
use crate::error::StoreError;
use crate::header_version::{self, META_HEADER_VERSION};
use crate::migrations::{self, Migration};
use crate::types::META_CHAIN_ID;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "entry_ids",
        sql: include_str!("../../migrations/postgres/0002_entry_ids.sql"),
    },
    Migration {
        version: 3,
        name: "dag_ledger",
        sql: include_str!("../../migrations/postgres/0003_dag_ledger.sql"),
    },
];
const _: () = assert!(migrations::is_well_formed(MIGRATIONS));

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = migrations::latest(MIGRATIONS);

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version       BIGINT PRIMARY KEY,
    name          TEXT   NOT NULL,
    applied_at_ms BIGINT NOT NULL
)";

pub(super) async fn run(store: &PostgresStore) -> Result<(), StoreError> {
    let mut conn = store.acquire().await?;
    let mut tx = conn.begin().await?;
    store.lock(&mut tx, LockPurpose::Migrate).await?;
    // DDL is transactional in PostgreSQL: the version table, every migration and their
    // rows commit together or not at all.
    tx.execute(VERSION_TABLE).await?;
    let found = current(store, &mut tx).await?;
    let pending = migrations::pending(MIGRATIONS, found)?;
    if found > 0 {
        // Before any migration: a refused database stays as its own build left it.
        check_header_version(store, &mut tx).await?;
    }
    for m in pending {
        // A plain string runs every statement in it (simple query protocol).
        tx.execute(m.sql).await?;
        store
            .query("INSERT INTO schema_version (version, name, applied_at_ms) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Migration 1 made `meta` and `blocks`, so any database with a schema has both.
async fn check_header_version(
    store: &PostgresStore,
    conn: &mut sqlx::PgConnection,
) -> Result<(), StoreError> {
    let mut meta = [None, None];
    for (slot, key) in meta.iter_mut().zip([META_HEADER_VERSION, META_CHAIN_ID]) {
        *slot = store
            .query_scalar::<String>("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    }
    let [recorded, chain_id] = meta;
    let first_header: Option<String> = store
        .query_scalar("SELECT header FROM blocks ORDER BY height, hash LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    header_version::judge(
        recorded.as_deref(),
        first_header.as_deref(),
        chain_id.is_some(),
        "database schema",
    )
}

pub(super) async fn current(
    store: &PostgresStore,
    conn: &mut sqlx::PgConnection,
) -> Result<i64, StoreError> {
    let v: Option<i64> = store
        .query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(conn)
        .await?;
    Ok(v.unwrap_or(0))
}
