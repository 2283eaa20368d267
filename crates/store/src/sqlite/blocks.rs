//! Blocks, their attestations' placement, and finality.

use bizra_ledger::block::Block;
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::Hash32;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::chunks::{chunk_len, rows, PerChunk};
use crate::codec::{clamp_limit, pack_hashes, to_hash, to_i64, to_u64};
use crate::error::StoreError;
use crate::rows::{select_block, BlockRow};
use crate::types::{BlockInsert, StoredBlock};

fn stored_block(row: &SqliteRow) -> Result<StoredBlock, StoreError> {
    BlockRow {
        hash: row.try_get("hash")?,
        header: row.try_get("header")?,
        signature: row.try_get("signature")?,
        attestation_ids: row.try_get("attestation_ids")?,
        finalized: row.try_get::<i64, _>("finalized")? != 0,
        finalized_at_ms: row.try_get("finalized_at_ms")?,
        qc: row.try_get("qc")?,
        created_at_ms: row.try_get("created_at_ms")?,
    }
    .into_stored()
}

pub(super) async fn by_hash(
    conn: &mut SqliteConnection,
    hash: &Hash32,
) -> Result<Option<StoredBlock>, StoreError> {
    sqlx::query(select_block!("WHERE hash = ?1"))
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(stored_block)
        .transpose()
}

async fn exists(conn: &mut SqliteConnection, hash: &Hash32) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blocks WHERE hash = ?1")
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

/// `UPDATE` placing `n` attestations (digest, index pairs, then the block hash) that are
/// in no block yet.
static PLACE: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(digest, idx) AS (VALUES {}) \
         UPDATE attestations SET block_hash = ?, \
         block_index = (SELECT idx FROM v WHERE v.digest = attestations.digest) \
         WHERE digest IN (SELECT digest FROM v) AND block_hash IS NULL",
        rows("(?, ?)", n)
    )
});

/// Why a chunk of a block's attestations could not all be placed: the first one that is
/// unknown, already in another block, or twice in this one.
async fn misplaced(
    tx: &mut sqlx::SqliteConnection,
    block: &Block,
    chunk: &[Hash32],
) -> Result<StoreError, StoreError> {
    let mut seen = std::collections::HashSet::new();
    for digest in chunk {
        if !seen.insert(*digest) {
            return Ok(StoreError::Conflict(format!(
                "attestation {digest} appears twice in block {}",
                block.hash
            )));
        }
        let owner: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT block_hash FROM attestations WHERE digest = ?1")
                .bind(digest.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await?;
        match owner {
            None => return Ok(StoreError::NotFound(format!("attestation {digest}"))),
            Some(Some(other)) if other.as_slice() != block.hash.as_bytes().as_slice() => {
                return Ok(StoreError::Conflict(format!(
                    "attestation {digest} is already in block {}",
                    to_hash(&other, "block hash").map_or_else(|_| "?".to_string(), |h| h.to_hex())
                )))
            }
            _ => {}
        }
    }
    Ok(StoreError::Conflict(format!(
        "the attestations of block {} could not all be placed",
        block.hash
    )))
}

/// Attestations placed per write transaction. A block's placement rewrites each of its
/// attestation rows; done in one transaction, a full block held the single writer long
/// enough to stall every submission behind it (BENCHMARKS.md). In transactions of this
/// size, group commits run between them.
pub(super) const PLACE_PER_TRANSACTION: usize = 512;

/// Places `ids` (starting at block index `first`) in `block`; an error when any of them
/// is not an unplaced attestation.
async fn place(
    tx: &mut SqliteConnection,
    block: &Block,
    first: usize,
    ids: &[Hash32],
) -> Result<(), StoreError> {
    let mut at = 0;
    while at < ids.len() {
        let n = chunk_len(ids.len() - at);
        let chunk = &ids[at..at + n];
        let mut q = sqlx::query(PLACE.sql(n));
        for (offset, digest) in chunk.iter().enumerate() {
            let index = i64::try_from(first + at + offset)
                .map_err(|_| StoreError::Invalid("too many attestations".into()))?;
            q = q.bind(digest.as_bytes().as_slice()).bind(index);
        }
        let placed = q
            .bind(block.hash.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?;
        if placed.rows_affected() != n as u64 {
            return Err(misplaced(tx, block, chunk).await?);
        }
        at += n;
    }
    let n = i64::try_from(ids.len())
        .map_err(|_| StoreError::Invalid("too many attestations".into()))?;
    if n > 0 {
        sqlx::query("UPDATE counters SET value = value - ?1 WHERE name = 'pending_attestations'")
            .bind(n)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Checks, without writing, that every id is a known attestation in no block, once.
async fn check_placeable(tx: &mut SqliteConnection, block: &Block) -> Result<(), StoreError> {
    let ids = &block.attestation_ids;
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    if let Some(twice) = ids.iter().find(|d| !seen.insert(**d)) {
        return Err(StoreError::Conflict(format!(
            "attestation {twice} appears twice in block {}",
            block.hash
        )));
    }
    let mut at = 0;
    while at < ids.len() {
        let n = chunk_len(ids.len() - at);
        let chunk = &ids[at..at + n];
        let mut q = sqlx::query_scalar::<_, i64>(UNPLACED_COUNT.sql(n));
        for digest in chunk {
            q = q.bind(digest.as_bytes().as_slice());
        }
        if q.fetch_one(&mut *tx).await? != n as i64 {
            return Err(misplaced(tx, block, chunk).await?);
        }
        at += n;
    }
    Ok(())
}

/// `SELECT count(*)` of the unplaced attestations among `n` digests.
static UNPLACED_COUNT: PerChunk = PerChunk::new(|n| {
    format!(
        "SELECT count(*) FROM attestations WHERE digest IN ({}) AND block_hash IS NULL",
        rows("?", n)
    )
});

/// Removes a block whose placement did not finish, and returns its attestations to the
/// pending queue. Nothing can refer to it: it was never acknowledged to its caller.
async fn undo_unplaced(tx: &mut SqliteConnection, hash: &Hash32) -> Result<(), StoreError> {
    let hash = hash.as_bytes().as_slice();
    sqlx::query(
        "UPDATE counters SET value = value + \
         (SELECT count(*) FROM attestations WHERE block_hash = ?1) \
         WHERE name = 'pending_attestations'",
    )
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE attestations SET block_hash = NULL, block_index = NULL WHERE block_hash = ?1",
    )
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM blocks WHERE hash = ?1 AND placed = 0")
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// At open: removes every block a crash left half placed.
pub(super) async fn undo_unfinished(writer: &SqlitePool) -> Result<usize, StoreError> {
    let mut tx = super::begin_write(writer).await?;
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM blocks WHERE placed = 0")
        .fetch_all(&mut *tx)
        .await?;
    for h in &hashes {
        undo_unplaced(&mut tx, &to_hash(h, "block hash")?).await?;
    }
    tx.commit().await?;
    Ok(hashes.len())
}

/// Stores `block` and places its attestations: the row, the checks and the first
/// [`PLACE_PER_TRANSACTION`] placements in one transaction, the rest in transactions of
/// that size, and `placed = 1` with the last. Returns once all are placed; a failure
/// after the first transaction removes the block again, so the caller sees all or
/// nothing (a crash in between is undone at the next open). The caller runs one insert
/// at a time, so a block found with `placed = 0` is what a failed insert left.
pub(super) async fn insert(
    writer: &SqlitePool,
    block: &Block,
    created_at_ms: u64,
) -> Result<BlockInsert, StoreError> {
    // A block whose hash does not match its header would poison every later read.
    block
        .check_integrity()
        .map_err(|e| StoreError::Invalid(format!("block {}: {e}", block.hash)))?;
    let header = serde_json::to_string(&block.header)
        .map_err(|e| StoreError::Invalid(format!("block {} header: {e}", block.hash)))?;
    let height = to_i64(block.header.height, "block height")?;
    let timestamp = to_i64(block.header.timestamp_ms, "block timestamp_ms")?;
    let created = to_i64(created_at_ms, "created_at_ms")?;
    let ids = &block.attestation_ids;
    let first = ids.len().min(PLACE_PER_TRANSACTION);

    let mut tx = super::begin_write(writer).await?;
    let placed: Option<i64> = sqlx::query_scalar("SELECT placed FROM blocks WHERE hash = ?1")
        .bind(block.hash.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await?;
    match placed {
        Some(0) => undo_unplaced(&mut tx, &block.hash).await?,
        Some(_) => {
            let existing = by_hash(&mut tx, &block.hash).await?;
            // Dropping `tx` rolls back the (empty) transaction.
            return if existing.is_some_and(|e| e.block == *block) {
                Ok(BlockInsert::AlreadyStored)
            } else {
                Err(StoreError::Conflict(format!(
                    "block {} is stored with different content",
                    block.hash
                )))
            };
        }
        None => {}
    }
    // Returning an error drops `tx`: nothing of the block is written.
    check_placeable(&mut tx, block).await?;
    sqlx::query(
        "INSERT INTO blocks (hash, height, timestamp_ms, header, signature, attestation_ids, \
         created_at_ms, placed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(block.hash.as_bytes().as_slice())
    .bind(height)
    .bind(timestamp)
    .bind(&header)
    .bind(block.signature.as_ref().map(|s| s.0.to_vec()))
    .bind(pack_hashes(ids))
    .bind(created)
    .bind(i64::from(first == ids.len()))
    .execute(&mut *tx)
    .await?;
    place(&mut tx, block, 0, &ids[..first]).await?;
    tx.commit().await?;

    let mut at = first;
    while at < ids.len() {
        let end = (at + PLACE_PER_TRANSACTION).min(ids.len());
        if let Err(e) = place_more(writer, block, at, &ids[at..end], end == ids.len()).await {
            // Only a write around this node's own chain lock, or a store failure, gets
            // here; either way the block must not stay half placed.
            if let Ok(mut undo) = super::begin_write(writer).await {
                if undo_unplaced(&mut undo, &block.hash).await.is_ok() {
                    let _ = undo.commit().await;
                }
            }
            return Err(e);
        }
        at = end;
    }
    Ok(BlockInsert::Inserted)
}

/// One later transaction of [`insert`].
async fn place_more(
    writer: &SqlitePool,
    block: &Block,
    first: usize,
    ids: &[Hash32],
    last: bool,
) -> Result<(), StoreError> {
    let mut tx = super::begin_write(writer).await?;
    place(&mut tx, block, first, ids).await?;
    if last {
        sqlx::query("UPDATE blocks SET placed = 1 WHERE hash = ?1")
            .bind(block.hash.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn mark_finalized(
    writer: &SqlitePool,
    hashes: &[Hash32],
    qc: Option<&QuorumCertificate>,
    at_ms: u64,
) -> Result<u64, StoreError> {
    let at = to_i64(at_ms, "finalized_at_ms")?;
    let qc_json = qc
        .map(|q| {
            serde_json::to_string(q)
                .map(|json| (q.block_hash, json))
                .map_err(|e| StoreError::Invalid(format!("qc: {e}")))
        })
        .transpose()?;
    let mut tx = super::begin_write(writer).await?;
    let mut newly = 0u64;
    for hash in hashes {
        // `finalized = 0` in the filter: finality never reverts and its time never moves.
        let r = sqlx::query(
            "UPDATE blocks SET finalized = 1, finalized_at_ms = ?1 WHERE hash = ?2 AND finalized = 0",
        )
        .bind(at)
        .bind(hash.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            newly += 1;
        } else if !exists(&mut tx, hash).await? {
            return Err(StoreError::NotFound(format!("block {hash}")));
        }
    }
    if let Some((head, json)) = qc_json {
        // The first certificate stays: a later one proves nothing new.
        let r = sqlx::query("UPDATE blocks SET qc = ?1 WHERE hash = ?2 AND qc IS NULL")
            .bind(&json)
            .bind(head.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 && !exists(&mut tx, &head).await? {
            return Err(StoreError::NotFound(format!("block {head}")));
        }
    }
    tx.commit().await?;
    Ok(newly)
}

/// Blocks from `from` up, by height then hash; every one when `limit` is `None`.
pub(super) async fn from_height(
    readers: &SqlitePool,
    from: u64,
    limit: Option<u32>,
) -> Result<Vec<StoredBlock>, StoreError> {
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    // SQLite reads LIMIT -1 as "no limit".
    let limit = limit.map_or(-1, |l| i64::from(clamp_limit(l)));
    let rows = sqlx::query(select_block!(
        "WHERE height >= ?1 ORDER BY height, hash LIMIT ?2"
    ))
    .bind(from)
    .bind(limit)
    .fetch_all(readers)
    .await?;
    rows.iter().map(stored_block).collect()
}

pub(super) async fn finalized_height(readers: &SqlitePool) -> Result<Option<u64>, StoreError> {
    let h: Option<i64> = sqlx::query_scalar("SELECT MAX(height) FROM blocks WHERE finalized = 1")
        .fetch_one(readers)
        .await?;
    h.map(|h| to_u64(h, "block height")).transpose()
}
