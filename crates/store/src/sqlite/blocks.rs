//! Blocks, their attestations' placement, own blocks with their signing slot, other
//! validators' blocks with their attestations and certificate, and certification: writes
//! on the writer thread, reads on the reader pool. (Commits are in `ledger`.)

use bizra_ledger::block::Block;
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::Hash32;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, ToSql, Transaction};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::chunks::{chunk_len, rows, PerChunk};
use super::columns::{blob, opt_blob, opt_text, text};
use super::signing::sign_in;
use super::write_thread::{begin, WriteThread};
use crate::codec::{clamp_limit, pack_hashes, to_hash, to_u64, Certificate};
use crate::error::StoreError;
use crate::placement::{already_stored, check_known, check_peer_parts, check_repeats, NewBlockRow};
use crate::rows::{select_block, BlockRow};
use crate::signing::Slot;
use crate::types::{
    BlockAttestation, BlockInsert, NewAttestation, PeerBlockInsert, Signing, StoredBlock,
};

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
    match insert_with(writer, block, row, Also::Nothing).await? {
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
    match insert_with(writer, block, row, Also::Sign(slot)).await? {
        Stored::Inserted(
            _,
            Besides {
                signing: Some(signing),
                ..
            },
        )
        | Stored::Refused(signing) => Ok(signing),
        Stored::Inserted(..) => Err(StoreError::corrupt("a signed insert did not sign")),
    }
}

/// [`insert`] of another validator's block with its attestations and, when given, its
/// certificate. Everything is checked before the first transaction (the attestations are
/// the block's, in order; the certificate is the block's; the columns fit). The
/// attestations are stored in the first transaction, before the block's checks and row
/// (so the block's own attestations are known to it); the certificate is stored with the
/// last, once the block is fully placed. A block of up to [`PLACE_PER_TRANSACTION`]
/// attestations (or one found stored) is therefore exactly one transaction.
///
/// A larger block's later transactions only place attestations. If one fails, the block
/// is removed again ([`undo`]); if the process dies before the last, the next open removes
/// it ([`undo_unfinished`]): its placements are undone (the attestations pending again,
/// settled ones where the ledger met them), the block row and so the certificate never
/// stored are gone, and what the first transaction stored of the attestations stays,
/// exactly as a committed [`crate::Store::insert_block_attestations`] leaves it (new ones
/// counted and pending, contested ones contested). The same call again finds them `Known`
/// and stores the block and its certificate.
pub(super) async fn insert_peer(
    writer: &WriteThread,
    block: &Block,
    items: &[NewAttestation],
    qc: Option<&QuorumCertificate>,
    created_at_ms: u64,
    certified_at_ms: u64,
) -> Result<PeerBlockInsert, StoreError> {
    let row = NewBlockRow::new(block, created_at_ms)?;
    check_peer_parts(block, items, qc)?;
    check_repeats(block)?;
    let received = super::attestations::received_columns(items)?;
    let certificate = qc
        .map(|qc| Certificate::new(qc, certified_at_ms))
        .transpose()?;
    let peer = Peer {
        items: items.to_vec(),
        received,
        certificate,
    };
    match insert_with(writer, block, row, Also::Peer(peer)).await? {
        Stored::Inserted(insert, besides) => Ok(PeerBlockInsert {
            attestations: besides.attestations,
            block: insert,
            newly_certified: besides.newly_certified,
        }),
        Stored::Refused(_) => Err(StoreError::corrupt("an unsigned insert was refused")),
    }
}

/// What an insert writes besides the block and its placement.
enum Also {
    /// Nothing ([`insert`]).
    Nothing,
    /// The slot of this validator's own block, taken in the first transaction
    /// ([`insert_own`]).
    Sign(Slot),
    /// Another validator's attestations, stored in the first transaction, and its
    /// certificate, stored with the last ([`insert_peer`]).
    Peer(Peer),
}

/// A peer block's attestations (with their checked `received_at_ms` columns) and its
/// certificate.
struct Peer {
    items: Vec<NewAttestation>,
    received: Vec<i64>,
    certificate: Option<Certificate>,
}

impl Also {
    fn certificate(&self) -> Option<&Certificate> {
        match self {
            Also::Peer(peer) => peer.certificate.as_ref(),
            Also::Nothing | Also::Sign(_) => None,
        }
    }
}

/// What an insert did besides storing the block: the signing of the slot when one was
/// asked for; a peer block's attestation outcomes, and whether its certificate certified
/// it now.
#[derive(Default)]
struct Besides {
    signing: Option<Signing>,
    attestations: Vec<BlockAttestation>,
    newly_certified: bool,
}

/// What [`insert_with`] did.
enum Stored {
    /// Stored (or found stored), with what was done besides.
    Inserted(BlockInsert, Besides),
    /// Another block holds the slot: nothing was written.
    Refused(Signing),
}

async fn insert_with(
    writer: &WriteThread,
    block: &Block,
    row: NewBlockRow,
    also: Also,
) -> Result<Stored, StoreError> {
    let block = Arc::new(block.clone());
    let also = Arc::new(also);
    let total = block.attestation_ids.len();
    let first = total.min(PLACE_PER_TRANSACTION);

    let (b, a) = (block.clone(), also.clone());
    let start = writer
        .run(move |conn| insert_first(conn, &b, &row, first, &a))
        .await?;
    let mut besides = match start {
        First::Done(insert, besides) => return Ok(Stored::Inserted(insert, besides)),
        First::Refused(signing) => return Ok(Stored::Refused(signing)),
        First::Placing(besides) => besides,
    };
    let mut at = first;
    while at < total {
        let end = (at + PLACE_PER_TRANSACTION).min(total);
        let (b, a) = (block.clone(), also.clone());
        let placed = writer
            .run(move |conn| place_more(conn, &b, at, end, a.certificate()))
            .await;
        match placed {
            Ok(certified) => besides.newly_certified |= certified,
            Err(e) => {
                // Only a write around this node's own chain lock, or a store failure, gets
                // here; either way the block must not stay half placed.
                let hash = block.hash;
                let _ = writer.run(move |conn| undo(conn, &hash)).await;
                return Err(e);
            }
        }
        at = end;
    }
    Ok(Stored::Inserted(BlockInsert::Inserted, besides))
}

/// What the first transaction of an insert did; each carries what was done besides.
enum First {
    /// Settled: the identical block is already stored (what was done besides, committed),
    /// or the block was stored whole.
    Done(BlockInsert, Besides),
    /// The block is stored with its first placements; more transactions follow.
    Placing(Besides),
    /// Another block holds the slot: nothing was written.
    Refused(Signing),
}

/// The first transaction of [`insert`]: the slot or the peer's attestations (when asked),
/// the checks, the block row and its first `first` placements, and the peer's certificate
/// when that is the whole block (or the block is found stored).
fn insert_first(
    conn: &mut Connection,
    block: &Block,
    row: &NewBlockRow,
    first: usize,
    also: &Also,
) -> Result<First, StoreError> {
    let ids = &block.attestation_ids;
    let tx = begin(conn)?;
    let mut besides = Besides::default();
    match also {
        Also::Nothing => {}
        Also::Sign(slot) => match sign_in(&tx, slot)? {
            // Dropping `tx` rolls back: nothing is written.
            refused @ Signing::Conflict { .. } => return Ok(First::Refused(refused)),
            signing => besides.signing = Some(signing),
        },
        Also::Peer(peer) => {
            besides.attestations =
                super::attestations::insert_from_block_in(&tx, &peer.items, &peer.received)?
        }
    }
    let placed: Option<i64> = tx
        .prepare_cached("SELECT placed FROM blocks WHERE hash = ?1")?
        .query_row([block.hash.as_bytes()], |r| r.get(0))
        .optional()?;
    match placed {
        Some(0) => undo_unplaced(&tx, &block.hash)?,
        Some(_) => {
            let done = already_stored(block, by_hash_in(&tx, &block.hash)?)?;
            besides.newly_certified = certify_also(&tx, also)?;
            // Commits the slot if this call took it, the peer's certificate if it is new;
            // otherwise an empty transaction.
            tx.commit()?;
            return Ok(First::Done(done, besides));
        }
        None => {}
    }
    // Returning an error drops `tx`: nothing of the block (nor the slot, nor the peer's
    // attestations) is written.
    check_placeable(&tx, block)?;
    let whole = first == ids.len();
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
            i64::from(whole),
            row.epoch,
        ],
    )?;
    place(&tx, block, 0, &ids[..first])?;
    if whole {
        besides.newly_certified = certify_also(&tx, also)?;
    }
    tx.commit()?;
    Ok(if whole {
        First::Done(BlockInsert::Inserted, besides)
    } else {
        First::Placing(besides)
    })
}

/// One later transaction of [`insert`]: places `block`'s attestations `from..to`, and with
/// the last of them marks the block placed and stores `certificate` (when given): `true`
/// when that certified the block now.
fn place_more(
    conn: &mut Connection,
    block: &Block,
    from: usize,
    to: usize,
    certificate: Option<&Certificate>,
) -> Result<bool, StoreError> {
    let tx = begin(conn)?;
    place(&tx, block, from, &block.attestation_ids[from..to])?;
    let mut certified = false;
    if to == block.attestation_ids.len() {
        tx.execute(
            "UPDATE blocks SET placed = 1 WHERE hash = ?1",
            [block.hash.as_bytes()],
        )?;
        if let Some(c) = certificate {
            certified = certify_in(&tx, c)?;
        }
    }
    tx.commit()?;
    Ok(certified)
}

/// Stores the peer's certificate, if `also` carries one, inside `tx`.
fn certify_also(tx: &Transaction<'_>, also: &Also) -> Result<bool, StoreError> {
    also.certificate().map_or(Ok(false), |c| certify_in(tx, c))
}

/// Stores `qc` on its block as the block's own certificate, inside the writer's
/// transaction: `true` when the block was not certified before (the first certificate and
/// its time stay); `NotFound` for an unknown block.
fn certify_in(tx: &Transaction<'_>, qc: &Certificate) -> Result<bool, StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE blocks SET qc = ?1, certified_at_ms = ?2 \
             WHERE hash = ?3 AND certified_at_ms IS NULL",
        )?
        .execute(params![qc.json, qc.at, qc.block.as_bytes()])?;
    if changed == 0 && !exists(tx, &qc.block)? {
        return Err(StoreError::NotFound(format!("block {}", qc.block)));
    }
    Ok(changed == 1)
}

/// [`certify_in`] as a transaction of its own, on the writer thread.
pub(super) fn mark_certified(conn: &mut Connection, qc: &Certificate) -> Result<bool, StoreError> {
    let tx = begin(conn)?;
    let changed = certify_in(&tx, qc)?;
    tx.commit()?;
    Ok(changed)
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

#[cfg(test)]
mod tests {
    use bizra_ledger::block::BlockContent;
    use bizra_ledger::crypto::{Keypair, PublicKey};

    use super::*;

    fn items(n: usize) -> Vec<NewAttestation> {
        (0..n)
            .map(|i| NewAttestation {
                digest: Hash32::digest(format!("att {i}").as_bytes()),
                attester_pubkey: PublicKey([1; 32]),
                attester_id: "a".into(),
                nonce: format!("{i}"),
                body: b"{}".to_vec(),
                impact_score: 0.5,
                received_at_ms: 1,
            })
            .collect()
    }

    fn peer_block(items: &[NewAttestation]) -> Block {
        Block::propose(
            BlockContent {
                chain_id: "test".into(),
                epoch: 0,
                height: 1,
                parents: vec![Hash32::digest(b"parent")],
                attestation_ids: items.iter().map(|i| i.digest).collect(),
                entry_ids: vec![],
                timestamp_ms: 5,
            },
            &Keypair::from_seed([7; 32]),
        )
        .expect("a well-formed block")
    }

    fn peer(items: Vec<NewAttestation>, block: &Block) -> Also {
        let qc = QuorumCertificate {
            block_hash: block.hash,
            votes: vec![],
            weight: 1,
            total_weight: 1,
        };
        Also::Peer(Peer {
            received: super::super::attestations::received_columns(&items).unwrap(),
            items,
            certificate: Some(Certificate::new(&qc, 9).unwrap()),
        })
    }

    fn state(conn: &Connection, hash: &Hash32) -> (i64, Option<i64>) {
        conn.query_row(
            "SELECT placed, certified_at_ms FROM blocks WHERE hash = ?1",
            [hash.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// The transactions `insert_peer` runs: a block of up to PLACE_PER_TRANSACTION
    /// attestations is settled by the first (attestations, block, placement and QC); a
    /// larger one is left placing and uncertified by it, and certified by the last.
    #[test]
    fn a_peer_block_is_one_transaction_up_to_the_placement_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        super::super::migrate::run(&mut conn).unwrap();

        let small = items(PLACE_PER_TRANSACTION);
        let b = peer_block(&small);
        let row = NewBlockRow::new(&b, 1).unwrap();
        let also = peer(small, &b);
        match insert_first(&mut conn, &b, &row, PLACE_PER_TRANSACTION, &also).unwrap() {
            First::Done(BlockInsert::Inserted, besides) => {
                assert!(besides.newly_certified);
                assert_eq!(
                    besides.attestations,
                    vec![BlockAttestation::Stored; PLACE_PER_TRANSACTION]
                );
            }
            _ => panic!("a block of {PLACE_PER_TRANSACTION} takes one transaction"),
        }
        assert_eq!(state(&conn, &b.hash), (1, Some(9)));

        let large = items(PLACE_PER_TRANSACTION + 1);
        let b = peer_block(&large);
        let row = NewBlockRow::new(&b, 1).unwrap();
        let also = peer(large, &b);
        match insert_first(&mut conn, &b, &row, PLACE_PER_TRANSACTION, &also).unwrap() {
            First::Placing(besides) => {
                assert!(!besides.newly_certified);
                // The first PLACE_PER_TRANSACTION were stored by the block before.
                let mut want = vec![BlockAttestation::Known; PLACE_PER_TRANSACTION];
                want.push(BlockAttestation::Stored);
                assert_eq!(besides.attestations, want);
            }
            _ => panic!("a larger block takes more transactions"),
        }
        assert_eq!(state(&conn, &b.hash), (0, None));
        let last = PLACE_PER_TRANSACTION + 1;
        assert!(place_more(
            &mut conn,
            &b,
            PLACE_PER_TRANSACTION,
            last,
            also.certificate()
        )
        .unwrap());
        assert_eq!(state(&conn, &b.hash), (1, Some(9)));
    }
}
