//! Votes (docs/protocol.md §3.4). Stored as received; their signatures are checked by the
//! caller.

use bizra_ledger::vote::Vote;
use bizra_ledger::Hash32;
use rusqlite::{params, Connection};
use sqlx::{Row, SqlitePool};

use crate::error::StoreError;
use crate::rows::VoteRow;

pub(super) fn insert(conn: &mut Connection, vote: &Vote) -> Result<bool, StoreError> {
    // A validator's vote for a block is kept once; a repeat (a retried peer call) is a
    // no-op rather than an error.
    let changed = conn
        .prepare_cached(
            "INSERT INTO votes (block_hash, validator_id, signature) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            vote.block_hash.as_bytes(),
            vote.validator_id.as_bytes(),
            vote.signature.0.as_slice()
        ])?;
    Ok(changed == 1)
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
            VoteRow {
                validator_id: r.try_get("validator_id")?,
                signature: r.try_get("signature")?,
            }
            .into_vote(*block_hash)
        })
        .collect()
}
