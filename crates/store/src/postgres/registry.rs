//! Validator-registry ledger entries (docs/protocol.md §3.5), opaque JSON to the store.

use bizra_ledger::Hash32;
use sqlx::postgres::PgRow;
use sqlx::{Connection, Row};

use super::PostgresStore;
use crate::codec::{registry_body_column, to_i64, to_u64};
use crate::error::StoreError;
use crate::placement::entry_not_placed;
use crate::rows::{select_registry, RegistryRow};
use crate::types::RegistryEntry;

fn entry(row: &PgRow) -> Result<RegistryEntry, StoreError> {
    RegistryRow {
        seq: row.try_get("seq")?,
        kind: row.try_get("kind")?,
        epoch: row.try_get("epoch")?,
        body: row.try_get("body")?,
        block_hash: row.try_get("block_hash")?,
        commit_seq: row.try_get("commit_seq")?,
    }
    .into_entry()
}

pub(super) async fn insert(
    store: &PostgresStore,
    kind: &str,
    body: &serde_json::Value,
    epoch: u64,
) -> Result<u64, StoreError> {
    let body = registry_body_column(body)?;
    let mut c = store.acquire().await?;
    let seq: i64 = store
        .query_scalar(
            "INSERT INTO registry_entries (kind, epoch, body) VALUES ($1, $2, $3) RETURNING seq",
        )
        .bind(kind)
        .bind(to_i64(epoch, "epoch")?)
        .bind(body)
        .fetch_one(&mut *c)
        .await?;
    to_u64(seq, "registry seq")
}

pub(super) async fn list(
    store: &PostgresStore,
    pending_only: bool,
) -> Result<Vec<RegistryEntry>, StoreError> {
    let mut c = store.acquire().await?;
    let rows = store
        .query(select_registry(pending_only))
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(entry).collect()
}

pub(super) async fn mark_included(
    store: &PostgresStore,
    block_hash: &Hash32,
    seqs: &[u64],
) -> Result<(), StoreError> {
    let hash = block_hash.as_bytes().as_slice();
    let mut c = store.acquire().await?;
    let mut tx = c.begin().await?;
    let block: Option<i32> = store
        .query_scalar("SELECT 1 FROM blocks WHERE hash = $1")
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await?;
    if block.is_none() {
        return Err(StoreError::NotFound(format!("block {block_hash}")));
    }
    for &seq in seqs {
        let seq_i = to_i64(seq, "registry seq")?;
        // Rows already in this block keep the call idempotent.
        let r = store
            .query(
                "UPDATE registry_entries SET block_hash = $1 \
                 WHERE seq = $2 AND (block_hash IS NULL OR block_hash = $1)",
            )
            .bind(hash)
            .bind(seq_i)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            let found: Option<i32> = store
                .query_scalar("SELECT 1 FROM registry_entries WHERE seq = $1")
                .bind(seq_i)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(entry_not_placed(seq, found.is_some()));
        }
    }
    tx.commit().await?;
    Ok(())
}
