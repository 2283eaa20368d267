//! `--finality`: after a submit run, wait until every acknowledged attestation is final
//! and measure submit-to-finalized latency, from each submit's intended send time to its
//! block's `finalized_at_ms` as the node recorded it. Both clocks are this machine's
//! when the node runs on it; across machines the figure includes their clock offset.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::BenchError;
use crate::client::Client;
use crate::latency::{histogram, Percentiles};

/// How long to wait for the last acknowledged attestations to become final.
const PATIENCE: Duration = Duration::from_secs(60);
/// Blocks per page read from the node.
const PAGE: u32 = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Finality {
    pub acknowledged: u64,
    pub finalized: u64,
    /// Submit to finalized, of the finalized ones. The node's `finalized_at_ms` has
    /// millisecond resolution, so the decimals are the histogram's, not the clock's.
    pub latency_ms: Percentiles,
}

/// `sent`: acknowledged attestation ids with their intended send times.
pub async fn measure(
    client: &Client,
    sent: Vec<(String, Instant)>,
) -> Result<Finality, BenchError> {
    // Instants to wall-clock milliseconds, through one pair read now.
    let (now_i, now_w) = (Instant::now(), wall_ms());
    let sent_ms: HashMap<String, u64> = sent
        .into_iter()
        .map(|(id, at)| {
            let ago = now_i.saturating_duration_since(at).as_millis() as u64;
            (id, now_w.saturating_sub(ago))
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    let mut final_at: HashMap<String, u64> = HashMap::new();
    loop {
        final_at.clear();
        // Every epoch up to the node's current one (with a short slot, a run spans
        // several).
        let epochs = client.get_ok("/api/consensus/status").await?["epoch"]
            .as_u64()
            .unwrap_or(0);
        for epoch in 0..=epochs {
            let mut from = 0u64;
            loop {
                let page = client
                    .get_ok(&format!(
                        "/api/consensus/blocks?epoch={epoch}&from_height={from}&limit={PAGE}"
                    ))
                    .await?;
                let empty = Vec::new();
                let items = page["items"].as_array().unwrap_or(&empty);
                for b in items {
                    let Some(at) = b["finalized_at_ms"].as_u64() else {
                        continue;
                    };
                    for id in b["attestation_ids"].as_array().unwrap_or(&empty) {
                        if let Some(id) = id.as_str() {
                            if sent_ms.contains_key(id) {
                                // Two validators may include one attestation: the first
                                // commit finalized it.
                                let e = final_at.entry(id.to_string()).or_insert(at);
                                *e = (*e).min(at);
                            }
                        }
                    }
                }
                match page["next_from_height"].as_u64() {
                    Some(next) if next > from => from = next,
                    _ => break,
                }
            }
        }
        if final_at.len() == sent_ms.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut h = histogram()?;
    for (id, at) in &final_at {
        if let Some(sent) = sent_ms.get(id) {
            // Recorded in µs, as every latency histogram of the crate.
            h.saturating_record(at.saturating_sub(*sent).saturating_mul(1000));
        }
    }
    Ok(Finality {
        acknowledged: sent_ms.len() as u64,
        finalized: final_at.len() as u64,
        latency_ms: Percentiles::of(&h),
    })
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
