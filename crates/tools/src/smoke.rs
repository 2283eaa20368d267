//! `node0 smoke URL`: the seed's `smoke.sh`, for real. Health, stats, genesis, tipset, a
//! signed submit, idempotent resubmit, then read-back until finalized, with the
//! inclusion proof verified against the block the node serves and the block's hash
//! recomputed from its header.

use std::time::{Duration, Instant};

use bizra_ledger::block::BlockHeader;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::merkle::InclusionProof;
use bizra_ledger::Hash32;
use serde_json::Value;

use crate::attest::{network_of, AttestSpec};
use crate::client::Client;

/// The first failed step, with why.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct SmokeFailure {
    pub step: &'static str,
    pub reason: String,
}

fn fail<T>(step: &'static str, reason: impl Into<String>) -> Result<T, SmokeFailure> {
    Err(SmokeFailure {
        step,
        reason: reason.into(),
    })
}

/// Runs every step, printing one line per passed step; stops at the first failure.
pub async fn run(base: &str, finality_timeout: Duration) -> Result<(), SmokeFailure> {
    let client = Client::new(base).or_else(|e| fail("client", e.to_string()))?;
    let step = |name: &str, started: Instant, detail: String| {
        println!(
            "ok   {name:<22} {:>7.1} ms  {detail}",
            started.elapsed().as_secs_f64() * 1000.0
        );
    };

    let t = Instant::now();
    let h = client
        .get_ok("/health")
        .await
        .or_else(|e| fail("health", e.to_string()))?;
    if h["status"] != "healthy" {
        return fail("health", format!("status is {}", h["status"]));
    }
    step(
        "health",
        t,
        format!("node {}", h["node_id"].as_str().unwrap_or("?")),
    );

    let t = Instant::now();
    let s = client
        .get_ok("/api/consensus/stats")
        .await
        .or_else(|e| fail("stats", e.to_string()))?;
    if !s["height"].is_u64() {
        return fail("stats", "no height");
    }
    step(
        "stats",
        t,
        format!("height {} finalized {}", s["height"], s["finalized_height"]),
    );

    let t = Instant::now();
    let network = network_of(&client)
        .await
        .or_else(|e| fail("genesis", e.to_string()))?;
    step("genesis", t, format!("chain {}", network.chain_id));

    let t = Instant::now();
    let tipset = client
        .get_ok("/api/consensus/tipset")
        .await
        .or_else(|e| fail("tipset", e.to_string()))?;
    if tipset["count"].as_u64().unwrap_or(0) == 0 {
        return fail("tipset", "no tips");
    }
    step("tipset", t, format!("{} tip(s)", tipset["count"]));

    let t = Instant::now();
    let key = Keypair::generate();
    let (att, digest) = AttestSpec::sample("node0-smoke")
        .sign(&network, &key)
        .or_else(|e| fail("submit", e.to_string()))?;
    let a = crate::attest::submit(&client, &att)
        .await
        .or_else(|e| fail("submit", e.to_string()))?;
    if a.status != 201 || a.body["attestation_id"] != digest.to_hex() {
        return fail("submit", format!("answered {}: {}", a.status, a.body));
    }
    step("submit", t, format!("id {digest}"));

    let t = Instant::now();
    let again = crate::attest::submit(&client, &att)
        .await
        .or_else(|e| fail("resubmit", e.to_string()))?;
    if again.status != 200 || again.body["attestation_id"] != digest.to_hex() {
        return fail(
            "resubmit",
            format!(
                "expected 200 with the same id, got {}: {}",
                again.status, again.body
            ),
        );
    }
    step("resubmit (idempotent)", t, String::new());

    let t = Instant::now();
    let path = format!("/api/validator/attestation/{digest}");
    let record = loop {
        let r = client
            .get_ok(&path)
            .await
            .or_else(|e| fail("read-back", e.to_string()))?;
        if r["status"] == "finalized" {
            break r;
        }
        if t.elapsed() > finality_timeout {
            return fail(
                "finality",
                format!("still {} after {:?}", r["status"], finality_timeout),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    step(
        "finalized",
        t,
        format!("block height {}", record["block"]["height"]),
    );

    let t = Instant::now();
    check_proof(&client, &digest, &record).await?;
    step(
        "inclusion proof",
        t,
        "verified against the block's att_root".into(),
    );
    Ok(())
}

async fn check_proof(client: &Client, digest: &Hash32, record: &Value) -> Result<(), SmokeFailure> {
    const STEP: &str = "inclusion proof";
    let proof: InclusionProof = serde_json::from_value(record["proof"].clone())
        .or_else(|e| fail(STEP, format!("no proof: {e}")))?;
    let block_hash = record["block"]["hash"].as_str().unwrap_or_default();
    let block = client
        .get_ok(&format!("/api/consensus/block/{block_hash}"))
        .await
        .or_else(|e| fail(STEP, e.to_string()))?;
    let header: BlockHeader = serde_json::from_value(block["header"].clone())
        .or_else(|e| fail(STEP, format!("block header: {e}")))?;
    let recomputed = header.hash().or_else(|e| fail(STEP, e.to_string()))?;
    if recomputed.to_hex() != block_hash {
        return fail(STEP, "the block's header does not hash to its hash");
    }
    if proof.tree_size != header.att_count {
        return fail(STEP, "tree_size differs from the block's att_count");
    }
    if !proof.verify(digest, &header.att_root) {
        return fail(STEP, "the proof does not lead to the block's att_root");
    }
    if block["finalized"] != true {
        return fail(STEP, "the block is not marked finalized");
    }
    Ok(())
}
