//! The ledger: a commit (and a revive) in one transaction on the writer thread, and the
//! ledger's reads on the reader pool (`crate::ledger` holds the checks and verdicts both backends share).

use bizra_ledger::crypto::PublicKey;
use bizra_ledger::Hash32;
use rusqlite::{params, Connection, OptionalExtension, ToSql, Transaction};
use sqlx::{Row, SqlitePool};

use super::chunks::{chunk_len, rows, PerChunk};
use super::columns::blob;
use super::write_thread::begin;
use crate::codec::{clamp_limit, to_hash};
use crate::error::StoreError;
use crate::ledger::{
    bad_rejection, block_not_committed, block_outside, check_stored, entry_not_committed,
    keys_in_order, not_revivable, was_rejected, Commit, KeyColumns, Keys, LedgerColumns, Lookup,
};
use crate::rows::{counter_value, NonceOwnerRow, COUNT_LEDGER, COUNT_PENDING, COUNT_REJECTED};
use crate::types::{LedgerRow, META_COMMIT_STATE};

/// `INSERT` of `n` ledger rows.
static APPEND: PerChunk = PerChunk::new(|n| {
    format!(
        "INSERT INTO ledger (log_index, digest, block_hash, block_index) VALUES {}",
        rows("(?, ?, ?, ?)", n)
    )
});

/// `SELECT` of which of `n` digests the ledger order rejected.
static REJECTED_AMONG: PerChunk = PerChunk::new(|n| {
    format!(
        "SELECT digest FROM rejected_attestations WHERE digest IN ({})",
        rows("?", n)
    )
});

/// `UPDATE` placing those of `n` attestations (digest, block, index) that are in no block
/// yet where the ledger met them.
static PLACE_AT: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(digest, bh, idx) AS (VALUES {}) \
         UPDATE attestations SET \
         block_hash = (SELECT bh FROM v WHERE v.digest = attestations.digest), \
         block_index = (SELECT idx FROM v WHERE v.digest = attestations.digest) \
         WHERE digest IN (SELECT digest FROM v) AND block_hash IS NULL",
        rows("(?, ?, ?)", n)
    )
});

fn counter_in(tx: &Transaction<'_>, name: &str) -> Result<u64, StoreError> {
    let v: Option<i64> = tx
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    counter_value(name, v)
}

/// One step of the ledger order, in one transaction: the blocks committed in order, the
/// ledger rows and rejections, attestations that a `revive` left in no block placed where
/// the ledger met them, the registry entries committed, the consensus state, and the
/// counters. Any refusal drops the transaction: nothing is written.
pub(super) fn commit(conn: &mut Connection, c: &Commit<'_>) -> Result<(), StoreError> {
    let batch = c.batch;
    let tx = begin(conn)?;
    c.check_continues(counter_in(&tx, COUNT_LEDGER)?)?;

    // Blocks: only a stored, fully placed block that is not committed yet.
    let next: i64 = tx.query_row(
        "SELECT COALESCE(MAX(commit_seq) + 1, 0) FROM blocks",
        [],
        |r| r.get(0),
    )?;
    for (hash, seq) in batch.blocks.iter().zip(next..) {
        let changed = tx
            .prepare_cached(
                "UPDATE blocks SET finalized = 1, finalized_at_ms = ?1, commit_seq = ?2 \
                 WHERE hash = ?3 AND commit_seq IS NULL AND placed = 1",
            )?
            .execute(params![c.at, seq, hash.as_bytes()])?;
        if changed == 0 {
            return Err(block_not_committed(hash, committed(&tx, hash)?));
        }
    }
    for hash in &c.outside {
        if committed(&tx, hash)? != Some(true) {
            return Err(block_outside(hash));
        }
    }

    // Every attestation named is stored; none appended was rejected before.
    let known = super::attestations::known_in(&tx, &c.digests)?;
    check_stored(&c.digests, &known)?;
    let appended: Vec<Hash32> = batch.appended.iter().map(|r| r.digest).collect();
    if let Some(d) = among(&tx, &REJECTED_AMONG, &appended)?.first() {
        return Err(was_rejected(d));
    }

    let mut at = 0;
    while at < batch.appended.len() {
        let n = chunk_len(batch.appended.len() - at);
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(4 * n);
        for i in at..at + n {
            let row = &batch.appended[i];
            values.push(&c.log_indexes[i]);
            values.push(row.digest.as_bytes());
            values.push(row.block_hash.as_bytes());
            values.push(&c.appended_indexes[i]);
        }
        tx.prepare_cached(APPEND.sql(n))?
            .execute(values.as_slice())?;
        at += n;
    }

    let mut rejected = 0i64;
    for (row, index) in batch.rejected.iter().zip(&c.rejected_indexes) {
        let in_ledger = |d: &Hash32| -> Result<bool, StoreError> {
            Ok(tx
                .prepare_cached("SELECT 1 FROM ledger WHERE digest = ?1")?
                .exists([d.as_bytes()])?)
        };
        let digest_in_ledger = in_ledger(&row.digest)?;
        if digest_in_ledger || !in_ledger(&row.owner)? {
            return Err(bad_rejection(&row.digest, &row.owner, digest_in_ledger));
        }
        // The first verdict on a digest stays (see crate::ledger).
        rejected += tx
            .prepare_cached(
                "INSERT INTO rejected_attestations (digest, owner, block_hash, block_index) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (digest) DO NOTHING",
            )?
            .execute(params![
                row.digest.as_bytes(),
                row.owner.as_bytes(),
                row.block_hash.as_bytes(),
                index
            ])? as i64;
    }

    // Attestations in no block here (a dead block released them) are placed where the
    // ledger met them, so that an attestation the ledger settled is never pending.
    let mut placed = 0i64;
    let mut at = 0;
    while at < c.placements.len() {
        let n = chunk_len(c.placements.len() - at);
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(3 * n);
        for (digest, block, index) in &c.placements[at..at + n] {
            values.push(digest.as_bytes());
            values.push(block.as_bytes());
            values.push(index);
        }
        placed += tx
            .prepare_cached(PLACE_AT.sql(n))?
            .execute(values.as_slice())? as i64;
        at += n;
    }

    let next: i64 = tx.query_row(
        "SELECT COALESCE(MAX(commit_seq) + 1, 0) FROM registry_entries",
        [],
        |r| r.get(0),
    )?;
    for ((&seq, seq_i), position) in batch.entries.iter().zip(&c.entries).zip(next..) {
        let changed = tx
            .prepare_cached(
                "UPDATE registry_entries SET commit_seq = ?1 WHERE seq = ?2 AND commit_seq IS NULL",
            )?
            .execute(params![position, seq_i])?;
        if changed == 0 {
            let found: Option<bool> = tx
                .prepare_cached(
                    "SELECT commit_seq IS NOT NULL FROM registry_entries WHERE seq = ?1",
                )?
                .query_row([seq_i], |r| r.get(0))
                .optional()?;
            return Err(entry_not_committed(seq, found));
        }
    }

    super::meta::set(&tx, META_COMMIT_STATE, &c.state)?;
    let appended_n = i64::try_from(batch.appended.len())
        .map_err(|_| StoreError::Invalid("too many ledger rows".into()))?;
    tx.prepare_cached(
        "UPDATE counters SET value = value + CASE name \
         WHEN ?1 THEN ?2 WHEN ?3 THEN ?4 WHEN ?5 THEN -?6 END \
         WHERE name IN (?1, ?3, ?5)",
    )?
    .execute(params![
        COUNT_LEDGER,
        appended_n,
        COUNT_REJECTED,
        rejected,
        COUNT_PENDING,
        placed
    ])?;
    tx.commit()?;
    Ok(())
}

/// Releases the work of blocks that will never be committed, in one transaction: every
/// attestation placed in one of them that the ledger has not settled (neither in it nor
/// rejected) is in no block again, pending and counted, and every registry entry included
/// in one of them that is not committed is pending again. Returns how many attestations
/// became pending; a second call finds nothing left to release.
pub(super) fn revive(conn: &mut Connection, blocks: &[Hash32]) -> Result<u64, StoreError> {
    let tx = begin(conn)?;
    let mut released = 0usize;
    for hash in blocks {
        if let Some(e) = not_revivable(hash, committed(&tx, hash)?) {
            return Err(e);
        }
        released += tx
            .prepare_cached(
                "UPDATE attestations SET block_hash = NULL, block_index = NULL \
                 WHERE block_hash = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.digest = attestations.digest) \
                 AND NOT EXISTS (SELECT 1 FROM rejected_attestations r \
                 WHERE r.digest = attestations.digest)",
            )?
            .execute([hash.as_bytes()])?;
        tx.prepare_cached(
            "UPDATE registry_entries SET block_hash = NULL \
             WHERE block_hash = ?1 AND commit_seq IS NULL",
        )?
        .execute([hash.as_bytes()])?;
    }
    let released =
        i64::try_from(released).map_err(|_| StoreError::Invalid("too many attestations".into()))?;
    if released > 0 {
        tx.prepare_cached("UPDATE counters SET value = value + ?1 WHERE name = ?2")?
            .execute(params![released, COUNT_PENDING])?;
    }
    tx.commit()?;
    crate::codec::to_u64(released, "released attestations")
}

/// Whether block `hash` (fully placed) is committed; `None` when there is no such block.
fn committed(tx: &Transaction<'_>, hash: &Hash32) -> Result<Option<bool>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT commit_seq IS NOT NULL FROM blocks WHERE hash = ?1 AND placed = 1")?
        .query_row([hash.as_bytes()], |r| r.get(0))
        .optional()?)
}

/// Which of `digests` the chunked `SELECT digest … IN (…)` of `statement` returns.
fn among(
    tx: &Transaction<'_>,
    statement: &'static PerChunk,
    digests: &[Hash32],
) -> Result<Vec<Hash32>, StoreError> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < digests.len() {
        let n = chunk_len(digests.len() - at);
        let mut stmt = tx.prepare_cached(statement.sql(n))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(
            digests[at..at + n].iter().map(|d| d.as_bytes()),
        ))?;
        while let Some(row) = rows.next()? {
            found.push(to_hash(blob(row, "digest")?, "attestation digest")?);
        }
        at += n;
    }
    Ok(found)
}

pub(super) async fn page(
    readers: &SqlitePool,
    from: u64,
    limit: u32,
) -> Result<Vec<LedgerRow>, StoreError> {
    let Ok(from) = i64::try_from(from) else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT log_index, digest, block_hash, block_index FROM ledger \
         WHERE log_index >= ?1 ORDER BY log_index LIMIT ?2",
    )
    .bind(from)
    .bind(i64::from(clamp_limit(limit)))
    .fetch_all(readers)
    .await?;
    rows.iter()
        .map(|r| {
            LedgerColumns {
                log_index: r.try_get("log_index")?,
                digest: r.try_get("digest")?,
                block_hash: r.try_get("block_hash")?,
                block_index: r.try_get("block_index")?,
            }
            .into_row()
        })
        .collect()
}

/// `SELECT` of which of `n` digests are in the ledger.
static IN_LEDGER: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(d) AS (VALUES {}) SELECT l.digest FROM v JOIN ledger l ON l.digest = v.d",
        rows("(?)", n)
    )
});

/// `SELECT` of the ledger digest that used each of `n` (key, nonce) pairs, through either
/// attestation table.
static LEDGER_OWNERS: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(k, n) AS (VALUES {}) \
         SELECT a.attester_pubkey, a.nonce, a.digest FROM v \
         JOIN attestations a ON a.attester_pubkey = v.k AND a.nonce = v.n \
         JOIN ledger l ON l.digest = a.digest \
         UNION ALL \
         SELECT c.attester_pubkey, c.nonce, c.digest FROM v \
         JOIN contested_attestations c ON c.attester_pubkey = v.k AND c.nonce = v.n \
         JOIN ledger l ON l.digest = c.digest",
        rows("(?, ?)", n)
    )
});

/// One read transaction, so both answers see one ledger; one statement per chunk.
pub(super) async fn lookup(
    readers: &SqlitePool,
    digests: &[Hash32],
    pairs: &[(PublicKey, String)],
) -> Result<(Vec<bool>, Vec<Option<Hash32>>), StoreError> {
    let mut found = Lookup::default();
    let mut tx = readers.begin().await?;
    let mut at = 0;
    while at < digests.len() {
        let n = chunk_len(digests.len() - at);
        let mut q = sqlx::query(IN_LEDGER.sql(n));
        for d in &digests[at..at + n] {
            q = q.bind(d.as_bytes().as_slice());
        }
        for row in q.fetch_all(&mut *tx).await? {
            found
                .in_ledger
                .insert(to_hash(row.try_get("digest")?, "ledger digest")?);
        }
        at += n;
    }
    let mut at = 0;
    while at < pairs.len() {
        let n = chunk_len(pairs.len() - at);
        let mut q = sqlx::query(LEDGER_OWNERS.sql(n));
        for (key, nonce) in &pairs[at..at + n] {
            q = q.bind(key.0.as_slice()).bind(nonce.as_str());
        }
        for row in q.fetch_all(&mut *tx).await? {
            NonceOwnerRow {
                attester_pubkey: row.try_get("attester_pubkey")?,
                nonce: row.try_get("nonce")?,
                digest: row.try_get("digest")?,
            }
            .add_to(&mut found.owners)?;
        }
        at += n;
    }
    tx.commit().await?;
    Ok(found.answer(digests, pairs))
}

/// `SELECT` of the key and nonce of `n` digests, from either attestation table.
static KEYS: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(d) AS (VALUES {}) \
         SELECT a.digest, a.attester_pubkey, a.nonce FROM v JOIN attestations a ON a.digest = v.d \
         UNION ALL \
         SELECT c.digest, c.attester_pubkey, c.nonce FROM v \
         JOIN contested_attestations c ON c.digest = v.d",
        rows("(?)", n)
    )
});

pub(super) async fn keys(
    readers: &SqlitePool,
    digests: &[Hash32],
) -> Result<Vec<Option<(PublicKey, String)>>, StoreError> {
    let mut found = Keys::with_capacity(digests.len());
    let mut conn = readers.acquire().await?;
    let mut at = 0;
    while at < digests.len() {
        let n = chunk_len(digests.len() - at);
        let mut q = sqlx::query(KEYS.sql(n));
        for d in &digests[at..at + n] {
            q = q.bind(d.as_bytes().as_slice());
        }
        for row in q.fetch_all(&mut *conn).await? {
            KeyColumns {
                digest: row.try_get("digest")?,
                attester_pubkey: row.try_get("attester_pubkey")?,
                nonce: row.try_get("nonce")?,
            }
            .add_to(&mut found)?;
        }
        at += n;
    }
    Ok(keys_in_order(digests, &found))
}

/// The committed blocks by `commit_seq`.
pub(super) async fn committed_blocks(readers: &SqlitePool) -> Result<Vec<Hash32>, StoreError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT hash FROM blocks WHERE commit_seq IS NOT NULL ORDER BY commit_seq",
    )
    .fetch_all(readers)
    .await?;
    rows.iter().map(|h| to_hash(h, "block hash")).collect()
}
