//! Schema migrations: an ordered list compiled into the binary, applied at open, each in
//! its own transaction together with its `schema_version` row, so a crash mid-migration
//! leaves the previous version intact.

use rusqlite::{params, Connection, OptionalExtension};
use sqlx::SqlitePool;

use super::write_thread::begin;

use crate::codec::now_ms;
use crate::error::StoreError;
use crate::header_version::{self, META_HEADER_VERSION};
use crate::migrations::{self, Migration};
use crate::types::META_CHAIN_ID;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "block_placement",
        sql: include_str!("../../migrations/sqlite/0002_block_placement.sql"),
    },
    Migration {
        version: 3,
        name: "entry_ids",
        sql: include_str!("../../migrations/sqlite/0003_entry_ids.sql"),
    },
    Migration {
        version: 4,
        name: "dag_ledger",
        sql: include_str!("../../migrations/sqlite/0004_dag_ledger.sql"),
    },
];
const _: () = assert!(migrations::is_well_formed(MIGRATIONS));

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = migrations::latest(MIGRATIONS);

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version       INTEGER PRIMARY KEY NOT NULL,
    name          TEXT    NOT NULL,
    applied_at_ms INTEGER NOT NULL
)";

/// Brings the file up to [`SCHEMA_VERSION`]; refuses a file written by a newer build,
/// whose rows this build might misread, and a file holding block headers of another
/// version, before changing anything in either. Runs on the writer thread.
pub(super) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(VERSION_TABLE)?;
    let found: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    let pending = migrations::pending(MIGRATIONS, found)?;
    if found > 0 {
        check_header_version(conn)?;
    }
    for m in pending {
        let tx = begin(conn)?;
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_ms()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// Migration 1 made `meta` and `blocks`, so any file with a schema has both.
fn check_header_version(conn: &Connection) -> Result<(), StoreError> {
    let meta = |key: &str| -> Result<Option<String>, StoreError> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let first_header: Option<String> = conn
        .query_row(
            "SELECT header FROM blocks ORDER BY height, hash LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    header_version::judge(
        meta(META_HEADER_VERSION)?.as_deref(),
        first_header.as_deref(),
        meta(META_CHAIN_ID)?.is_some(),
        "data directory",
    )
}

pub(super) async fn current(pool: &SqlitePool) -> Result<i64, StoreError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(pool)
        .await?;
    Ok(v.unwrap_or(0))
}
