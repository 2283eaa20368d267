//! Single values: node identity and settings.

use bizra_ledger::Hash32;
use sqlx::Connection;

use super::{LockPurpose, PostgresStore};
use crate::error::StoreError;
use crate::header_version::{self, META_HEADER_VERSION};
use crate::identity;
use crate::types::{IdentityCheck, META_CHAIN_ID, META_GENESIS_HASH};

pub(super) async fn set(store: &PostgresStore, key: &str, value: &str) -> Result<(), StoreError> {
    let mut c = store.acquire().await?;
    store
        .query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(super) async fn get(store: &PostgresStore, key: &str) -> Result<Option<String>, StoreError> {
    let mut c = store.acquire().await?;
    Ok(store
        .query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *c)
        .await?)
}

/// Under an advisory lock: two replicas binding an empty database at once must not both
/// see it empty.
pub(super) async fn bind_identity(
    store: &PostgresStore,
    chain_id: &str,
    genesis_hash: &Hash32,
) -> Result<IdentityCheck, StoreError> {
    let genesis_hex = genesis_hash.to_hex();
    let mut c = store.acquire().await?;
    let mut tx = c.begin().await?;
    store.lock(&mut tx, LockPurpose::Identity).await?;
    let mut stored = [None, None];
    for (slot, key) in stored.iter_mut().zip([META_CHAIN_ID, META_GENESIS_HASH]) {
        *slot = store
            .query_scalar::<String>("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
    }
    let [stored_chain, stored_genesis] = stored;
    let found = identity::judge(stored_chain, stored_genesis, chain_id, &genesis_hex)?;
    if found == IdentityCheck::Fresh {
        for (k, v) in [
            (META_CHAIN_ID, chain_id),
            (META_GENESIS_HASH, genesis_hex.as_str()),
        ] {
            store
                .query("INSERT INTO meta (key, value) VALUES ($1, $2)")
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        // With the identity, in its transaction: a bound store always says which header
        // version it holds (header_version.rs relies on it).
        store
            .query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(META_HEADER_VERSION)
            .bind(header_version::this_version())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(found)
}
