//! Validator-registry ledger entries (docs/protocol.md §3.5), kept as opaque JSON: the
//! registry rules live in the ledger crate, the store only orders entries and records their
//! block.

use bizra_ledger::Hash32;
use rusqlite::{params, Connection};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::codec::{to_i64, to_u64};
use crate::error::StoreError;
use crate::placement::entry_not_placed;
use crate::rows::{select_registry, RegistryRow};
use crate::types::RegistryEntry;

use super::write_thread::begin;

fn entry(row: &SqliteRow) -> Result<RegistryEntry, StoreError> {
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

pub(super) fn insert(
    conn: &mut Connection,
    kind: &str,
    body: &str,
    epoch: u64,
) -> Result<u64, StoreError> {
    let seq: i64 = conn.query_row(
        "INSERT INTO registry_entries (kind, epoch, body) VALUES (?1, ?2, ?3) RETURNING seq",
        params![kind, to_i64(epoch, "epoch")?, body],
        |r| r.get(0),
    )?;
    to_u64(seq, "registry seq")
}

pub(super) async fn list(
    readers: &SqlitePool,
    pending_only: bool,
) -> Result<Vec<RegistryEntry>, StoreError> {
    let rows = sqlx::query(select_registry(pending_only))
        .fetch_all(readers)
        .await?;
    rows.iter().map(entry).collect()
}

pub(super) fn mark_included(
    conn: &mut Connection,
    block_hash: &Hash32,
    seqs: &[u64],
) -> Result<(), StoreError> {
    let hash = block_hash.as_bytes();
    let tx = begin(conn)?;
    if !super::blocks::exists(&tx, block_hash)? {
        return Err(StoreError::NotFound(format!("block {block_hash}")));
    }
    for &seq in seqs {
        let seq_i = to_i64(seq, "registry seq")?;
        // Matching rows already in this block keep the call idempotent.
        let changed = tx.execute(
            "UPDATE registry_entries SET block_hash = ?1 \
             WHERE seq = ?2 AND (block_hash IS NULL OR block_hash = ?1)",
            params![hash, seq_i],
        )?;
        if changed == 0 {
            let found = tx
                .prepare("SELECT 1 FROM registry_entries WHERE seq = ?1")?
                .exists([seq_i])?;
            return Err(entry_not_placed(seq, found));
        }
    }
    tx.commit()?;
    Ok(())
}
