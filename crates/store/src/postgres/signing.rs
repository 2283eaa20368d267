//! The signing guard: a slot is taken with one atomic `INSERT … ON CONFLICT DO NOTHING`,
//! then the row it met is read in a statement of its own (whose snapshot sees a
//! concurrent insert that committed meanwhile). Replicas of one validator share the table,
//! so a failover can never sign a second block of a slot.

use sqlx::PgConnection;

use super::PostgresStore;
use crate::error::StoreError;
use crate::signing::Slot;
use crate::types::Signing;

/// Takes `slot` for its block on `conn`, or reads who holds it. In autocommit, `First`
/// is durable when this returns; inside a transaction, when the caller commits.
pub(super) async fn sign_in(
    store: &PostgresStore,
    conn: &mut PgConnection,
    slot: &Slot,
) -> Result<Signing, StoreError> {
    let inserted: Option<i32> = store
        .query_scalar(
            "INSERT INTO signed (epoch, height, proposer, block_hash, at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
        )
        .bind(slot.epoch)
        .bind(slot.height)
        .bind(slot.proposer.as_bytes().as_slice())
        .bind(slot.block.as_bytes().as_slice())
        .bind(slot.at)
        .fetch_optional(&mut *conn)
        .await?;
    let stored: Option<Vec<u8>> = if inserted.is_some() {
        None
    } else {
        store
            .query_scalar(
                "SELECT block_hash FROM signed WHERE epoch = $1 AND height = $2 AND proposer = $3",
            )
            .bind(slot.epoch)
            .bind(slot.height)
            .bind(slot.proposer.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await?
    };
    slot.verdict(inserted.is_some(), stored.as_deref())
}
