//! The signing guard on the writer thread: a slot is taken inside a write transaction and
//! is durable once that transaction commits (`synchronous = FULL`).

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::write_thread::begin;
use crate::error::StoreError;
use crate::signing::Slot;
use crate::types::Signing;

/// Takes `slot` for its block inside `tx`, or reads who holds it. Commits nothing: the
/// caller commits (`First`) with the rest of its transaction.
pub(super) fn sign_in(tx: &Transaction<'_>, slot: &Slot) -> Result<Signing, StoreError> {
    let inserted =
        tx.prepare_cached(
            "INSERT INTO signed (epoch, height, proposer, block_hash, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            slot.epoch,
            slot.height,
            slot.proposer.as_bytes(),
            slot.block.as_bytes(),
            slot.at
        ])? == 1;
    let stored: Option<Vec<u8>> = if inserted {
        None
    } else {
        tx.prepare_cached(
            "SELECT block_hash FROM signed WHERE epoch = ?1 AND height = ?2 AND proposer = ?3",
        )?
        .query_row(
            params![slot.epoch, slot.height, slot.proposer.as_bytes()],
            |r| r.get(0),
        )
        .optional()?
    };
    slot.verdict(inserted, stored.as_deref())
}

/// [`sign_in`] as a transaction of its own: `First` returns after the commit.
pub(super) fn record(conn: &mut Connection, slot: &Slot) -> Result<Signing, StoreError> {
    let tx = begin(conn)?;
    let signing = sign_in(&tx, slot)?;
    if signing == Signing::First {
        tx.commit()?;
    }
    Ok(signing)
}
