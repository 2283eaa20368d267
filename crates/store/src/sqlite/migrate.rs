//! Schema migrations: an ordered list compiled into the binary, applied at open, each in
//! its own transaction together with its `schema_version` row, so a crash mid-migration
//! leaves the previous version intact.

use rusqlite::{params, Connection};
use sqlx::SqlitePool;

use super::write_thread::begin;

use crate::codec::now_ms;
use crate::error::StoreError;
use crate::migrations::{self, Migration};

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
/// whose rows this build might misread. Runs on the writer thread.
pub(super) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(VERSION_TABLE)?;
    let found: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    for m in migrations::pending(MIGRATIONS, found)? {
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

pub(super) async fn current(pool: &SqlitePool) -> Result<i64, StoreError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(pool)
        .await?;
    Ok(v.unwrap_or(0))
}
