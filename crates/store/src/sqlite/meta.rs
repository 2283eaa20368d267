//! Single values: node identity and settings (written on the writer thread).

use bizra_ledger::Hash32;
use rusqlite::{Connection, OptionalExtension};
use sqlx::SqlitePool;

use super::write_thread::begin;
use crate::error::StoreError;
use crate::header_version::{self, META_HEADER_VERSION};
use crate::identity;
use crate::types::{IdentityCheck, META_CHAIN_ID, META_GENESIS_HASH};

pub(super) fn set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

pub(super) async fn get(pool: &SqlitePool, key: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
        .bind(key)
        .fetch_optional(pool)
        .await?)
}

pub(super) fn bind_identity(
    conn: &mut Connection,
    chain_id: &str,
    genesis_hash: &Hash32,
) -> Result<IdentityCheck, StoreError> {
    let genesis_hex = genesis_hash.to_hex();
    let tx = begin(conn)?;
    let stored = |key: &str| -> Result<Option<String>, StoreError> {
        Ok(tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let found = identity::judge(
        stored(META_CHAIN_ID)?,
        stored(META_GENESIS_HASH)?,
        chain_id,
        &genesis_hex,
    )?;
    if found == IdentityCheck::Fresh {
        for (k, v) in [
            (META_CHAIN_ID, chain_id),
            (META_GENESIS_HASH, genesis_hex.as_str()),
        ] {
            tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", [k, v])?;
        }
        // With the identity, in its transaction: a bound store always says which header
        // version it holds (header_version.rs relies on it).
        set(&tx, META_HEADER_VERSION, &header_version::this_version())?;
        tx.commit()?;
    }
    Ok(found)
}
