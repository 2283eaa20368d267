//! `node0 verify-compression`: the seed's `verify_compression.mjs`, on a realistic
//! payload. It builds a ~612 KiB page of real signed attestations exactly as
//! `GET /api/validator/attestations` serializes it, compresses it with each codec and
//! level the cache could use, checks every round trip, and reports sizes, reductions and
//! speeds as JSON, with the codec the cache should use.
//!
//! The choice rule (the "cache codec" gate of BENCHMARKS.md): the cheapest codec whose
//! reduction is within one point of Brotli q5's at ≥ 5× its compression speed, else the one
//! with the best reduction.

use std::time::Instant;

use bizra_ledger::attestation::builder::Draft;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;
use bizra_wire::attestation::{AttestationPage, AttestationView, BlockPlace};
use bizra_wire::Codec;
use serde::Serialize;
use serde_json::value::RawValue;

/// The seed's payload size: 626,837 bytes.
pub const TARGET_BYTES: usize = 626_837;

#[derive(Debug, Serialize)]
pub struct CodecResult {
    pub codec: String,
    pub size_bytes: usize,
    /// Percent smaller than the raw payload.
    pub reduction_pct: f64,
    pub compress_ms: f64,
    pub compress_mb_s: f64,
    pub decompress_mb_s: f64,
    pub roundtrip_ok: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub raw_size_bytes: usize,
    pub attestations: usize,
    pub brotli_size_bytes: usize,
    pub gzip_size_bytes: usize,
    pub zstd_size_bytes: usize,
    pub brotli_compression_ratio: String,
    pub gzip_compression_ratio: String,
    pub zstd_compression_ratio: String,
    pub brotli_roundtrip_ok: bool,
    pub gzip_roundtrip_ok: bool,
    pub zstd_roundtrip_ok: bool,
    pub winner: String,
    pub rule: &'static str,
    pub codecs: Vec<CodecResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("building the payload: {0}")]
    Payload(String),
    #[error("{codec}: {message}")]
    Codec { codec: String, message: String },
}

/// A page of `n` signed attestations as the list endpoint returns it.
pub fn payload(n: usize) -> Result<Vec<u8>, VerifyError> {
    let network = NetworkAnchor::default();
    let mut items = Vec::with_capacity(n);
    let block = Hash32::digest(b"block");
    for i in 0..n {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let key = Keypair::from_seed(seed);
        let q = (i % 97) as f64 / 100.0;
        let draft = Draft {
            network: network.clone(),
            attester_id: format!("lab-{:04}", i % 250),
            pack_sha256: Hash32::digest(&(i as u64).to_be_bytes()),
            dimensions: [
                ("accuracy".to_string(), q),
                ("coverage".to_string(), 1.0 - q),
                ("reproducibility".to_string(), 0.5),
            ]
            .into(),
            weights: [
                ("accuracy".to_string(), 0.5),
                ("coverage".to_string(), 0.3),
                ("reproducibility".to_string(), 0.2),
            ]
            .into(),
            time_window: [
                format!("2026-11-{:02}T00:00:00Z", 1 + i % 27),
                format!("2026-11-{:02}T12:00:00Z", 1 + i % 27),
            ],
            nonce: hex::encode(Hash32::digest(&(i as u64).to_le_bytes()).0),
            resources: None,
            benchmarks: None,
            methodology_ref: Some("https://bizra.dev/methodology/poi-1.0".into()),
        };
        let (att, digest) = draft
            .sign(&key)
            .map_err(|e| VerifyError::Payload(e.to_string()))?;
        let body = att
            .to_canonical_json()
            .map_err(|e| VerifyError::Payload(e.to_string()))?;
        let raw = String::from_utf8(body).map_err(|e| VerifyError::Payload(e.to_string()))?;
        items.push(AttestationView {
            attestation_id: digest.to_hex(),
            attestation: RawValue::from_string(raw)
                .map_err(|e| VerifyError::Payload(e.to_string()))?,
            status: "finalized".into(),
            received_at: format!(
                "2026-11-28T10:{:02}:{:02}.{:03}Z",
                (i / 60) % 60,
                i % 60,
                i % 1000
            ),
            block: Some(BlockPlace {
                hash: block.to_hex(),
                height: 1 + (i / 4096) as u64,
                att_root: Hash32::digest(b"root").to_hex(),
            }),
            proof: None,
            log_index: Some(i as u64),
            rejected_by: None,
        });
    }
    let page = AttestationPage {
        items,
        next_cursor: Some("c1_0000000000001f40".into()),
    };
    serde_json::to_vec(&page).map_err(|e| VerifyError::Payload(e.to_string()))
}

/// Grows the page until it reaches [`TARGET_BYTES`].
pub fn realistic_payload() -> Result<(Vec<u8>, usize), VerifyError> {
    let one = payload(1)?.len().max(1);
    let mut n = TARGET_BYTES / one;
    loop {
        let p = payload(n)?;
        if p.len() >= TARGET_BYTES || n > 100_000 {
            return Ok((p, n));
        }
        n += 1 + (TARGET_BYTES - p.len()) / one;
    }
}

fn measure(codec: Codec, raw: &[u8]) -> Result<CodecResult, VerifyError> {
    let err = |e: &dyn std::fmt::Display| VerifyError::Codec {
        codec: codec.name(),
        message: e.to_string(),
    };
    // Enough repetitions for a stable time, bounded so slow levels do not take minutes.
    let mut runs = 0u32;
    let started = Instant::now();
    let mut out = Vec::new();
    while runs < 3 || (started.elapsed().as_millis() < 400 && runs < 200) {
        out = codec.compress(raw).map_err(|e| err(&e))?;
        runs += 1;
    }
    let compress_s = started.elapsed().as_secs_f64() / runs as f64;
    let started = Instant::now();
    let mut back = Vec::new();
    let mut druns = 0u32;
    while druns < 3 || (started.elapsed().as_millis() < 200 && druns < 500) {
        back = codec.decompress(&out).map_err(|e| err(&e))?;
        druns += 1;
    }
    let decompress_s = started.elapsed().as_secs_f64() / druns as f64;
    let mb = raw.len() as f64 / 1e6;
    Ok(CodecResult {
        codec: codec.name(),
        size_bytes: out.len(),
        reduction_pct: 100.0 * (1.0 - out.len() as f64 / raw.len() as f64),
        compress_ms: compress_s * 1000.0,
        compress_mb_s: mb / compress_s,
        decompress_mb_s: mb / decompress_s,
        roundtrip_ok: back == raw,
    })
}

/// Every candidate codec, Brotli q5 and gzip-6 (the seed's) among them.
pub fn candidates() -> Vec<Codec> {
    let mut v: Vec<Codec> = [1, 3, 6, 9, 19]
        .into_iter()
        .map(|level| Codec::Zstd { level })
        .collect();
    v.extend(
        [1, 5, 9, 11]
            .into_iter()
            .map(|quality| Codec::Brotli { quality }),
    );
    v.extend([1, 6, 9].into_iter().map(|level| Codec::Gzip { level }));
    v
}

/// Applies the choice rule to measured results.
pub fn choose(results: &[CodecResult]) -> Option<&CodecResult> {
    let ok: Vec<&CodecResult> = results.iter().filter(|r| r.roundtrip_ok).collect();
    let reference = ok.iter().find(|r| r.codec == "brotli-q5")?;
    let fast_enough = ok
        .iter()
        .filter(|r| {
            r.reduction_pct >= reference.reduction_pct - 1.0
                && r.compress_mb_s >= 5.0 * reference.compress_mb_s
        })
        .max_by(|a, b| a.compress_mb_s.total_cmp(&b.compress_mb_s));
    fast_enough
        .or_else(|| {
            ok.iter()
                .filter(|r| r.reduction_pct > reference.reduction_pct)
                .max_by(|a, b| a.reduction_pct.total_cmp(&b.reduction_pct))
        })
        .or(Some(reference))
        .copied()
}

pub fn run() -> Result<Report, VerifyError> {
    let (raw, n) = realistic_payload()?;
    let codecs = candidates()
        .into_iter()
        .map(|c| measure(c, &raw))
        .collect::<Result<Vec<_>, _>>()?;
    let find = |name: &str| codecs.iter().find(|r| r.codec == name);
    let pct =
        |r: Option<&CodecResult>| r.map_or(String::new(), |r| format!("{:.2}%", r.reduction_pct));
    let brotli = find("brotli-q5");
    let gzip = find("gzip-6");
    let zstd = find("zstd-3");
    let winner = choose(&codecs).map_or("none".into(), |r| r.codec.clone());
    Ok(Report {
        raw_size_bytes: raw.len(),
        attestations: n,
        brotli_size_bytes: brotli.map_or(0, |r| r.size_bytes),
        gzip_size_bytes: gzip.map_or(0, |r| r.size_bytes),
        zstd_size_bytes: zstd.map_or(0, |r| r.size_bytes),
        brotli_compression_ratio: pct(brotli),
        gzip_compression_ratio: pct(gzip),
        zstd_compression_ratio: pct(zstd),
        brotli_roundtrip_ok: brotli.is_some_and(|r| r.roundtrip_ok),
        gzip_roundtrip_ok: gzip.is_some_and(|r| r.roundtrip_ok),
        zstd_roundtrip_ok: zstd.is_some_and(|r| r.roundtrip_ok),
        winner,
        rule: "fastest codec within 1 point of brotli-q5's reduction at >= 5x its compression speed; else the best reduction",
        codecs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(codec: &str, reduction: f64, speed: f64) -> CodecResult {
        CodecResult {
            codec: codec.into(),
            size_bytes: 0,
            reduction_pct: reduction,
            compress_ms: 0.0,
            compress_mb_s: speed,
            decompress_mb_s: 0.0,
            roundtrip_ok: true,
        }
    }

    #[test]
    fn the_rule() {
        let r = vec![
            result("brotli-q5", 83.4, 100.0),
            result("zstd-3", 82.8, 700.0),
            result("zstd-1", 80.0, 900.0),
            result("gzip-6", 79.6, 80.0),
        ];
        assert_eq!(choose(&r).unwrap().codec, "zstd-3");
        // Too slow: the best reduction wins instead.
        let r = vec![
            result("brotli-q5", 83.4, 100.0),
            result("zstd-3", 82.8, 300.0),
            result("brotli-q11", 85.0, 5.0),
        ];
        assert_eq!(choose(&r).unwrap().codec, "brotli-q11");
    }

    #[test]
    fn payload_looks_like_the_list_endpoint() {
        let p = payload(3).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 3);
        assert_eq!(v["items"][0]["attestation"]["version"], "poi-1.0");
        assert!(v["next_cursor"].is_string());
    }
}
