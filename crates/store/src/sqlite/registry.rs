//! Validator-registry ledger entries (SPEC §3.5), kept as opaque JSON: the registry rules
//! live in the ledger crate, the store only orders entries and records their block.

use bizra_ledger::Hash32;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::codec::{to_i64, to_u64};
use crate::error::StoreError;
use crate::rows::RegistryRow;
use crate::types::RegistryEntry;

fn entry(row: &SqliteRow) -> Result<RegistryEntry, StoreError> {
    RegistryRow {
        seq: row.try_get("seq")?,
        kind: row.try_get("kind")?,
        epoch: row.try_get("epoch")?,
        body: row.try_get("body")?,
        block_hash: row.try_get("block_hash")?,
    }
    .into_entry()
}

pub(super) async fn insert(
    writer: &SqlitePool,
    kind: &str,
    body: &serde_json::Value,
    epoch: u64,
) -> Result<u64, StoreError> {
    let body = serde_json::to_string(body)
        .map_err(|e| StoreError::Invalid(format!("registry entry body: {e}")))?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO registry_entries (kind, epoch, body) VALUES (?1, ?2, ?3) RETURNING seq",
    )
    .bind(kind)
    .bind(to_i64(epoch, "epoch")?)
    .bind(body)
    .fetch_one(writer)
    .await?;
    to_u64(seq, "registry seq")
}

pub(super) async fn list(
    readers: &SqlitePool,
    pending_only: bool,
) -> Result<Vec<RegistryEntry>, StoreError> {
    let sql = if pending_only {
        "SELECT seq, kind, epoch, body, block_hash FROM registry_entries \
         WHERE block_hash IS NULL ORDER BY seq"
    } else {
        "SELECT seq, kind, epoch, body, block_hash FROM registry_entries ORDER BY seq"
    };
    let rows = sqlx::query(sql).fetch_all(readers).await?;
    rows.iter().map(entry).collect()
}

pub(super) async fn mark_included(
    writer: &SqlitePool,
    block_hash: &Hash32,
    seqs: &[u64],
) -> Result<(), StoreError> {
    let hash = block_hash.as_bytes().as_slice();
    let mut tx = super::begin_write(writer).await?;
    let block: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blocks WHERE hash = ?1")
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await?;
    if block.is_none() {
        return Err(StoreError::NotFound(format!("block {block_hash}")));
    }
    for &seq in seqs {
        let seq_i = to_i64(seq, "registry seq")?;
        // Matching rows already in this block keep the call idempotent.
        let r = sqlx::query(
            "UPDATE registry_entries SET block_hash = ?1 \
             WHERE seq = ?2 AND (block_hash IS NULL OR block_hash = ?1)",
        )
        .bind(hash)
        .bind(seq_i)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM registry_entries WHERE seq = ?1")
                    .bind(seq_i)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match found {
                None => StoreError::NotFound(format!("registry entry {seq}")),
                Some(_) => StoreError::Conflict(format!(
                    "registry entry {seq} is already in another block"
                )),
            });
        }
    }
    tx.commit().await?;
    Ok(())
}
