//! Votes (docs/protocol.md §3.4). Stored as received; their signatures are checked by the
//! caller.

use bizra_ledger::vote::Vote;
use bizra_ledger::Hash32;
use sqlx::Row;

use super::PostgresStore;
use crate::error::StoreError;
use crate::rows::VoteRow;

pub(super) async fn insert(store: &PostgresStore, vote: &Vote) -> Result<bool, StoreError> {
    let mut c = store.acquire().await?;
    // A repeated vote (a retried peer call) is a no-op, not an error.
    let r = store
        .query(
            "INSERT INTO votes (block_hash, validator_id, signature) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(vote.block_hash.as_bytes().as_slice())
        .bind(vote.validator_id.as_bytes().as_slice())
        .bind(vote.signature.0.as_slice())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn for_block(
    store: &PostgresStore,
    block_hash: &Hash32,
) -> Result<Vec<Vote>, StoreError> {
    let mut c = store.acquire().await?;
    let rows = store
        .query(
            "SELECT validator_id, signature FROM votes WHERE block_hash = $1 ORDER BY validator_id",
        )
        .bind(block_hash.as_bytes().as_slice())
        .fetch_all(&mut *c)
        .await?;
    rows.iter()
        .map(|r| {
            VoteRow {
                validator_id: r.try_get("validator_id")?,
                signature: r.try_get("signature")?,
            }
            .into_vote(*block_hash)
        })
        .collect()
}
