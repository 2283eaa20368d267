//! Stores as a build of block header version 1 left them, for the tests that they are
//! refused (docs/protocol.md §3.1): the schema those builds migrated to (their migration
//! files, which later builds keep unchanged), the `schema_version` rows, the identity rows
//! and a genesis block with a version-1 header.

use std::path::Path;

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::{TestSchema, TestkitError};

/// The schema version of the embedded store that version-1 builds wrote.
pub const SQLITE_SCHEMA_VERSION: i64 = 2;
/// The schema version of the PostgreSQL store that version-1 builds wrote.
pub const POSTGRES_SCHEMA_VERSION: i64 = 1;

const CHAIN_ID: &str = "bizra-testnet-001";
/// A genesis header as version-1 builds serialized it (no epoch, no entries root), and
/// its hash, BLAKE3 of its RFC 8785 bytes.
const GENESIS_HEADER: &str = r#"{"version":1,"chain_id":"bizra-testnet-001","height":0,"parents":[],"att_root":"af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262","att_count":0,"proposer":"49733337d3fbcb338cf57845b63eb3ee7c8ff4c0e37039a16f8af439dd0c88b3","timestamp_ms":1767225600000}"#;
const GENESIS_HASH: &str = "1494ade515b58cafc6fd188cd322ef2e8cd018b15c37f5fd5de5a735fdac6add";

const SQLITE_MIGRATIONS: [(i64, &str, &str); 2] = [
    (
        1,
        "init",
        include_str!("../../store/migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "block_placement",
        include_str!("../../store/migrations/sqlite/0002_block_placement.sql"),
    ),
];
const POSTGRES_INIT: &str = include_str!("../../store/migrations/postgres/0001_init.sql");

fn genesis_hash() -> Vec<u8> {
    // A constant of this file: the decode cannot fail.
    hex::decode(GENESIS_HASH).unwrap_or_default()
}

/// Writes a version-1 embedded store at `path` (a file that must not exist yet).
pub async fn write_sqlite(path: &Path) -> Result<(), TestkitError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(TestkitError::io(dir.display().to_string()))?;
    }
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = SqliteConnection::connect(&url).await?;
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; \
         CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, \
         name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    for (version, name, sql) in SQLITE_MIGRATIONS {
        sqlx::raw_sql(sql).execute(&mut conn).await?;
        sqlx::query("INSERT INTO schema_version VALUES (?1, ?2, 0)")
            .bind(version)
            .bind(name)
            .execute(&mut conn)
            .await?;
    }
    for (key, value) in [("chain_id", CHAIN_ID), ("genesis_hash", GENESIS_HASH)] {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?1, ?2)")
            .bind(key)
            .bind(value)
            .execute(&mut conn)
            .await?;
    }
    sqlx::query(
        "INSERT INTO blocks (hash, height, timestamp_ms, header, attestation_ids, finalized, \
         created_at_ms) VALUES (?1, 0, 1767225600000, ?2, x'', 1, 1767225600000)",
    )
    .bind(genesis_hash())
    .bind(GENESIS_HEADER)
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// Writes a version-1 PostgreSQL store into `schema` (empty).
pub async fn write_postgres(schema: &TestSchema) -> Result<(), TestkitError> {
    let mut conn = PgConnection::connect(&schema.url).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(&format!(
        "SET LOCAL search_path TO \"{}\"; \
         CREATE TABLE schema_version (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at_ms BIGINT NOT NULL); {POSTGRES_INIT}",
        schema.name
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO schema_version VALUES ($1, 'init', 0)")
        .bind(POSTGRES_SCHEMA_VERSION)
        .execute(&mut *tx)
        .await?;
    for (key, value) in [("chain_id", CHAIN_ID), ("genesis_hash", GENESIS_HASH)] {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO blocks (hash, height, timestamp_ms, header, attestation_ids, finalized, \
         created_at_ms) VALUES ($1, 0, 1767225600000, $2, ''::bytea, true, 1767225600000)",
    )
    .bind(genesis_hash())
    .bind(GENESIS_HEADER)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// The schema version of the embedded store at `path` and whether its `blocks` table has
/// an `entry_ids` column: what a refused open must have left as it was.
pub async fn sqlite_shape(path: &Path) -> Result<(i64, bool), TestkitError> {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut conn)
        .await?;
    let entry_ids: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pragma_table_info('blocks') WHERE name = 'entry_ids'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok((version, entry_ids > 0))
}

/// [`sqlite_shape`] of the PostgreSQL store in `schema`.
pub async fn postgres_shape(schema: &TestSchema) -> Result<(i64, bool), TestkitError> {
    let mut conn = PgConnection::connect(&schema.url).await?;
    let version: i64 = sqlx::query_scalar(&format!(
        "SELECT MAX(version) FROM \"{}\".schema_version",
        schema.name
    ))
    .fetch_one(&mut conn)
    .await?;
    let entry_ids: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'blocks' AND column_name = 'entry_ids'",
    )
    .bind(&schema.name)
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok((version, entry_ids > 0))
}
