//! Blocks, their attestations' placement, own blocks with their signing slot, and
//! certification: writes on the writer thread, reads on the reader pool. (Commits are in
//! `ledger`.)

use bizra_ledger::block::Block;
use bizra_ledger::Hash32;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, ToSql, Transaction};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::chunks::{chunk_len, rows, PerChunk};
use super::columns::{blob, opt_blob, opt_text, text};
use super::signing::sign_in;
use super::write_thread::{begin, WriteThread};
use crate::codec::{clamp_limit, pack_hashes, to_hash, to_i64, to_u64};
use crate::error::StoreError;
use crate::placement::{already_stored, check_known, check_repeats, NewBlockRow};
use crate::rows::{select_block, BlockRow};
use crate::signing::Slot;
use crate::types::{BlockInsert, Signing, StoredBlock};

fn stored_block(row: &SqliteRow) -> Result<StoredBlock, StoreError> {
    BlockRow {
        hash: row.try_get("hash")?,
        header: row.try_get("header")?,
        signature: row.try_get("signature")?,
        attestation_ids: row.try_get("attestation_ids")?,
        entry_ids: row.try_get("entry_ids")?,
        finalized: row.try_get::<i64, _>("finalized")? != 0,
        finalized_at_ms: row.try_get("finalized_at_ms")?,
        qc: row.try_get("qc")?,
        created_at_ms: row.try_get("created_at_ms")?,
        certified_at_ms: row.try_get("certified_at_ms")?,
        commit_seq: row.try_get("commit_seq")?,
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

/// Whether block `hash` is stored, inside the writer's transaction.
pub(super) fn exists(tx: &Transaction<'_>, hash: &Hash32) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM blocks WHERE hash = ?1")?
        .exists([hash.as_bytes()])?)
}

/// [`by_hash`] inside the writer's transaction.
fn by_hash_in(tx: &Transaction<'_>, hash: &Hash32) -> Result<Option<StoredBlock>, StoreError> {
    let mut stmt = tx.prepare_cached(select_block!("WHERE hash = ?1"))?;
    let mut rows = stmt.query([hash.as_bytes()])?;
    match rows.next()? {
        Some(row) => BlockRow {
            hash: blob(row, "hash")?,
            header: text(row, "header")?,
            signature: opt_blob(row, "signature")?,
            attestation_ids: blob(row, "attestation_ids")?,
            entry_ids: blob(row, "entry_ids")?,
            finalized: row.get::<_, i64>("finalized")? != 0,
            finalized_at_ms: row.get("finalized_at_ms")?,
            qc: opt_text(row, "qc")?,
            created_at_ms: row.get("created_at_ms")?,
            certified_at_ms: row.get("certified_at_ms")?,
            commit_seq: row.get("commit_seq")?,
        }
        .into_stored()
        .map(Some),
        None => Ok(None),
    }
}

/// `UPDATE` placing those of `n` attestations (digest, index pairs, then the block hash)
/// that are in no block yet: an attestation keeps its first placement.
static PLACE: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(digest, idx) AS (VALUES {}) \
         UPDATE attestations SET block_hash = ?, \
         block_index = (SELECT idx FROM v WHERE v.digest = attestations.digest) \
         WHERE digest IN (SELECT digest FROM v) AND block_hash IS NULL",
        rows("(?, ?)", n)
    )
});

/// Attestations placed per write transaction. A block's placement rewrites each of its
/// attestation rows; done in one transaction, a full block held the single writer long
/// enough to stall every submission behind it (BENCHMARKS.md). In transactions of this
/// size, group commits run between them; a group waits behind at most one, so this size
/// sets the submit path's tail (bench/history/2026-11-29-fifth-sitting.md compares sizes).
pub(super) const PLACE_PER_TRANSACTION: usize = 128;

/// Places those of `ids` (starting at block index `first`) that are in no block yet in
/// `block`, and takes them off the pending count. The ids were checked to be stored
/// attestations, once each ([`check_placeable`]); rows are never deleted, so that holds
/// in the later transactions too.
fn place(
    tx: &Transaction<'_>,
    block: &Block,
    first: usize,
    ids: &[Hash32],
) -> Result<(), StoreError> {
    let mut placed = 0usize;
    let mut at = 0;
    while at < ids.len() {
        let n = chunk_len(ids.len() - at);
        let chunk = &ids[at..at + n];
        let indexes = (first + at..first + at + n)
            .map(|i| {
                i64::try_from(i).map_err(|_| StoreError::Invalid("too many attestations".into()))
            })
            .collect::<Result<Vec<i64>, _>>()?;
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(2 * n + 1);
        for (digest, index) in chunk.iter().zip(&indexes) {
            values.push(digest.as_bytes());
            values.push(index);
        }
        values.push(block.hash.as_bytes());
        placed += tx
            .prepare_cached(PLACE.sql(n))?
            .execute(values.as_slice())?;
        at += n;
    }
    let placed =
        i64::try_from(placed).map_err(|_| StoreError::Invalid("too many attestations".into()))?;
    if placed > 0 {
        tx.prepare_cached(
            "UPDATE counters SET value = value - ?1 WHERE name = 'pending_attestations'",
        )?
        .execute([placed])?;
    }
    Ok(())
}

/// Checks, without writing, that every id is a stored attestation (in either table), once.
fn check_placeable(tx: &Transaction<'_>, block: &Block) -> Result<(), StoreError> {
    check_repeats(block)?;
    let known = super::attestations::known_in(tx, &block.attestation_ids)?;
    check_known(&block.attestation_ids, &known)
}

/// Removes a block whose placement did not finish, and returns its attestations to the
/// pending queue. Nothing can refer to it: it was never acknowledged to its caller. An
/// attestation it placed that the ledger settled meanwhile (through another block) moves
/// to where the ledger met it instead: a settled attestation is never pending.
fn undo_unplaced(tx: &Transaction<'_>, hash: &Hash32) -> Result<(), StoreError> {
    let hash = hash.as_bytes();
    for settled in ["ledger", "rejected_attestations"] {
        tx.execute(
            &format!(
                "UPDATE attestations SET \
                 block_hash = (SELECT s.block_hash FROM {settled} s \
                 WHERE s.digest = attestations.digest), \
                 block_index = (SELECT s.block_index FROM {settled} s \
                 WHERE s.digest = attestations.digest) \
                 WHERE block_hash = ?1 AND digest IN (SELECT digest FROM {settled})"
            ),
            [hash],
        )?;
    }
    tx.execute(
        "UPDATE counters SET value = value + \
         (SELECT count(*) FROM attestations WHERE block_hash = ?1) \
         WHERE name = 'pending_attestations'",
        [hash],
    )?;
    tx.execute(
        "UPDATE attestations SET block_hash = NULL, block_index = NULL WHERE block_hash = ?1",
        [hash],
    )?;
    tx.execute("DELETE FROM blocks WHERE hash = ?1 AND placed = 0", [hash])?;
    Ok(())
}

/// At open: removes every block a crash left half placed.
pub(super) fn undo_unfinished(conn: &mut Connection) -> Result<usize, StoreError> {
    let tx = begin(conn)?;
    let hashes = tx
        .prepare("SELECT hash FROM blocks WHERE placed = 0")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for h in &hashes {
        undo_unplaced(&tx, &to_hash(h, "block hash")?)?;
    }
    tx.commit()?;
    Ok(hashes.len())
}

/// Removes `hash` if its placement did not finish (after a failed later transaction).
fn undo(conn: &mut Connection, hash: &Hash32) -> Result<(), StoreError> {
    let tx = begin(conn)?;
    undo_unplaced(&tx, hash)?;
    tx.commit()?;
    Ok(())
}

/// Stores `block` and places its attestations: the row, the checks and the first
/// [`PLACE_PER_TRANSACTION`] placements in one transaction, the rest in transactions of
/// that size, and `placed = 1` with the last. Each transaction is its own task on the
/// writer thread, so group commits run between them. Returns once all are placed; a
/// failure after the first transaction removes the block again, so the caller sees all or
/// nothing (a crash in between is undone at the next open). The caller runs one insert
/// at a time, so a block found with `placed = 0` is what a failed insert left.
pub(super) async fn insert(
    writer: &WriteThread,
    block: &Block,
    created_at_ms: u64,
) -> Result<BlockInsert, StoreError> {
    let row = NewBlockRow::new(block, created_at_ms)?;
    match insert_with(writer, block, row, None).await? {
        Stored::Inserted(insert, _) => Ok(insert),
        // Only a slot refuses, and none was asked for.
        Stored::Refused(_) => Err(StoreError::corrupt("an unsigned insert was refused")),
    }
}

/// [`insert`] of this validator's own block, taking its slot in the first transaction
/// (with the block row): `Conflict` when another block holds the slot, and then nothing is
/// written. The slot stays taken if a later transaction fails or the process dies before
/// the last one (the block is then removed as any half-placed block): a guard errs on the
/// side of not signing, and the block was never returned to be signed or sent.
pub(super) async fn insert_own(
    writer: &WriteThread,
    block: &Block,
    created_at_ms: u64,
) -> Result<Signing, StoreError> {
    let row = NewBlockRow::new(block, created_at_ms)?;
    let slot = Slot::of_block(block, created_at_ms)?;
    match insert_with(writer, block, row, Some(slot)).await? {
        Stored::Inserted(_, Some(signing)) | Stored::Refused(signing) => Ok(signing),
        Stored::Inserted(_, None) => Err(StoreError::corrupt("a signed insert did not sign")),
    }
}

/// What [`insert_with`] did.
enum Stored {
    /// Stored (or found stored), with the signing of the slot when one was asked for.
    Inserted(BlockInsert, Option<Signing>),
    /// Another block holds the slot: nothing was written.
    Refused(Signing),
}

async fn insert_with(
    writer: &WriteThread,
    block: &Block,
    row: NewBlockRow,
    slot: Option<Slot>,
) -> Result<Stored, StoreError> {
    let block = Arc::new(block.clone());
    let total = block.attestation_ids.len();
    let first = total.min(PLACE_PER_TRANSACTION);

    let b = block.clone();
    let start = writer
        .run(move |conn| insert_first(conn, &b, &row, first, slot.as_ref()))
        .await?;
    let signing = match start {
        First::Done(insert, signing) => return Ok(Stored::Inserted(insert, signing)),
        First::Refused(signing) => return Ok(Stored::Refused(signing)),
        First::Placing(signing) => signing,
    };
    let mut at = first;
    while at < total {
        let end = (at + PLACE_PER_TRANSACTION).min(total);
        let b = block.clone();
        let placed = writer.run(move |conn| place_more(conn, &b, at, end)).await;
        if let Err(e) = placed {
            // Only a write around this node's own chain lock, or a store failure, gets
            // here; either way the block must not stay half placed.
            let hash = block.hash;
            let _ = writer.run(move |conn| undo(conn, &hash)).await;
            return Err(e);
        }
        at = end;
    }
    Ok(Stored::Inserted(BlockInsert::Inserted, signing))
}

/// What the first transaction of an insert did; each carries the signing of the slot when
/// one was asked for.
enum First {
    /// Settled: the identical block is already stored (the signing, if new, committed).
    Done(BlockInsert, Option<Signing>),
    /// The block is stored with its first placements; more transactions follow.
    Placing(Option<Signing>),
    /// Another block holds the slot: nothing was written.
    Refused(Signing),
}

/// The first transaction of [`insert`]: the slot (when asked), the checks, the block row
/// and its first `first` placements.
fn insert_first(
    conn: &mut Connection,
    block: &Block,
    row: &NewBlockRow,
    first: usize,
    slot: Option<&Slot>,
) -> Result<First, StoreError> {
    let ids = &block.attestation_ids;
    let tx = begin(conn)?;
    let signing = match slot.map(|s| sign_in(&tx, s)).transpose()? {
        // Dropping `tx` rolls back: nothing is written.
        Some(refused @ Signing::Conflict { .. }) => return Ok(First::Refused(refused)),
        signing => signing,
    };
    let placed: Option<i64> = tx
        .prepare_cached("SELECT placed FROM blocks WHERE hash = ?1")?
        .query_row([block.hash.as_bytes()], |r| r.get(0))
        .optional()?;
    match placed {
        Some(0) => undo_unplaced(&tx, &block.hash)?,
        Some(_) => {
            let done = already_stored(block, by_hash_in(&tx, &block.hash)?)?;
            // Commits the slot if this call took it; otherwise an empty transaction.
            tx.commit()?;
            return Ok(First::Done(done, signing));
        }
        None => {}
    }
    // Returning an error drops `tx`: nothing of the block (nor the slot) is written.
    check_placeable(&tx, block)?;
    tx.execute(
        "INSERT INTO blocks (hash, height, timestamp_ms, header, signature, attestation_ids, \
         entry_ids, created_at_ms, placed, epoch) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            block.hash.as_bytes(),
            row.height,
            row.timestamp,
            row.header,
            block.signature.as_ref().map(|s| s.0.as_slice()),
            pack_hashes(ids),
            pack_hashes(&block.entry_ids),
            row.created,
            i64::from(first == ids.len()),
            row.epoch,
        ],
    )?;
    place(&tx, block, 0, &ids[..first])?;
    tx.commit()?;
    Ok(if first == ids.len() {
        First::Done(BlockInsert::Inserted, signing)
    } else {
        First::Placing(signing)
    })
}

/// One later transaction of [`insert`]: places `block`'s attestations `from..to`.
fn place_more(
    conn: &mut Connection,
    block: &Block,
    from: usize,
    to: usize,
) -> Result<(), StoreError> {
    let tx = begin(conn)?;
    place(&tx, block, from, &block.attestation_ids[from..to])?;
    if to == block.attestation_ids.len() {
        tx.execute(
            "UPDATE blocks SET placed = 1 WHERE hash = ?1",
            [block.hash.as_bytes()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Stores `qc` on its block as the block's own certificate, on the writer thread: `true`
/// when the block was not certified before (the first certificate and its time stay).
pub(super) fn mark_certified(
    conn: &mut Connection,
    qc: &(Hash32, String),
    at_ms: u64,
) -> Result<bool, StoreError> {
    let at = to_i64(at_ms, "certified_at_ms")?;
    let (hash, json) = qc;
    let tx = begin(conn)?;
    let changed = tx
        .prepare_cached(
            "UPDATE blocks SET qc = ?1, certified_at_ms = ?2 \
             WHERE hash = ?3 AND certified_at_ms IS NULL",
        )?
        .execute(params![json, at, hash.as_bytes()])?;
    if changed == 0 && !exists(&tx, hash)? {
        return Err(StoreError::NotFound(format!("block {hash}")));
    }
    tx.commit()?;
    Ok(changed == 1)
}

/// The blocks of `epoch` from height `from` up, by height then hash.
pub(super) async fn of_epoch(
    readers: &SqlitePool,
    epoch: u64,
    from: u64,
    limit: u32,
) -> Result<Vec<StoredBlock>, StoreError> {
    // Beyond i64 nothing is stored: an empty page, not an error.
    let (Ok(epoch), Ok(from)) = (i64::try_from(epoch), i64::try_from(from)) else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(select_block!(
        "WHERE epoch = ?1 AND height >= ?2 ORDER BY height, hash LIMIT ?3"
    ))
    .bind(epoch)
    .bind(from)
    .bind(i64::from(clamp_limit(limit)))
    .fetch_all(readers)
    .await?;
    rows.iter().map(stored_block).collect()
}

/// Every block by epoch, height and hash (the rebuild at start).
pub(super) async fn all(readers: &SqlitePool) -> Result<Vec<StoredBlock>, StoreError> {
    let rows = sqlx::query(select_block!("ORDER BY epoch, height, hash"))
        .fetch_all(readers)
        .await?;
    rows.iter().map(stored_block).collect()
}

/// Blocks from `from` up, by height then hash.
pub(super) async fn from_height(
    readers: &SqlitePool,
    from: u64,
    limit: u32,
) -> Result<Vec<StoredBlock>, StoreError> {
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    let limit = i64::from(clamp_limit(limit));
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
