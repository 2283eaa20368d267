//! Attestations: group-commit insert (on the writer thread), lookups, newest-first pages,
//! the pending queue (on the reader pool).

use bizra_ledger::crypto::PublicKey;
use bizra_ledger::Hash32;
use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension, ToSql, Transaction};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::chunks::{chunk_len, rows, PerChunk};
use super::columns::{blob, opt_blob};
use super::write_thread::begin;
use crate::codec::{received_at_column, to_hash, to_i64, to_u64};
use crate::contested;
use crate::cursor::{Cursor, Page};
use crate::error::StoreError;
use crate::rows::{
    counter_value, owners_in_order, select_contested, select_record, AttestationRow, ImpactRow,
    ImpactTotalsRow, NonceOwnerRow, NonceOwners, PageQuery, COUNT_ALL, COUNT_PENDING,
};
use crate::types::{
    AttestationRecord, BlockAttestation, ImpactSummary, InsertOutcome, NewAttestation,
};

fn record(row: &SqliteRow) -> Result<AttestationRecord, StoreError> {
    AttestationRow {
        seq: row.try_get("seq")?,
        digest: row.try_get("digest")?,
        attester_pubkey: row.try_get("attester_pubkey")?,
        attester_id: row.try_get("attester_id")?,
        nonce: row.try_get("nonce")?,
        body: row.try_get("body")?,
        impact_score: row.try_get("impact_score")?,
        received_at_ms: row.try_get("received_at_ms")?,
        block_hash: row.try_get("block_hash")?,
        block_index: row.try_get("block_index")?,
        block_height: row.try_get("block_height")?,
        block_certified_at: row.try_get("block_certified_at")?,
        log_index: row.try_get("log_index")?,
        ledger_block: row.try_get("ledger_block")?,
        ledger_index: row.try_get("ledger_index")?,
        ledger_height: row.try_get("ledger_height")?,
        rejected_by: row.try_get("rejected_by")?,
        rejected_block: row.try_get("rejected_block")?,
        rejected_index: row.try_get("rejected_index")?,
        rejected_height: row.try_get("rejected_height")?,
    }
    .into_record()
}

pub(super) async fn by_digest(
    conn: &mut SqliteConnection,
    digest: &Hash32,
) -> Result<Option<AttestationRecord>, StoreError> {
    sqlx::query(concat!(
        select_record!("WHERE a.digest = ?1 "),
        "UNION ALL ",
        select_contested!("WHERE a.digest = ?1")
    ))
    .bind(digest.as_bytes().as_slice())
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(record)
    .transpose()
}

pub(super) async fn nonce_owner(
    conn: &mut SqliteConnection,
    pubkey: &PublicKey,
    nonce: &str,
) -> Result<Option<Hash32>, StoreError> {
    let digest: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT digest FROM attestations WHERE attester_pubkey = ?1 AND nonce = ?2",
    )
    .bind(pubkey.0.as_slice())
    .bind(nonce)
    .fetch_optional(conn)
    .await?;
    digest
        .map(|d| to_hash(&d, "attestation digest"))
        .transpose()
}

/// `SELECT` of the owners of `n` (key, nonce) pairs.
static OWNERS: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(k, n) AS (VALUES {}) \
         SELECT a.attester_pubkey, a.nonce, a.digest FROM v \
         JOIN attestations a ON a.attester_pubkey = v.k AND a.nonce = v.n",
        rows("(?, ?)", n)
    )
});

/// One multi-row `SELECT` per chunk, on the `(attester_pubkey, nonce)` unique index.
pub(super) async fn nonce_owners(
    conn: &mut SqliteConnection,
    pairs: &[(PublicKey, String)],
) -> Result<Vec<Option<Hash32>>, StoreError> {
    let mut found = NonceOwners::new();
    let mut at = 0;
    while at < pairs.len() {
        let n = chunk_len(pairs.len() - at);
        let mut q = sqlx::query(OWNERS.sql(n));
        for (key, nonce) in &pairs[at..at + n] {
            q = q.bind(key.0.as_slice()).bind(nonce.as_str());
        }
        for row in q.fetch_all(&mut *conn).await? {
            NonceOwnerRow {
                attester_pubkey: row.try_get("attester_pubkey")?,
                nonce: row.try_get("nonce")?,
                digest: row.try_get("digest")?,
            }
            .add_to(&mut found)?;
        }
        at += n;
    }
    Ok(owners_in_order(pairs, &found))
}

/// `INSERT … VALUES (…), … ON CONFLICT DO NOTHING RETURNING seq, digest` for `n` rows.
static INSERT: PerChunk = PerChunk::new(|n| {
    format!(
        "INSERT INTO attestations \
         (digest, attester_pubkey, nonce, attester_id, body, impact_score, received_at_ms) \
         VALUES {} ON CONFLICT DO NOTHING RETURNING seq, digest",
        rows("(?, ?, ?, ?, ?, ?, ?)", n)
    )
});

/// One transaction for the whole batch, run on the writer thread. Rows go in with
/// multi-row statements; an item that did not go in met a uniqueness constraint, and is
/// then looked up: its own digest (idempotent), or its key and nonce (a replay). Rows
/// inserted earlier in the same transaction count, which is what judges duplicates inside
/// a batch.
pub(super) fn insert(
    conn: &mut Connection,
    items: &[NewAttestation],
) -> Result<Vec<InsertOutcome>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // Refused before the transaction: see `received_at_column`.
    let mut received = Vec::with_capacity(items.len());
    for item in items {
        received.push(received_at_column(item)?);
    }

    let tx = begin(conn)?;
    let mut seqs = insert_rows(&tx, items, &received)?;

    let mut out = Vec::with_capacity(items.len());
    let mut inserted: i64 = 0;
    for item in items {
        // `remove`: a second copy of the same digest in this batch is AlreadyStored.
        let outcome = match seqs.remove(&item.digest) {
            Some(seq) => {
                inserted += 1;
                InsertOutcome::Inserted {
                    seq: to_u64(seq, "attestation seq")?,
                }
            }
            // A conflict: the same digest (idempotent) or the same key and nonce.
            None => match by_digest_in(&tx, &item.digest)? {
                Some(record) => InsertOutcome::AlreadyStored {
                    record: Box::new(record),
                },
                None => match nonce_owner_in(&tx, &item.attester_pubkey, &item.nonce)? {
                    Some(existing_digest) => InsertOutcome::DuplicateNonce { existing_digest },
                    None => {
                        return Err(StoreError::Conflict(format!(
                            "attestation {} was refused by a constraint this store does not know",
                            item.digest
                        )))
                    }
                },
            },
        };
        out.push(outcome);
    }
    if inserted > 0 {
        tx.prepare_cached("UPDATE counters SET value = value + ?1 WHERE name IN (?2, ?3)")?
            .execute(params![inserted, COUNT_ALL, COUNT_PENDING])?;
    }
    tx.commit()?;
    Ok(out)
}

/// The chunked `INSERT … ON CONFLICT DO NOTHING` of `items` (with their checked
/// `received` columns) into `attestations`: the seq of each row that went in, by digest.
fn insert_rows(
    tx: &Transaction<'_>,
    items: &[NewAttestation],
    received: &[i64],
) -> Result<HashMap<Hash32, i64>, StoreError> {
    let mut seqs: HashMap<Hash32, i64> = HashMap::with_capacity(items.len());
    let mut at = 0;
    while at < items.len() {
        let n = chunk_len(items.len() - at);
        let mut stmt = tx.prepare_cached(INSERT.sql(n))?;
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(n * 7);
        for (item, received_at_ms) in items[at..at + n].iter().zip(&received[at..at + n]) {
            values.extend_from_slice(&[
                item.digest.as_bytes(),
                &item.attester_pubkey.0,
                &item.nonce,
                &item.attester_id,
                &item.body,
                &item.impact_score,
                received_at_ms,
            ]);
        }
        let mut rows = stmt.query(values.as_slice())?;
        while let Some(row) = rows.next()? {
            let digest = to_hash(blob(row, "digest")?, "attestation digest")?;
            seqs.insert(digest, row.get("seq")?);
        }
        at += n;
    }
    Ok(seqs)
}

/// `SELECT` of which of `n` digests are stored, in either table.
static KNOWN: PerChunk = PerChunk::new(|n| {
    format!(
        "WITH v(d) AS (VALUES {}) \
         SELECT a.digest FROM v JOIN attestations a ON a.digest = v.d \
         UNION ALL SELECT c.digest FROM v JOIN contested_attestations c ON c.digest = v.d",
        rows("(?)", n)
    )
});

/// Which of `digests` are stored, in either table, inside the writer's transaction.
pub(super) fn known_in(
    tx: &Transaction<'_>,
    digests: &[Hash32],
) -> Result<HashSet<Hash32>, StoreError> {
    let mut known = HashSet::with_capacity(digests.len());
    let mut at = 0;
    while at < digests.len() {
        let n = chunk_len(digests.len() - at);
        let mut stmt = tx.prepare_cached(KNOWN.sql(n))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(
            digests[at..at + n].iter().map(|d| d.as_bytes()),
        ))?;
        while let Some(row) = rows.next()? {
            known.insert(to_hash(blob(row, "digest")?, "attestation digest")?);
        }
        at += n;
    }
    Ok(known)
}

/// [`nonce_owners`] inside the writer's transaction, by (key, nonce).
fn nonce_owners_in(
    tx: &Transaction<'_>,
    pairs: &[(PublicKey, &str)],
) -> Result<NonceOwners, StoreError> {
    let mut found = NonceOwners::with_capacity(pairs.len());
    let mut at = 0;
    while at < pairs.len() {
        let n = chunk_len(pairs.len() - at);
        let mut stmt = tx.prepare_cached(OWNERS.sql(n))?;
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(2 * n);
        for (key, nonce) in &pairs[at..at + n] {
            values.push(&key.0);
            values.push(nonce);
        }
        let mut rows = stmt.query(values.as_slice())?;
        while let Some(row) = rows.next()? {
            NonceOwnerRow {
                attester_pubkey: blob(row, "attester_pubkey")?,
                nonce: row.get("nonce")?,
                digest: blob(row, "digest")?,
            }
            .add_to(&mut found)?;
        }
        at += n;
    }
    Ok(found)
}

/// The `received_at_ms` columns of `items`, each item checked: see `received_at_column`.
pub(super) fn received_columns(items: &[NewAttestation]) -> Result<Vec<i64>, StoreError> {
    items.iter().map(received_at_column).collect()
}

/// Attestations carried by a block, in one transaction on the writer thread: what is new
/// goes into `attestations` as a submission would, a body whose key and nonce another
/// digest holds goes into `contested_attestations`, and nothing is refused for its nonce.
pub(super) fn insert_from_block(
    conn: &mut Connection,
    items: &[NewAttestation],
) -> Result<Vec<BlockAttestation>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let received = received_columns(items)?;
    let tx = begin(conn)?;
    let outcomes = insert_from_block_in(&tx, items, &received)?;
    tx.commit()?;
    Ok(outcomes)
}

/// [`insert_from_block`] inside the writer's transaction `tx` (the caller commits), with
/// the items' checked `received` columns ([`received_columns`]). The counters are updated
/// here too.
pub(super) fn insert_from_block_in(
    tx: &Transaction<'_>,
    items: &[NewAttestation],
    received: &[i64],
) -> Result<Vec<BlockAttestation>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let inserted = insert_rows(tx, items, received)?;
    let rest = contested::not_inserted(items, &inserted);
    let known = known_in(tx, &rest.iter().map(|i| i.digest).collect::<Vec<_>>())?;
    let unknown: Vec<(PublicKey, &str)> = rest
        .iter()
        .filter(|i| !known.contains(&i.digest))
        .map(|i| (i.attester_pubkey, i.nonce.as_str()))
        .collect();
    let owners = nonce_owners_in(tx, &unknown)?;
    let judged = contested::judge(items, &inserted, &known, &owners)?;

    if !judged.contested.is_empty() {
        let first = take_seqs(tx, judged.contested.len() as i64)?;
        let mut stmt = tx.prepare_cached(
            "INSERT INTO contested_attestations (digest, seq, attester_pubkey, nonce, \
             attester_id, body, impact_score, received_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (seq, &i) in (first..).zip(&judged.contested) {
            let item = &items[i];
            stmt.execute(params![
                item.digest.as_bytes(),
                seq,
                item.attester_pubkey.0.as_slice(),
                item.nonce,
                item.attester_id,
                item.body,
                item.impact_score,
                received[i],
            ])?;
        }
    }
    if judged.stored > 0 {
        tx.prepare_cached("UPDATE counters SET value = value + ?1 WHERE name IN (?2, ?3)")?
            .execute(params![judged.stored, COUNT_ALL, COUNT_PENDING])?;
    }
    Ok(judged.outcomes)
}

/// Takes `n` values from the sequence of `attestations.seq` (AUTOINCREMENT keeps it in
/// `sqlite_sequence`, which SQLite lets a transaction update): the first of them. A
/// contested attestation always has an owner in `attestations`, so the row exists.
fn take_seqs(tx: &Transaction<'_>, n: i64) -> Result<i64, StoreError> {
    let last: Option<i64> = tx
        .prepare_cached(
            "UPDATE sqlite_sequence SET seq = seq + ?1 WHERE name = 'attestations' RETURNING seq",
        )?
        .query_row([n], |r| r.get(0))
        .optional()?;
    let last = last.ok_or_else(|| StoreError::corrupt("the attestations sequence is missing"))?;
    Ok(last - n + 1)
}

/// The `attestations` row of `digest` inside the writer's transaction (the submit path's
/// idempotency: a contested body is not this store's submission).
fn by_digest_in(
    tx: &Transaction<'_>,
    digest: &Hash32,
) -> Result<Option<AttestationRecord>, StoreError> {
    let mut stmt = tx.prepare_cached(select_record!("WHERE a.digest = ?1"))?;
    let mut rows = stmt.query([digest.as_bytes()])?;
    match rows.next()? {
        Some(row) => AttestationRow {
            seq: row.get("seq")?,
            digest: blob(row, "digest")?,
            attester_pubkey: blob(row, "attester_pubkey")?,
            attester_id: row.get("attester_id")?,
            nonce: row.get("nonce")?,
            body: row.get("body")?,
            impact_score: row.get("impact_score")?,
            received_at_ms: row.get("received_at_ms")?,
            block_hash: opt_blob(row, "block_hash")?,
            block_index: row.get("block_index")?,
            block_height: row.get("block_height")?,
            block_certified_at: row.get("block_certified_at")?,
            log_index: row.get("log_index")?,
            ledger_block: opt_blob(row, "ledger_block")?,
            ledger_index: row.get("ledger_index")?,
            ledger_height: row.get("ledger_height")?,
            rejected_by: opt_blob(row, "rejected_by")?,
            rejected_block: opt_blob(row, "rejected_block")?,
            rejected_index: row.get("rejected_index")?,
            rejected_height: row.get("rejected_height")?,
        }
        .into_record()
        .map(Some),
        None => Ok(None),
    }
}

/// [`nonce_owner`] inside the writer's transaction.
fn nonce_owner_in(
    tx: &Transaction<'_>,
    pubkey: &PublicKey,
    nonce: &str,
) -> Result<Option<Hash32>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT digest FROM attestations WHERE attester_pubkey = ?1 AND nonce = ?2",
    )?;
    let mut rows = stmt.query(params![pubkey.0.as_slice(), nonce])?;
    match rows.next()? {
        Some(row) => to_hash(blob(row, "digest")?, "attestation digest").map(Some),
        None => Ok(None),
    }
}

pub(super) async fn list(
    readers: &SqlitePool,
    attester: Option<&str>,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Page<AttestationRecord>, StoreError> {
    let page = PageQuery::new(cursor, limit);
    // Two statements rather than `(?1 IS NULL OR ...)`, so each one uses its index.
    let rows = match attester {
        Some(id) => {
            sqlx::query(select_record!(
                "WHERE a.attester_id = ?1 AND a.seq < ?2 ORDER BY a.seq DESC LIMIT ?3"
            ))
            .bind(id)
            .bind(page.before)
            .bind(page.fetch)
            .fetch_all(readers)
            .await?
        }
        None => {
            sqlx::query(select_record!(
                "WHERE a.seq < ?1 ORDER BY a.seq DESC LIMIT ?2"
            ))
            .bind(page.before)
            .bind(page.fetch)
            .fetch_all(readers)
            .await?
        }
    };
    page.page(&rows, record)
}

pub(super) async fn pending(readers: &SqlitePool, limit: u32) -> Result<Vec<Hash32>, StoreError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT digest FROM attestations WHERE block_hash IS NULL ORDER BY seq LIMIT ?1",
    )
    .bind(i64::from(limit))
    .fetch_all(readers)
    .await?;
    rows.iter()
        .map(|d| to_hash(d, "attestation digest"))
        .collect()
}

pub(super) async fn counter(readers: &SqlitePool, name: &str) -> Result<u64, StoreError> {
    let v = sqlx::query_scalar("SELECT value FROM counters WHERE name = ?1")
        .bind(name)
        .fetch_optional(readers)
        .await?;
    counter_value(name, v)
}

pub(super) async fn impact_summary(
    readers: &SqlitePool,
    from_ms: u64,
    to_ms: u64,
    top: u32,
) -> Result<ImpactSummary, StoreError> {
    let from = to_i64(from_ms, "from_ms")?;
    let to = to_i64(to_ms, "to_ms")?;
    // One read transaction: the totals and the top list see the same snapshot.
    let mut tx = readers.begin().await?;
    let totals = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(a.impact_score), 0.0) AS total \
         FROM blocks b JOIN attestations a ON a.block_hash = b.hash \
         WHERE b.timestamp_ms >= ?1 AND b.timestamp_ms < ?2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    let rows = sqlx::query(
        "SELECT a.attester_id AS attester_id, COUNT(*) AS n, SUM(a.impact_score) AS total \
         FROM blocks b JOIN attestations a ON a.block_hash = b.hash \
         WHERE b.timestamp_ms >= ?1 AND b.timestamp_ms < ?2 \
         GROUP BY a.attester_id ORDER BY total DESC, a.attester_id ASC LIMIT ?3",
    )
    .bind(from)
    .bind(to)
    .bind(i64::from(top))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let top = rows
        .iter()
        .map(|r| {
            ImpactRow {
                attester_id: r.try_get("attester_id")?,
                attestations: r.try_get("n")?,
                total_impact: r.try_get("total")?,
            }
            .into_impact()
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    ImpactTotalsRow {
        attestations: totals.try_get("n")?,
        total_impact: totals.try_get("total")?,
    }
    .into_summary(top)
}
