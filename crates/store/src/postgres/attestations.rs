//! Attestations: group-commit insert (one UNNEST statement per batch), lookups,
//! newest-first pages, the pending queue.

use std::collections::{HashMap, HashSet};

use bizra_ledger::crypto::PublicKey;
use bizra_ledger::Hash32;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use super::{LockPurpose, PostgresStore};
use crate::codec::{received_at_column, to_hash, to_i64, to_u64};
use crate::contested;
use crate::cursor::{Cursor, Page};
use crate::error::StoreError;
use crate::rows::{
    counter_value, owners_in_order, select_contested, select_record, AttestationRow, ImpactRow,
    ImpactTotalsRow, NonceOwnerRow, NonceOwners, PageQuery,
};
use crate::types::{
    AttestationRecord, BlockAttestation, ImpactSummary, InsertOutcome, NewAttestation,
};

fn record(row: &PgRow) -> Result<AttestationRecord, StoreError> {
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

/// The attestation with `digest`, in either table.
pub(super) async fn by_digest(
    store: &PostgresStore,
    conn: &mut PgConnection,
    digest: &Hash32,
) -> Result<Option<AttestationRecord>, StoreError> {
    store
        .query(concat!(
            select_record!("WHERE a.digest = $1 "),
            "UNION ALL ",
            select_contested!("WHERE a.digest = $1")
        ))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(record)
        .transpose()
}

/// The `attestations` row of `digest` (the submit path's idempotency: a contested body is
/// not this store's submission).
async fn submitted_by_digest(
    store: &PostgresStore,
    conn: &mut PgConnection,
    digest: &Hash32,
) -> Result<Option<AttestationRecord>, StoreError> {
    store
        .query(select_record!("WHERE a.digest = $1"))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(record)
        .transpose()
}

pub(super) async fn nonce_owner(
    store: &PostgresStore,
    conn: &mut PgConnection,
    pubkey: &PublicKey,
    nonce: &str,
) -> Result<Option<Hash32>, StoreError> {
    let digest: Option<Vec<u8>> = store
        .query_scalar("SELECT digest FROM attestations WHERE attester_pubkey = $1 AND nonce = $2")
        .bind(pubkey.0.as_slice())
        .bind(nonce)
        .fetch_optional(conn)
        .await?;
    digest
        .map(|d| to_hash(&d, "attestation digest"))
        .transpose()
}

/// One statement for any number of pairs, on the `(attester_pubkey, nonce)` unique index.
pub(super) async fn nonce_owners(
    store: &PostgresStore,
    conn: &mut PgConnection,
    pairs: &[(PublicKey, String)],
) -> Result<Vec<Option<Hash32>>, StoreError> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let found = owners_of(store, conn, pairs).await?;
    Ok(owners_in_order(pairs, &found))
}

/// The owners in `attestations` of `pairs`, by (key, nonce), in one statement.
async fn owners_of(
    store: &PostgresStore,
    conn: &mut PgConnection,
    pairs: &[(PublicKey, String)],
) -> Result<NonceOwners, StoreError> {
    if pairs.is_empty() {
        return Ok(NonceOwners::new());
    }
    let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.0.as_slice()).collect();
    let nonces: Vec<&str> = pairs.iter().map(|(_, n)| n.as_str()).collect();
    let rows = store
        .query(
            "SELECT a.attester_pubkey, a.nonce, a.digest \
             FROM UNNEST($1::bytea[], $2::text[]) AS v(k, n) \
             JOIN attestations a ON a.attester_pubkey = v.k AND a.nonce = v.n",
        )
        .bind(keys)
        .bind(nonces)
        .fetch_all(conn)
        .await?;
    let mut found = NonceOwners::with_capacity(rows.len());
    for row in &rows {
        NonceOwnerRow {
            attester_pubkey: row.try_get("attester_pubkey")?,
            nonce: row.try_get("nonce")?,
            digest: row.try_get("digest")?,
        }
        .add_to(&mut found)?;
    }
    Ok(found)
}

/// One transaction and one multi-row statement for the whole batch. Rows that did not go
/// in met a uniqueness constraint and are looked up: their own digest (idempotent), or
/// their key and nonce (a replay). `ON CONFLICT DO NOTHING` judges a duplicate inside the
/// batch against the row inserted before it in the same statement.
pub(super) async fn insert(
    store: &PostgresStore,
    items: &[NewAttestation],
) -> Result<Vec<InsertOutcome>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let n = items.len();
    // Refused before the transaction: see `received_at_column`.
    let cols = Columns::of(items.iter())?;

    let mut conn = store.acquire().await?;
    // One statement, committed on its own: one round trip for the whole batch instead of
    // five (BEGIN, lock, INSERT, counters, COMMIT), which is what bounded group-commit
    // throughput. Inside it, the advisory lock is taken before any row is produced (every
    // inserted row is joined with the lock's row), so seq values are handed out and
    // committed in one order; it is released at the statement's commit.
    let rows = store
        .query(
            "WITH l AS (SELECT pg_advisory_xact_lock($8, $9)), \
             ins AS (INSERT INTO attestations \
             (digest, attester_pubkey, nonce, attester_id, body, impact_score, received_at_ms) \
             SELECT u.* FROM l, UNNEST($1::bytea[], $2::bytea[], $3::text[], $4::text[], \
             $5::bytea[], $6::float8[], $7::int8[]) AS u \
             ON CONFLICT DO NOTHING RETURNING seq, digest), \
             c AS (UPDATE counters SET value = value + (SELECT count(*) FROM ins) \
             WHERE name IN ('attestations', 'pending_attestations')) \
             SELECT seq, digest FROM ins",
        )
        .bind(&cols.digests)
        .bind(&cols.pubkeys)
        .bind(&cols.nonces)
        .bind(&cols.attesters)
        .bind(&cols.bodies)
        .bind(&cols.scores)
        .bind(&cols.received)
        .bind(store.lock_space)
        .bind(LockPurpose::Attestations as i32)
        .fetch_all(&mut *conn)
        .await?;
    let mut seqs: HashMap<Hash32, i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let digest = to_hash(row.try_get::<&[u8], _>("digest")?, "attestation digest")?;
        seqs.insert(digest, row.try_get("seq")?);
    }

    // Items that did not go in met a uniqueness constraint. Rows are never deleted, so
    // the row they met is still there to be named, after the commit as well as in it.
    let mut out = Vec::with_capacity(n);
    for item in items {
        // `remove`: a second copy of the same digest in this batch is AlreadyStored.
        let outcome = match seqs.remove(&item.digest) {
            Some(seq) => InsertOutcome::Inserted {
                seq: to_u64(seq, "attestation seq")?,
            },
            None => match submitted_by_digest(store, &mut conn, &item.digest).await? {
                Some(record) => InsertOutcome::AlreadyStored {
                    record: Box::new(record),
                },
                None => {
                    match nonce_owner(store, &mut conn, &item.attester_pubkey, &item.nonce).await? {
                        Some(existing_digest) => InsertOutcome::DuplicateNonce { existing_digest },
                        None => {
                            return Err(StoreError::Conflict(format!(
                            "attestation {} was refused by a constraint this store does not know",
                            item.digest
                        )))
                        }
                    }
                }
            },
        };
        out.push(outcome);
    }
    Ok(out)
}

/// The columns of `items` as `UNNEST` arrays, each item's `received_at_ms` checked.
pub(super) struct Columns<'i> {
    digests: Vec<&'i [u8]>,
    pubkeys: Vec<&'i [u8]>,
    nonces: Vec<&'i str>,
    attesters: Vec<&'i str>,
    bodies: Vec<&'i [u8]>,
    scores: Vec<f64>,
    received: Vec<i64>,
}

impl<'i> Columns<'i> {
    pub(super) fn of(
        items: impl ExactSizeIterator<Item = &'i NewAttestation>,
    ) -> Result<Self, StoreError> {
        let n = items.len();
        let mut c = Columns {
            digests: Vec::with_capacity(n),
            pubkeys: Vec::with_capacity(n),
            nonces: Vec::with_capacity(n),
            attesters: Vec::with_capacity(n),
            bodies: Vec::with_capacity(n),
            scores: Vec::with_capacity(n),
            received: Vec::with_capacity(n),
        };
        for item in items {
            c.received.push(received_at_column(item)?);
            c.digests.push(item.digest.as_bytes().as_slice());
            c.pubkeys.push(item.attester_pubkey.0.as_slice());
            c.nonces.push(item.nonce.as_str());
            c.attesters.push(item.attester_id.as_str());
            c.bodies.push(item.body.as_slice());
            c.scores.push(item.impact_score);
        }
        Ok(c)
    }
}

/// Attestations carried by a block, in one transaction: what is new goes into
/// `attestations` (under the seq lock, as a submission would), a body whose key and nonce
/// another digest holds goes into `contested_attestations`; nothing is refused for its
/// nonce.
pub(super) async fn insert_from_block(
    store: &PostgresStore,
    items: &[NewAttestation],
) -> Result<Vec<BlockAttestation>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let cols = Columns::of(items.iter())?;
    let mut conn = store.acquire().await?;
    let mut tx = conn.begin().await?;
    let judged = insert_from_block_in(store, &mut tx, items, &cols).await?;
    count_stored(store, &mut tx, judged.stored).await?;
    tx.commit().await?;
    Ok(judged.outcomes)
}

/// [`insert_from_block`] inside the transaction `tx` (the caller commits), with the items'
/// columns: takes the seq lock (held until `tx` ends), inserts, and judges. The counters
/// are the caller's ([`count_stored`] with `stored`), so that a caller placing attestations
/// in the same transaction can update them after its placement, in the order every other
/// writer takes the rows (attestations, then counters).
pub(super) async fn insert_from_block_in(
    store: &PostgresStore,
    tx: &mut PgConnection,
    items: &[NewAttestation],
    cols: &Columns<'_>,
) -> Result<contested::Judged, StoreError> {
    if items.is_empty() {
        return Ok(contested::Judged {
            outcomes: Vec::new(),
            contested: Vec::new(),
            stored: 0,
        });
    }
    store.lock(&mut *tx, LockPurpose::Attestations).await?;
    let rows = store
        .query(
            "INSERT INTO attestations \
             (digest, attester_pubkey, nonce, attester_id, body, impact_score, received_at_ms) \
             SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::text[], $4::text[], \
             $5::bytea[], $6::float8[], $7::int8[]) \
             ON CONFLICT DO NOTHING RETURNING seq, digest",
        )
        .bind(&cols.digests)
        .bind(&cols.pubkeys)
        .bind(&cols.nonces)
        .bind(&cols.attesters)
        .bind(&cols.bodies)
        .bind(&cols.scores)
        .bind(&cols.received)
        .fetch_all(&mut *tx)
        .await?;
    let mut inserted: HashMap<Hash32, i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let digest = to_hash(row.try_get::<&[u8], _>("digest")?, "attestation digest")?;
        inserted.insert(digest, row.try_get("seq")?);
    }

    let rest = contested::not_inserted(items, &inserted);
    let mut known = HashSet::with_capacity(rest.len());
    if !rest.is_empty() {
        let asked: Vec<&[u8]> = rest
            .iter()
            .map(|i| i.digest.as_bytes().as_slice())
            .collect();
        let found: Vec<Vec<u8>> = store
            .query_scalar(
                "SELECT digest FROM attestations WHERE digest = ANY($1) \
                 UNION ALL SELECT digest FROM contested_attestations WHERE digest = ANY($1)",
            )
            .bind(&asked)
            .fetch_all(&mut *tx)
            .await?;
        for d in &found {
            known.insert(to_hash(d, "attestation digest")?);
        }
    }
    let unknown: Vec<(PublicKey, String)> = rest
        .iter()
        .filter(|i| !known.contains(&i.digest))
        .map(|i| (i.attester_pubkey, i.nonce.clone()))
        .collect();
    let owners = owners_of(store, &mut *tx, &unknown).await?;
    let judged = contested::judge(items, &inserted, &known, &owners)?;

    if !judged.contested.is_empty() {
        let c = Columns::of(judged.contested.iter().map(|&i| &items[i]))?;
        store
            .query(
                "INSERT INTO contested_attestations \
                 (digest, attester_pubkey, nonce, attester_id, body, impact_score, received_at_ms) \
                 SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::text[], $4::text[], \
                 $5::bytea[], $6::float8[], $7::int8[])",
            )
            .bind(&c.digests)
            .bind(&c.pubkeys)
            .bind(&c.nonces)
            .bind(&c.attesters)
            .bind(&c.bodies)
            .bind(&c.scores)
            .bind(&c.received)
            .execute(&mut *tx)
            .await?;
    }
    Ok(judged)
}

/// Counts `stored` new rows of `attestations` (pending until placed), inside `tx`.
pub(super) async fn count_stored(
    store: &PostgresStore,
    tx: &mut PgConnection,
    stored: i64,
) -> Result<(), StoreError> {
    if stored > 0 {
        store
            .query(
                "UPDATE counters SET value = value + $1 \
                 WHERE name IN ('attestations', 'pending_attestations')",
            )
            .bind(stored)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

pub(super) async fn list(
    store: &PostgresStore,
    attester: Option<&str>,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Page<AttestationRecord>, StoreError> {
    let page = PageQuery::new(cursor, limit);
    let mut c = store.acquire().await?;
    let rows = match attester {
        Some(id) => {
            store
                .query(select_record!(
                    "WHERE a.attester_id = $1 AND a.seq < $2 ORDER BY a.seq DESC LIMIT $3"
                ))
                .bind(id)
                .bind(page.before)
                .bind(page.fetch)
                .fetch_all(&mut *c)
                .await?
        }
        None => {
            store
                .query(select_record!(
                    "WHERE a.seq < $1 ORDER BY a.seq DESC LIMIT $2"
                ))
                .bind(page.before)
                .bind(page.fetch)
                .fetch_all(&mut *c)
                .await?
        }
    };
    page.page(&rows, record)
}

pub(super) async fn pending(store: &PostgresStore, limit: u32) -> Result<Vec<Hash32>, StoreError> {
    let mut c = store.acquire().await?;
    let rows: Vec<Vec<u8>> = store
        .query_scalar(
            "SELECT digest FROM attestations WHERE block_hash IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?;
    rows.iter()
        .map(|d| to_hash(d, "attestation digest"))
        .collect()
}

pub(super) async fn counter(store: &PostgresStore, name: &str) -> Result<u64, StoreError> {
    let mut c = store.acquire().await?;
    let v = store
        .query_scalar("SELECT value FROM counters WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    counter_value(name, v)
}

pub(super) async fn impact_summary(
    store: &PostgresStore,
    from_ms: u64,
    to_ms: u64,
    top: u32,
) -> Result<ImpactSummary, StoreError> {
    let from = to_i64(from_ms, "from_ms")?;
    let to = to_i64(to_ms, "to_ms")?;
    let mut c = store.acquire().await?;
    // One repeatable-read transaction: the totals and the top list see one snapshot.
    let mut tx = c.begin().await?;
    store
        .query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let totals = store
        .query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(a.impact_score), 0.0)::float8 AS total \
             FROM blocks b JOIN attestations a ON a.block_hash = b.hash \
             WHERE b.timestamp_ms >= $1 AND b.timestamp_ms < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&mut *tx)
        .await?;
    let rows = store
        .query(
            "SELECT a.attester_id AS attester_id, COUNT(*) AS n, SUM(a.impact_score) AS total \
             FROM blocks b JOIN attestations a ON a.block_hash = b.hash \
             WHERE b.timestamp_ms >= $1 AND b.timestamp_ms < $2 \
             GROUP BY a.attester_id ORDER BY total DESC, a.attester_id ASC LIMIT $3",
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
