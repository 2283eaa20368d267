//! Blocks, their attestations' placement (one UNNEST statement per block), own blocks with
//! their signing slot, other validators' blocks with their attestations and certificate
//! (one transaction), and certification. (Commits are in `ledger`.)

use std::collections::HashSet;

use bizra_ledger::block::Block;
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::Hash32;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use super::attestations::Columns;
use super::PostgresStore;
use crate::codec::{clamp_limit, pack_hashes, to_hash, to_u64, Certificate};
use crate::error::StoreError;
use crate::placement::{already_stored, check_known, check_peer_parts, check_repeats, NewBlockRow};
use crate::rows::{select_block, BlockRow};
use crate::signing::Slot;
use crate::types::{BlockInsert, NewAttestation, PeerBlockInsert, Signing, StoredBlock};

fn stored_block(row: &PgRow) -> Result<StoredBlock, StoreError> {
    BlockRow {
        hash: row.try_get("hash")?,
        header: row.try_get("header")?,
        signature: row.try_get("signature")?,
        attestation_ids: row.try_get("attestation_ids")?,
        entry_ids: row.try_get("entry_ids")?,
        finalized: row.try_get("finalized")?,
        finalized_at_ms: row.try_get("finalized_at_ms")?,
        qc: row.try_get("qc")?,
        created_at_ms: row.try_get("created_at_ms")?,
        certified_at_ms: row.try_get("certified_at_ms")?,
        commit_seq: row.try_get("commit_seq")?,
    }
    .into_stored()
}

pub(super) async fn by_hash(
    store: &PostgresStore,
    conn: &mut PgConnection,
    hash: &Hash32,
) -> Result<Option<StoredBlock>, StoreError> {
    store
        .query(select_block!("WHERE hash = $1"))
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(stored_block)
        .transpose()
}

/// `fence`: (lease name, holder) that must still hold the lease, checked inside the
/// transaction that stores the block.
pub(super) async fn insert(
    store: &PostgresStore,
    block: &Block,
    created_at_ms: u64,
    fence: Option<(&str, &str)>,
) -> Result<BlockInsert, StoreError> {
    let row = NewBlockRow::new(block, created_at_ms)?;
    check_repeats(block)?;
    let mut conn = store.acquire().await?;
    let mut tx = conn.begin().await?;
    check_fence(store, &mut tx, block, fence).await?;
    let done = insert_in(store, &mut tx, block, &row).await?;
    tx.commit().await?;
    Ok(done)
}

/// This validator's own block: its slot taken and the block stored, in one transaction
/// (fenced by the lease when given). When another block holds the slot, nothing is
/// written and the answer is `Conflict`. Replicas of one validator race here safely: the
/// slot's insert waits for a concurrent one to end and then sees its row.
pub(super) async fn insert_own(
    store: &PostgresStore,
    block: &Block,
    created_at_ms: u64,
    fence: Option<(&str, &str)>,
) -> Result<Signing, StoreError> {
    let row = NewBlockRow::new(block, created_at_ms)?;
    let slot = Slot::of_block(block, created_at_ms)?;
    check_repeats(block)?;
    let mut conn = store.acquire().await?;
    let mut tx = conn.begin().await?;
    check_fence(store, &mut tx, block, fence).await?;
    let signing = super::signing::sign_in(store, &mut tx, &slot).await?;
    if let Signing::Conflict { .. } = signing {
        // Dropping `tx` rolls back: nothing is written.
        return Ok(signing);
    }
    insert_in(store, &mut tx, block, &row).await?;
    tx.commit().await?;
    Ok(signing)
}

/// `Conflict` unless `fence` is absent or its holder holds the lease; then no other
/// replica can take the lease over until the transaction ends.
async fn check_fence(
    store: &PostgresStore,
    tx: &mut PgConnection,
    block: &Block,
    fence: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    if let Some((name, holder)) = fence {
        // FOR SHARE: another replica cannot take the lease over until this transaction
        // ends, so a block is only ever stored by the lease's holder.
        let held: Option<i32> = store
            .query_scalar(
                "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 \
                 AND expires_at > clock_timestamp() FOR SHARE",
            )
            .bind(name)
            .bind(holder)
            .fetch_optional(&mut *tx)
            .await?;
        if held.is_none() {
            return Err(StoreError::Conflict(format!(
                "lease {name} is not held by {holder}: block {} not stored",
                block.hash
            )));
        }
    }
    Ok(())
}

/// Stores `block` and places its attestations inside `tx`; the caller commits.
async fn insert_in(
    store: &PostgresStore,
    tx: &mut PgConnection,
    block: &Block,
    row: &NewBlockRow,
) -> Result<BlockInsert, StoreError> {
    let count = i64::try_from(block.attestation_ids.len())
        .map_err(|_| StoreError::Invalid("too many attestations".into()))?;
    // ON CONFLICT rather than a read first: two replicas storing the same block at once
    // must not both see it missing.
    let inserted = store
        .query(
            "INSERT INTO blocks (hash, height, timestamp_ms, header, signature, attestation_ids, \
             entry_ids, created_at_ms, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(block.hash.as_bytes().as_slice())
        .bind(row.height)
        .bind(row.timestamp)
        .bind(&row.header)
        .bind(block.signature.as_ref().map(|s| s.0.to_vec()))
        .bind(pack_hashes(&block.attestation_ids))
        .bind(pack_hashes(&block.entry_ids))
        .bind(row.created)
        .bind(row.epoch)
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return already_stored(block, by_hash(store, &mut *tx, &block.hash).await?);
    }
    if count > 0 {
        let digests: Vec<&[u8]> = block
            .attestation_ids
            .iter()
            .map(|d| d.as_bytes().as_slice())
            .collect();
        let indexes: Vec<i64> = (0..count).collect();
        // An attestation keeps its first placement: only rows in no block yet.
        let placed = store
            .query(
                "UPDATE attestations a SET block_hash = $1, block_index = v.idx \
                 FROM UNNEST($2::bytea[], $3::int8[]) AS v(digest, idx) \
                 WHERE a.digest = v.digest AND a.block_hash IS NULL",
            )
            .bind(block.hash.as_bytes().as_slice())
            .bind(&digests)
            .bind(&indexes)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if placed != count as u64 {
            // Placed elsewhere already, contested, or not stored: only the last is an
            // error, and returning drops the transaction, so nothing is written.
            let found: Vec<Vec<u8>> = store
                .query_scalar(
                    "SELECT digest FROM attestations WHERE digest = ANY($1) \
                     UNION ALL SELECT digest FROM contested_attestations WHERE digest = ANY($1)",
                )
                .bind(&digests)
                .fetch_all(&mut *tx)
                .await?;
            let known = found
                .iter()
                .map(|d| to_hash(d, "attestation digest"))
                .collect::<Result<HashSet<_>, _>>()?;
            check_known(&block.attestation_ids, &known)?;
        }
        if placed > 0 {
            store
                .query("UPDATE counters SET value = value - $1 WHERE name = 'pending_attestations'")
                .bind(placed as i64)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(BlockInsert::Inserted)
}

/// Stores `qc` on its block as the block's own certificate: `true` when the block was not
/// certified before (the first certificate and its time stay).
pub(super) async fn mark_certified(
    store: &PostgresStore,
    qc: &QuorumCertificate,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let qc = Certificate::new(qc, at_ms)?;
    let mut c = store.acquire().await?;
    // Autocommit: committed when its one statement returns.
    certify_in(store, &mut c, &qc).await
}

/// [`mark_certified`] on `conn` (inside the caller's transaction, or autocommitted): one
/// statement, the update or why there was none; `NotFound` for an unknown block.
async fn certify_in(
    store: &PostgresStore,
    conn: &mut PgConnection,
    qc: &Certificate,
) -> Result<bool, StoreError> {
    let row = store
        .query(
            "WITH u AS (UPDATE blocks SET qc = $1, certified_at_ms = $2 \
             WHERE hash = $3 AND certified_at_ms IS NULL RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM u) AS changed, \
             EXISTS (SELECT 1 FROM blocks WHERE hash = $3) AS stored",
        )
        .bind(&qc.json)
        .bind(qc.at)
        .bind(qc.block.as_bytes().as_slice())
        .fetch_one(&mut *conn)
        .await?;
    let (changed, stored): (bool, bool) = (row.try_get("changed")?, row.try_get("stored")?);
    if !changed && !stored {
        return Err(StoreError::NotFound(format!("block {}", qc.block)));
    }
    Ok(changed)
}

/// Another validator's block with its attestations and, when given, its certificate, in
/// one transaction: the attestations stored as `insert_block_attestations` stores them
/// (under the seq lock), the block and its placement as [`insert`] does, the counters, then
/// the certificate. Everything the caller gave is checked before the transaction; a
/// refusal inside it (the hash stored with other content) drops it: nothing is written.
pub(super) async fn insert_peer(
    store: &PostgresStore,
    block: &Block,
    items: &[NewAttestation],
    qc: Option<&QuorumCertificate>,
    created_at_ms: u64,
    certified_at_ms: u64,
) -> Result<PeerBlockInsert, StoreError> {
    let row = NewBlockRow::new(block, created_at_ms)?;
    check_peer_parts(block, items, qc)?;
    check_repeats(block)?;
    let cols = Columns::of(items.iter())?;
    let certificate = qc
        .map(|qc| Certificate::new(qc, certified_at_ms))
        .transpose()?;
    let mut conn = store.acquire().await?;
    let mut tx = conn.begin().await?;
    let judged = super::attestations::insert_from_block_in(store, &mut tx, items, &cols).await?;
    let insert = insert_in(store, &mut tx, block, &row).await?;
    // After the placement: attestation rows, then counters, as every writer takes them.
    super::attestations::count_stored(store, &mut tx, judged.stored).await?;
    let newly_certified = match &certificate {
        Some(c) => certify_in(store, &mut tx, c).await?,
        None => false,
    };
    tx.commit().await?;
    Ok(PeerBlockInsert {
        attestations: judged.outcomes,
        block: insert,
        newly_certified,
    })
}

/// The blocks of `epoch` from height `from` up, by height then hash.
pub(super) async fn of_epoch(
    store: &PostgresStore,
    epoch: u64,
    from: u64,
    limit: u32,
) -> Result<Vec<StoredBlock>, StoreError> {
    // Beyond i64 nothing is stored: an empty page, not an error.
    let (Ok(epoch), Ok(from)) = (i64::try_from(epoch), i64::try_from(from)) else {
        return Ok(Vec::new());
    };
    let mut c = store.acquire().await?;
    let rows = store
        .query(select_block!(
            "WHERE epoch = $1 AND height >= $2 ORDER BY height, hash LIMIT $3"
        ))
        .bind(epoch)
        .bind(from)
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(stored_block).collect()
}

/// Every block by epoch, height and hash (the rebuild at start).
pub(super) async fn all(store: &PostgresStore) -> Result<Vec<StoredBlock>, StoreError> {
    let mut c = store.acquire().await?;
    let rows = store
        .query(select_block!("ORDER BY epoch, height, hash"))
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(stored_block).collect()
}

/// Blocks from `from` up, by height then hash.
pub(super) async fn from_height(
    store: &PostgresStore,
    from: u64,
    limit: u32,
) -> Result<Vec<StoredBlock>, StoreError> {
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    let limit = i64::from(clamp_limit(limit));
    let mut c = store.acquire().await?;
    let rows = store
        .query(select_block!(
            "WHERE height >= $1 ORDER BY height, hash LIMIT $2"
        ))
        .bind(from)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
    rows.iter().map(stored_block).collect()
}

pub(super) async fn finalized_height(store: &PostgresStore) -> Result<Option<u64>, StoreError> {
    let mut c = store.acquire().await?;
    let h: Option<i64> = store
        .query_scalar("SELECT MAX(height) FROM blocks WHERE finalized")
        .fetch_one(&mut *c)
        .await?;
    h.map(|h| to_u64(h, "block height")).transpose()
}
