//! Votes (SPEC §3.4). Stored as received; their signatures are checked by the caller.

use bizra_ledger::vote::Vote;
use bizra_ledger::Hash32;
use sqlx::{Row, SqlitePool};

use crate::codec::{to_hash, to_signature};
use crate::error::StoreError;

pub(super) async fn insert(writer: &SqlitePool, vote: &Vote) -> Result<bool, StoreError> {
    // A validator's vote for a block is kept once; a repeat (a retried peer call) is a
    // no-op rather than an error.
    let r = sqlx::query(
        "INSERT INTO votes (block_hash, validator_id, signature) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(vote.block_hash.as_bytes().as_slice())
    .bind(vote.validator_id.as_bytes().as_slice())
    .bind(vote.signature.0.as_slice())
    .execute(writer)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn for_block(
    readers: &SqlitePool,
    block_hash: &Hash32,
) -> Result<Vec<Vote>, StoreError> {
    let rows = sqlx::query(
        "SELECT validator_id, signature FROM votes WHERE block_hash = ?1 ORDER BY validator_id",
    )
    .bind(block_hash.as_bytes().as_slice())
    .fetch_all(readers)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Vote {
                block_hash: *block_hash,
                validator_id: to_hash(r.try_get("validator_id")?, "vote validator_id")?,
                signature: to_signature(r.try_get("signature")?, "vote signature")?,
            })
        })
        .collect()
}
