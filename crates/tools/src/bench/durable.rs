//! `--verify-durable`: after the run, read back every attestation the node acknowledged
//! with 201 (every acknowledged attestation must be readable afterwards).

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::client::Client;

/// Concurrent reads during the check.
const CONCURRENCY: usize = 64;
/// Ids listed in the report when some are missing.
const MISSING_SHOWN: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Durable {
    pub acknowledged: u64,
    pub readable: u64,
    /// Up to ten ids that did not read back with 200.
    pub missing: Vec<String>,
}

pub async fn check(client: &Client, ids: Vec<String>) -> Durable {
    let acknowledged = ids.len() as u64;
    let results: Vec<(String, bool)> = stream::iter(ids)
        .map(|id| async move {
            let ok = matches!(
                client.get(&format!("/api/validator/attestation/{id}")).await,
                Ok(a) if a.status == 200 && a.body["attestation_id"] == id.as_str()
            );
            (id, ok)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let readable = results.iter().filter(|(_, ok)| *ok).count() as u64;
    let missing = results
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(id, _)| id)
        .take(MISSING_SHOWN)
        .collect();
    Durable {
        acknowledged,
        readable,
        missing,
    }
}
