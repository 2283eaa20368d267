//! The ledger: a commit (and a revive) as one transaction of `UNNEST` statements, and the
//! ledger's reads (`crate::ledger` holds the checks and verdicts both backends share).

use std::collections::{HashMap, HashSet};

use bizra_ledger::crypto::PublicKey;
use bizra_ledger::Hash32;
use sqlx::{Connection, PgConnection, Row};

use super::{LockPurpose, PostgresStore};
use crate::codec::{clamp_limit, to_hash};
use crate::error::StoreError;
use crate::ledger::{
    bad_rejection, block_not_committed, block_outside, check_stored, entry_not_committed,
    keys_in_order, not_revivable, was_rejected, Commit, KeyColumns, Keys, LedgerColumns, Lookup,
};
use crate::rows::{counter_value, NonceOwnerRow, COUNT_LEDGER};
use crate::types::{CommitBatch, LedgerRow, META_COMMIT_STATE};

fn bytes(hashes: impl Iterator<Item = Hash32>) -> Vec<Vec<u8>> {
    hashes.map(|h| h.as_bytes().to_vec()).collect()
}

/// The digests a statement returned.
fn digest_set(rows: &[Vec<u8>]) -> Result<HashSet<Hash32>, StoreError> {
    rows.iter().map(|d| to_hash(d, "digest")).collect()
}

/// One step of the ledger order, in one transaction (see `crate::ledger` for what it
/// refuses). Commits from every replica take one advisory lock, so each sees the ledger
/// the previous one left.
pub(super) async fn commit(store: &PostgresStore, batch: &CommitBatch) -> Result<(), StoreError> {
    let c = Commit::new(batch)?;
    let mut conn = store.acquire().await?;
    let mut tx = conn.begin().await?;
    store.lock(&mut tx, LockPurpose::Commit).await?;
    let len: Option<i64> = store
        .query_scalar("SELECT value FROM counters WHERE name = $1")
        .bind(COUNT_LEDGER)
        .fetch_optional(&mut *tx)
        .await?;
    c.check_continues(counter_value(COUNT_LEDGER, len)?)?;

    if !batch.blocks.is_empty() {
        let next: i64 = store
            .query_scalar("SELECT COALESCE(MAX(commit_seq) + 1, 0) FROM blocks")
            .fetch_one(&mut *tx)
            .await?;
        let hashes = bytes(batch.blocks.iter().copied());
        let seqs: Vec<i64> = (next..).take(hashes.len()).collect();
        let done: Vec<Vec<u8>> = store
            .query_scalar(
                "UPDATE blocks b SET finalized = true, finalized_at_ms = $1, commit_seq = v.seq \
                 FROM UNNEST($2::bytea[], $3::int8[]) AS v(hash, seq) \
                 WHERE b.hash = v.hash AND b.commit_seq IS NULL RETURNING b.hash",
            )
            .bind(c.at)
            .bind(&hashes)
            .bind(&seqs)
            .fetch_all(&mut *tx)
            .await?;
        if done.len() != hashes.len() {
            let done = digest_set(&done)?;
            if let Some(hash) = batch.blocks.iter().find(|h| !done.contains(*h)) {
                return Err(block_not_committed(
                    hash,
                    committed(store, &mut tx, hash).await?,
                ));
            }
        }
    }
    if !c.outside.is_empty() {
        let found: Vec<Vec<u8>> = store
            .query_scalar("SELECT hash FROM blocks WHERE hash = ANY($1) AND commit_seq IS NOT NULL")
            .bind(bytes(c.outside.iter().copied()))
            .fetch_all(&mut *tx)
            .await?;
        let found = digest_set(&found)?;
        if let Some(hash) = c.outside.iter().find(|h| !found.contains(*h)) {
            return Err(block_outside(hash));
        }
    }

    if !c.digests.is_empty() {
        let known: Vec<Vec<u8>> = store
            .query_scalar(
                "SELECT digest FROM attestations WHERE digest = ANY($1) \
                 UNION ALL SELECT digest FROM contested_attestations WHERE digest = ANY($1)",
            )
            .bind(bytes(c.digests.iter().copied()))
            .fetch_all(&mut *tx)
            .await?;
        check_stored(&c.digests, &digest_set(&known)?)?;
    }

    if !batch.appended.is_empty() {
        let digests = bytes(batch.appended.iter().map(|r| r.digest));
        let rejected: Option<Vec<u8>> = store
            .query_scalar("SELECT digest FROM rejected_attestations WHERE digest = ANY($1) LIMIT 1")
            .bind(&digests)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(d) = rejected {
            return Err(was_rejected(&to_hash(&d, "rejected digest")?));
        }
        store
            .query(
                "INSERT INTO ledger (log_index, digest, block_hash, block_index) \
                 SELECT * FROM UNNEST($1::int8[], $2::bytea[], $3::bytea[], $4::int8[])",
            )
            .bind(&c.log_indexes)
            .bind(&digests)
            .bind(bytes(batch.appended.iter().map(|r| r.block_hash)))
            .bind(&c.appended_indexes)
            .execute(&mut *tx)
            .await?;
    }

    let mut rejected = 0i64;
    if !batch.rejected.is_empty() {
        let digests = bytes(batch.rejected.iter().map(|r| r.digest));
        let owners = bytes(batch.rejected.iter().map(|r| r.owner));
        let in_ledger: Vec<Vec<u8>> = store
            .query_scalar("SELECT digest FROM ledger WHERE digest = ANY($1) OR digest = ANY($2)")
            .bind(&digests)
            .bind(&owners)
            .fetch_all(&mut *tx)
            .await?;
        let in_ledger = digest_set(&in_ledger)?;
        for row in &batch.rejected {
            let digest_in = in_ledger.contains(&row.digest);
            if digest_in || !in_ledger.contains(&row.owner) {
                return Err(bad_rejection(&row.digest, &row.owner, digest_in));
            }
        }
        // The first verdict on a digest stays (see crate::ledger).
        rejected = store
            .query(
                "INSERT INTO rejected_attestations (digest, owner, block_hash, block_index) \
                 SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[]) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&digests)
            .bind(&owners)
            .bind(bytes(batch.rejected.iter().map(|r| r.block_hash)))
            .bind(&c.rejected_indexes)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
    }

    // Attestations in no block here (a dead block released them) are placed where the
    // ledger met them, so that an attestation the ledger settled is never pending.
    let mut placed = 0i64;
    if !c.placements.is_empty() {
        placed = store
            .query(
                "UPDATE attestations a SET block_hash = v.bh, block_index = v.idx \
                 FROM UNNEST($1::bytea[], $2::bytea[], $3::int8[]) AS v(digest, bh, idx) \
                 WHERE a.digest = v.digest AND a.block_hash IS NULL",
            )
            .bind(bytes(c.placements.iter().map(|p| p.0)))
            .bind(bytes(c.placements.iter().map(|p| p.1)))
            .bind(c.placements.iter().map(|p| p.2).collect::<Vec<i64>>())
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
    }

    if !batch.entries.is_empty() {
        let next: i64 = store
            .query_scalar("SELECT COALESCE(MAX(commit_seq) + 1, 0) FROM registry_entries")
            .fetch_one(&mut *tx)
            .await?;
        let positions: Vec<i64> = (next..).take(c.entries.len()).collect();
        let done: Vec<i64> = store
            .query_scalar(
                "UPDATE registry_entries r SET commit_seq = v.pos \
                 FROM UNNEST($1::int8[], $2::int8[]) AS v(seq, pos) \
                 WHERE r.seq = v.seq AND r.commit_seq IS NULL RETURNING r.seq",
            )
            .bind(&c.entries)
            .bind(&positions)
            .fetch_all(&mut *tx)
            .await?;
        if done.len() != c.entries.len() {
            let done: HashSet<i64> = done.into_iter().collect();
            for (&seq, seq_i) in batch.entries.iter().zip(&c.entries) {
                if !done.contains(seq_i) {
                    let found: Option<bool> = store
                        .query_scalar(
                            "SELECT commit_seq IS NOT NULL FROM registry_entries WHERE seq = $1",
                        )
                        .bind(seq_i)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(entry_not_committed(seq, found));
                }
            }
        }
    }

    store
        .query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(META_COMMIT_STATE)
        .bind(&c.state)
        .execute(&mut *tx)
        .await?;
    let appended = i64::try_from(batch.appended.len())
        .map_err(|_| StoreError::Invalid("too many ledger rows".into()))?;
    store
        .query(
            "UPDATE counters SET value = value + CASE name \
             WHEN 'ledger' THEN $1 WHEN 'rejected' THEN $2 WHEN 'pending_attestations' THEN -$3 \
             END WHERE name IN ('ledger', 'rejected', 'pending_attestations')",
        )
        .bind(appended)
        .bind(rejected)
        .bind(placed)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Releases the work of blocks that will never be committed, in one transaction under the
/// commit lock (so no commit settles an attestation between the check and the release):
/// attestations placed in them that the ledger has not settled are pending again, and so
/// are their registry entries that are not committed. Returns how many attestations.
pub(super) async fn revive(store: &PostgresStore, blocks: &[Hash32]) -> Result<u64, StoreError> {
    if blocks.is_empty() {
        return Ok(0);
    }
    let hashes = bytes(blocks.iter().copied());
    let mut conn = store.acquire().await?;
    let mut tx = conn.begin().await?;
    store.lock(&mut tx, LockPurpose::Commit).await?;
    let rows = store
        .query("SELECT hash, commit_seq IS NOT NULL AS committed FROM blocks WHERE hash = ANY($1)")
        .bind(&hashes)
        .fetch_all(&mut *tx)
        .await?;
    let mut states = HashMap::with_capacity(rows.len());
    for row in &rows {
        let hash = to_hash(row.try_get::<&[u8], _>("hash")?, "block hash")?;
        states.insert(hash, row.try_get::<bool, _>("committed")?);
    }
    if let Some(e) = blocks
        .iter()
        .find_map(|h| not_revivable(h, states.get(h).copied()))
    {
        return Err(e);
    }
    let released: i64 = store
        .query_scalar(
            "WITH u AS (UPDATE attestations a SET block_hash = NULL, block_index = NULL \
             WHERE a.block_hash = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.digest = a.digest) \
             AND NOT EXISTS (SELECT 1 FROM rejected_attestations r WHERE r.digest = a.digest) \
             RETURNING 1) SELECT count(*) FROM u",
        )
        .bind(&hashes)
        .fetch_one(&mut *tx)
        .await?;
    store
        .query(
            "UPDATE registry_entries SET block_hash = NULL \
             WHERE block_hash = ANY($1) AND commit_seq IS NULL",
        )
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
    if released > 0 {
        store
            .query("UPDATE counters SET value = value + $1 WHERE name = 'pending_attestations'")
            .bind(released)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    crate::codec::to_u64(released, "released attestations")
}

/// Whether block `hash` is committed; `None` when there is no such block.
async fn committed(
    store: &PostgresStore,
    conn: &mut PgConnection,
    hash: &Hash32,
) -> Result<Option<bool>, StoreError> {
    Ok(store
        .query_scalar("SELECT commit_seq IS NOT NULL FROM blocks WHERE hash = $1")
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?)
}

pub(super) async fn page(
    store: &PostgresStore,
    from: u64,
    limit: u32,
) -> Result<Vec<LedgerRow>, StoreError> {
    let Ok(from) = i64::try_from(from) else {
        return Ok(Vec::new());
    };
    let mut c = store.acquire().await?;
    let rows = store
        .query(
            "SELECT log_index, digest, block_hash, block_index FROM ledger \
             WHERE log_index >= $1 ORDER BY log_index LIMIT $2",
        )
        .bind(from)
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(&mut *c)
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

/// One repeatable-read transaction, so both answers see one ledger; one statement each.
pub(super) async fn lookup(
    store: &PostgresStore,
    digests: &[Hash32],
    pairs: &[(PublicKey, String)],
) -> Result<(Vec<bool>, Vec<Option<Hash32>>), StoreError> {
    let mut found = Lookup::default();
    let mut c = store.acquire().await?;
    let mut tx = c.begin().await?;
    store
        .query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    if !digests.is_empty() {
        let rows: Vec<Vec<u8>> = store
            .query_scalar("SELECT digest FROM ledger WHERE digest = ANY($1)")
            .bind(bytes(digests.iter().copied()))
            .fetch_all(&mut *tx)
            .await?;
        found.in_ledger = digest_set(&rows)?;
    }
    if !pairs.is_empty() {
        let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.0.as_slice()).collect();
        let nonces: Vec<&str> = pairs.iter().map(|(_, n)| n.as_str()).collect();
        let rows = store
            .query(
                "SELECT a.attester_pubkey, a.nonce, a.digest \
                 FROM UNNEST($1::bytea[], $2::text[]) AS v(k, n) \
                 JOIN attestations a ON a.attester_pubkey = v.k AND a.nonce = v.n \
                 JOIN ledger l ON l.digest = a.digest \
                 UNION ALL \
                 SELECT c.attester_pubkey, c.nonce, c.digest \
                 FROM UNNEST($1::bytea[], $2::text[]) AS v(k, n) \
                 JOIN contested_attestations c ON c.attester_pubkey = v.k AND c.nonce = v.n \
                 JOIN ledger l ON l.digest = c.digest",
            )
            .bind(&keys)
            .bind(&nonces)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            NonceOwnerRow {
                attester_pubkey: row.try_get("attester_pubkey")?,
                nonce: row.try_get("nonce")?,
                digest: row.try_get("digest")?,
            }
            .add_to(&mut found.owners)?;
        }
    }
    tx.commit().await?;
    Ok(found.answer(digests, pairs))
}

pub(super) async fn keys(
    store: &PostgresStore,
    digests: &[Hash32],
) -> Result<Vec<Option<(PublicKey, String)>>, StoreError> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = store.acquire().await?;
    let rows = store
        .query(
            "SELECT digest, attester_pubkey, nonce FROM attestations WHERE digest = ANY($1) \
             UNION ALL \
             SELECT digest, attester_pubkey, nonce FROM contested_attestations \
             WHERE digest = ANY($1)",
        )
        .bind(bytes(digests.iter().copied()))
        .fetch_all(&mut *c)
        .await?;
    let mut found = Keys::with_capacity(rows.len());
    for row in &rows {
        KeyColumns {
            digest: row.try_get("digest")?,
            attester_pubkey: row.try_get("attester_pubkey")?,
            nonce: row.try_get("nonce")?,
        }
        .add_to(&mut found)?;
    }
    Ok(keys_in_order(digests, &found))
}

/// The committed blocks by `commit_seq`.
pub(super) async fn committed_blocks(store: &PostgresStore) -> Result<Vec<Hash32>, StoreError> {
    let mut c = store.acquire().await?;
    let rows: Vec<Vec<u8>> = store
        .query_scalar("SELECT hash FROM blocks WHERE commit_seq IS NOT NULL ORDER BY commit_seq")
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(|h| to_hash(h, "block hash")).collect()
}
