//! Single values: node identity and settings.

use bizra_ledger::Hash32;
use sqlx::SqlitePool;

use crate::error::StoreError;
use crate::types::{IdentityCheck, META_CHAIN_ID, META_GENESIS_HASH};

pub(super) async fn set(writer: &SqlitePool, key: &str, value: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(writer)
    .await?;
    Ok(())
}

pub(super) async fn get(pool: &SqlitePool, key: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
        .bind(key)
        .fetch_optional(pool)
        .await?)
}

pub(super) async fn bind_identity(
    writer: &SqlitePool,
    chain_id: &str,
    genesis_hash: &Hash32,
) -> Result<IdentityCheck, StoreError> {
    let genesis_hex = genesis_hash.to_hex();
    let mut tx = super::begin_write(writer).await?;
    let stored_chain: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
        .bind(META_CHAIN_ID)
        .fetch_optional(&mut *tx)
        .await?;
    let stored_genesis: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(META_GENESIS_HASH)
            .fetch_optional(&mut *tx)
            .await?;
    match (stored_chain, stored_genesis) {
        (None, None) => {
            for (k, v) in [(META_CHAIN_ID, chain_id), (META_GENESIS_HASH, genesis_hex.as_str())] {
                sqlx::query("INSERT INTO meta (key, value) VALUES (?1, ?2)")
                    .bind(k)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(IdentityCheck::Fresh)
        }
        (Some(c), Some(g)) if c == chain_id && g == genesis_hex => Ok(IdentityCheck::Matches),
        (Some(c), Some(g)) => Err(StoreError::Conflict(format!(
            "this store belongs to chain {c} with genesis {g}, not chain {chain_id} with genesis {genesis_hex}"
        ))),
        _ => Err(StoreError::corrupt(
            "store has only one of chain_id and genesis_hash",
        )),
    }
}
