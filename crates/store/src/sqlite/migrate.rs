//! Schema migrations: an ordered list compiled into the binary, applied at open, each in
//! its own transaction together with its `schema_version` row, so a crash mid-migration
//! leaves the previous version intact.

use rusqlite::{params, Connection};
use sqlx::SqlitePool;

use super::write_thread::begin;

use crate::codec::now_ms;
use crate::error::StoreError;

/// (version, name, SQL), in order. Append only: a released migration never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "block_placement",
        include_str!("../../migrations/sqlite/0002_block_placement.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version       INTEGER PRIMARY KEY NOT NULL,
    name          TEXT    NOT NULL,
    applied_at_ms INTEGER NOT NULL
)";

/// Brings the file up to [`SCHEMA_VERSION`]; refuses a file written by a newer build,
/// whose rows this build might misread. Runs on the writer thread.
pub(super) fn run(conn: &mut Connection) -> Result<i64, StoreError> {
    conn.execute_batch(VERSION_TABLE)?;
    let found: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "database schema version {found} is newer than this build's {SCHEMA_VERSION}"
        )));
    }
    let mut version = found;
    for &(v, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        let tx = begin(conn)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![v, name, now_ms()],
        )?;
        tx.commit()?;
        version = v;
    }
    Ok(version)
}

pub(super) async fn current(pool: &SqlitePool) -> Result<i64, StoreError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(pool)
        .await?;
    Ok(v.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_end_at_the_schema_version() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
