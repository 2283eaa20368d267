//! `node0 keepalive-check URL`: the seed's `keepalive_reuse.js`, proven from the server's
//! side. It reads the node's `http_connections_accepted_total`, sends N requests through
//! one pooled keep-alive client, reads the counter again, and does the same with a client
//! that closes every connection, as the control. With reuse, N requests cost one
//! connection (two counting the metric reads, which use the same pool).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct KeepaliveReport {
    pub requests: u32,
    pub pooled_connections_opened: u64,
    pub control_connections_opened: u64,
    pub reuse_ratio: f64,
    pub ok: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KeepaliveError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the server's /metrics has no http_connections_accepted_total")]
    NoMetric,
}

async fn accepted(client: &reqwest::Client, base: &str) -> Result<u64, KeepaliveError> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find(|l| l.starts_with("http_connections_accepted_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or(KeepaliveError::NoMetric)
}

async fn opened_by(
    client: &reqwest::Client,
    observer: &reqwest::Client,
    base: &str,
    requests: u32,
) -> Result<u64, KeepaliveError> {
    let before = accepted(observer, base).await?;
    for _ in 0..requests {
        client
            .get(format!("{base}/health"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
    }
    let after = accepted(observer, base).await?;
    Ok(after.saturating_sub(before))
}

pub async fn run(base: &str, requests: u32) -> Result<KeepaliveReport, KeepaliveError> {
    let base = base.trim_end_matches('/');
    let pooled = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(10))
        .build()?;
    let control = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()?;
    // The observer is the pooled client itself: its metric reads reuse its connection.
    let pooled_opened = opened_by(&pooled, &pooled, base, requests).await?;
    let control_opened = opened_by(&control, &pooled, base, requests).await?;
    Ok(KeepaliveReport {
        requests,
        pooled_connections_opened: pooled_opened,
        control_connections_opened: control_opened,
        reuse_ratio: 1.0 - pooled_opened as f64 / requests.max(1) as f64,
        // One connection at most for the pool; the control must show that the counter
        // sees new connections at all.
        ok: pooled_opened <= 1 && control_opened >= u64::from(requests),
    })
}
