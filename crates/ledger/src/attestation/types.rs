//! The `poi-1.0` attestation as it travels (docs/protocol.md §2.1), and its canonical bytes
//! and digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::schema::{non_null, safe_u64, strict_map};
use crate::canonical::CanonicalError;
use crate::crypto::{tagged_message, POI_TAG};
use crate::hash::Hash32;

pub const VERSION: &str = "poi-1.0";

/// A named-number map (dimensions, weights, benchmark values). Keys are unique, 1–64
/// characters, at most 64 entries; enforced while parsing.
pub type NumberMap = BTreeMap<String, f64>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub version: String,
    pub anchor: Anchor,
    pub attester: Attester,
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub resources: Option<Resources>,
    pub evidence: Evidence,
    pub measurement: Measurement,
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub benchmarks: Option<Benchmarks>,
    pub time_window: [String; 2],
    pub nonce: String,
    pub signature: SignatureField,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub chain_id: String,
    pub genesis_merkle_root: String,
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub block_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attester {
    pub id: String,
    pub pubkey_ed25519: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_cores: Option<u32>,
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub ram_gb: Option<u32>,
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub gpu_vram_gb: Option<u32>,
    #[serde(
        default,
        deserialize_with = "safe_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub wallclock_sec: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub pack_sha256: String,
    #[serde(
        default,
        deserialize_with = "safe_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub pack_bytes: Option<u64>,
    #[serde(
        default,
        deserialize_with = "safe_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub files_processed: Option<u64>,
    #[serde(
        default,
        deserialize_with = "safe_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub redactions_count: Option<u64>,
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub methodology_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    #[serde(deserialize_with = "strict_map")]
    pub dimensions: NumberMap,
    #[serde(deserialize_with = "strict_map")]
    pub weights: NumberMap,
    #[serde(deserialize_with = "super::schema::safe_f64")]
    pub impact_score: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmarks {
    #[serde(
        default,
        deserialize_with = "super::schema::strict_map_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pre: Option<NumberMap>,
    #[serde(
        default,
        deserialize_with = "super::schema::strict_map_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub post: Option<NumberMap>,
    #[serde(
        default,
        deserialize_with = "super::schema::safe_f64_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub delta: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureField {
    pub alg: String,
    pub sig_base16: String,
}

impl Attestation {
    /// The RFC 8785 bytes of the attestation with `sig_base16` set to `""`
    /// (docs/protocol.md §2.2).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        super::canonical::write(self, super::canonical::Signature::Blank)
    }

    /// BLAKE3-256 of the canonical bytes: the attestation's id.
    pub fn digest(&self) -> Result<Hash32, CanonicalError> {
        Ok(Hash32::digest(&self.canonical_bytes()?))
    }

    /// The message the attester signs: `b"bizra/poi/v1"` ‖ digest.
    pub fn signing_message(digest: &Hash32) -> Vec<u8> {
        tagged_message(POI_TAG, digest)
    }

    /// The canonical bytes of the whole attestation, signature included: the form in
    /// which it is stored and served.
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, CanonicalError> {
        super::canonical::write(self, super::canonical::Signature::Included)
    }
}

#[cfg(test)]
mod tests {
    use crate::attestation::sample::signed_sample;
    use crate::canonical::to_canonical_bytes;

    #[test]
    fn canonical_bytes_are_the_attestation_with_a_blank_signature() {
        let (att, _) = signed_sample(1);
        let mut blank = att.clone();
        blank.signature.sig_base16.clear();
        assert_eq!(
            att.canonical_bytes().unwrap(),
            to_canonical_bytes(&blank).unwrap()
        );
        // And the absent optionals stay absent.
        let text = String::from_utf8(att.canonical_bytes().unwrap()).unwrap();
        assert!(!text.contains("null"));
    }
}
