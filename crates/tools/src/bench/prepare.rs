//! Work done before the clock starts: the network anchor, pre-signed attestations (an
//! Ed25519 signature per request would otherwise come out of the generator's CPU during
//! the run), ids to read and list cursors to walk.

use std::time::{Duration, Instant};

use bizra_ledger::params::NetworkAnchor;
use bytes::Bytes;
use serde_json::Value;

use super::BenchError;
use crate::client::Client;

/// Largest batch the node's batch route takes.
const BATCH: usize = 1000;
/// How long seeded attestations may take to be finalized before the run starts anyway.
const SEED_FINALITY_WAIT: Duration = Duration::from_secs(60);
pub const LIST_PAGE: u32 = 50;

/// Pre-signed attestations: bodies and their ids (digests, hex), in the same order.
#[derive(Debug, Default)]
pub struct Signed {
    pub bodies: Vec<Bytes>,
    pub ids: Vec<String>,
}

/// Signs `count` attestations ([`crate::presign`]) as request bodies with their ids.
pub fn presign(network: &NetworkAnchor, count: usize) -> Result<Signed, BenchError> {
    let signed = crate::presign::presign(network, "node0-bench", count, |att, digest| {
        let body = serde_json::to_vec(&att).map_err(|e| BenchError::Prepare(e.to_string()))?;
        Ok::<_, BenchError>((Bytes::from(body), digest.to_hex()))
    })?;
    let (bodies, ids) = signed.into_iter().unzip();
    Ok(Signed { bodies, ids })
}

/// [`presign`] off the async runtime, with a note on stderr (it takes seconds for large
/// counts).
pub async fn presign_async(network: &NetworkAnchor, count: usize) -> Result<Signed, BenchError> {
    if count == 0 {
        return Ok(Signed::default());
    }
    let t = Instant::now();
    let network = network.clone();
    let signed = tokio::task::spawn_blocking(move || presign(&network, count))
        .await
        .map_err(|_| BenchError::WorkerPanicked)??;
    eprintln!(
        "bench: pre-signed {count} attestations in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(signed)
}

/// Ids of at least `n` stored attestations: taken from the list endpoint, and when the
/// node has fewer, submitted through the batch route first and waited on until finalized
/// (so reads exercise the block and proof lookup).
pub async fn attestation_ids(
    client: &Client,
    network: &NetworkAnchor,
    n: usize,
) -> Result<Vec<String>, BenchError> {
    let mut ids = listed_ids(client, n).await?;
    if ids.len() >= n {
        ids.truncate(n);
        return Ok(ids);
    }
    let need = n - ids.len();
    eprintln!(
        "bench: the node has {} attestations; seeding {need} through the batch route",
        ids.len()
    );
    let signed = presign_async(network, need).await?;
    let mut last = None;
    for chunk in signed.bodies.chunks(BATCH) {
        let items = chunk
            .iter()
            .map(|b| serde_json::from_slice::<Value>(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BenchError::Prepare(e.to_string()))?;
        let a = client
            .post(
                "/api/validator/attestation/batch",
                &serde_json::json!({ "attestations": items }),
            )
            .await?;
        if a.status != 200 && a.status != 207 {
            return Err(BenchError::Prepare(format!(
                "batch submit answered {}: {}",
                a.status, a.body
            )));
        }
        for r in a.body["results"].as_array().into_iter().flatten() {
            if let Some(id) = r["attestation_id"].as_str() {
                ids.push(id.to_string());
                last = Some(id.to_string());
            }
        }
    }
    if let Some(id) = last {
        wait_finalized(client, &id).await?;
    }
    if ids.len() < n {
        return Err(BenchError::Prepare(format!(
            "wanted {n} attestations, the node stored {}",
            ids.len()
        )));
    }
    Ok(ids)
}

async fn listed_ids(client: &Client, n: usize) -> Result<Vec<String>, BenchError> {
    let mut ids = Vec::with_capacity(n);
    let mut cursor: Option<String> = None;
    while ids.len() < n {
        let mut path = "/api/validator/attestations?limit=500".to_string();
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&encode_query(c));
        }
        let page = client.get_ok(&path).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            if let Some(id) = item["attestation_id"].as_str() {
                ids.push(id.to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    Ok(ids)
}

/// Waits until the attestation's block is finalized (ids submitted in one go land in
/// consecutive blocks, so the last one stands for all).
async fn wait_finalized(client: &Client, id: &str) -> Result<(), BenchError> {
    let t = Instant::now();
    let path = format!("/api/validator/attestation/{id}");
    loop {
        let r = client.get_ok(&path).await?;
        if r["status"] == "finalized" {
            eprintln!(
                "bench: seeded attestations finalized after {:.1} s",
                t.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if t.elapsed() > SEED_FINALITY_WAIT {
            eprintln!(
                "bench: seeded attestations still {} after {:?}; running anyway",
                r["status"], SEED_FINALITY_WAIT
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Paths of up to `pages` consecutive list pages, newest first: the first page and the
/// pages its cursors lead to.
pub async fn list_pages(client: &Client, pages: usize) -> Result<Vec<String>, BenchError> {
    let first = format!("/api/validator/attestations?limit={LIST_PAGE}");
    let mut out = vec![first.clone()];
    let mut path = first;
    while out.len() < pages.max(1) {
        let page = client.get_ok(&path).await?;
        let Some(c) = page["next_cursor"].as_str() else {
            break;
        };
        path = format!(
            "/api/validator/attestations?limit={LIST_PAGE}&cursor={}",
            encode_query(c)
        );
        out.push(path.clone());
    }
    Ok(out)
}

/// One pre-signed attestation that the node's verify route calls valid.
pub async fn verify_body(client: &Client, network: &NetworkAnchor) -> Result<Bytes, BenchError> {
    let signed = presign(network, 1)?;
    let body = signed
        .bodies
        .into_iter()
        .next()
        .ok_or_else(|| BenchError::Prepare("no attestation signed".into()))?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| BenchError::Prepare(e.to_string()))?;
    let a = client
        .post("/api/validator/attestation/verify", &value)
        .await?;
    if a.status != 200 || a.body["valid"] != true {
        return Err(BenchError::Prepare(format!(
            "the node does not call the benchmark's attestation valid ({}): {}",
            a.status, a.body
        )));
    }
    Ok(body)
}

/// Percent-encodes a query value (cursors are plain today; this keeps them safe if not).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bizra_ledger::attestation::Attestation;

    #[test]
    fn presigned_bodies_are_attestations_with_their_ids() {
        let s = presign(&NetworkAnchor::default(), 5).unwrap();
        assert_eq!((s.bodies.len(), s.ids.len()), (5, 5));
        for (body, id) in s.bodies.iter().zip(&s.ids) {
            let att = Attestation::from_json(body).unwrap();
            assert_eq!(&att.digest().unwrap().to_hex(), id);
            assert_eq!(att.attester.id, "node0-bench");
        }
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("c1a2"), "c1a2");
        assert_eq!(encode_query("a b/c"), "a%20b%2Fc");
    }
}
