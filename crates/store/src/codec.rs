//! Conversions between domain values and column values. SQL integers are i64: u64 values
//! are range-checked going in (the caller's mistake) and coming out (a corrupt row).

use bizra_ledger::crypto::{PublicKey, SignatureBytes};
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::Hash32;

use crate::error::StoreError;
use crate::types::NewAttestation;

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is beyond i64")))
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::corrupt(format!("{what} is negative ({v})")))
}

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(bytes)
        .map_err(|_| StoreError::corrupt(format!("{what} has {} bytes, not {N}", bytes.len())))
}

pub(crate) fn to_hash(bytes: &[u8], what: &str) -> Result<Hash32, StoreError> {
    fixed::<32>(bytes, what).map(Hash32)
}

pub(crate) fn to_pubkey(bytes: &[u8], what: &str) -> Result<PublicKey, StoreError> {
    fixed::<32>(bytes, what).map(PublicKey)
}

pub(crate) fn to_signature(bytes: &[u8], what: &str) -> Result<SignatureBytes, StoreError> {
    fixed::<64>(bytes, what).map(SignatureBytes)
}

/// Digests in order, 32 bytes each, as one blob.
pub(crate) fn pack_hashes(hashes: &[Hash32]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn unpack_hashes(bytes: &[u8], what: &str) -> Result<Vec<Hash32>, StoreError> {
    let chunks = bytes.chunks_exact(32);
    if !chunks.remainder().is_empty() {
        return Err(StoreError::corrupt(format!(
            "{what} has {} bytes, not a multiple of 32",
            bytes.len()
        )));
    }
    chunks.map(|c| to_hash(c, what)).collect()
}

/// Refuses an attestation the tables cannot hold (a NaN or infinite impact score, a time
/// beyond i64), before any transaction, so that one bad item is a clear error rather than
/// a rolled-back batch with a database message. Returns `received_at_ms` as stored.
pub(crate) fn received_at_column(item: &NewAttestation) -> Result<i64, StoreError> {
    if !item.impact_score.is_finite() {
        return Err(StoreError::Invalid(format!(
            "attestation {} impact_score is not finite",
            item.digest
        )));
    }
    to_i64(item.received_at_ms, "received_at_ms")
}

/// A quorum certificate as stored: the block it goes on and its JSON.
pub(crate) fn qc_column(qc: &QuorumCertificate) -> Result<(Hash32, String), StoreError> {
    serde_json::to_string(qc)
        .map(|json| (qc.block_hash, json))
        .map_err(|e| StoreError::Invalid(format!("qc: {e}")))
}

/// A quorum certificate as [`crate::Store::mark_certified`] stores it: the block it goes
/// on, its JSON, and `certified_at_ms`, checked before any transaction.
pub(crate) struct Certificate {
    pub block: Hash32,
    pub json: String,
    pub at: i64,
}

impl Certificate {
    pub(crate) fn new(qc: &QuorumCertificate, at_ms: u64) -> Result<Certificate, StoreError> {
        let (block, json) = qc_column(qc)?;
        Ok(Certificate {
            block,
            json,
            at: to_i64(at_ms, "certified_at_ms")?,
        })
    }
}

/// A registry entry's body as stored: its JSON text.
pub(crate) fn registry_body_column(body: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(body)
        .map_err(|e| StoreError::Invalid(format!("registry entry body: {e}")))
}

/// Wall-clock milliseconds, for bookkeeping columns such as `applied_at_ms`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Page sizes below 1 make no page; above [`crate::MAX_PAGE_LIMIT`] they are clamped.
pub(crate) fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, crate::MAX_PAGE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ranges() {
        assert_eq!(to_i64(7, "x"), Ok(7));
        assert!(matches!(to_i64(u64::MAX, "x"), Err(StoreError::Invalid(_))));
        assert_eq!(to_u64(7, "x"), Ok(7));
        assert!(matches!(to_u64(-1, "x"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn hash_blobs() {
        let hs: Vec<Hash32> = (0u8..5).map(|i| Hash32::digest(&[i])).collect();
        assert_eq!(unpack_hashes(&pack_hashes(&hs), "ids"), Ok(hs));
        assert_eq!(unpack_hashes(&[], "ids"), Ok(vec![]));
        assert!(unpack_hashes(&[0; 33], "ids").is_err());
        assert!(to_hash(&[0; 31], "h").is_err());
        assert!(to_signature(&[0; 63], "s").is_err());
    }

    #[test]
    fn attestations_the_tables_cannot_hold_are_refused() {
        let item = |impact_score: f64, received_at_ms: u64| NewAttestation {
            digest: Hash32::digest(b"a"),
            attester_pubkey: PublicKey([1; 32]),
            attester_id: "a".into(),
            nonce: "n".into(),
            body: Vec::new(),
            impact_score,
            received_at_ms,
        };
        assert_eq!(received_at_column(&item(0.5, 7)), Ok(7));
        for bad in [
            item(f64::NAN, 7),
            item(f64::INFINITY, 7),
            item(0.5, u64::MAX),
        ] {
            assert!(matches!(
                received_at_column(&bad),
                Err(StoreError::Invalid(_))
            ));
        }
    }
}
