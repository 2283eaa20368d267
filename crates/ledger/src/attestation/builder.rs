//! Making a valid signed attestation: for clients (`node0 attest`), load generators and
//! tests.

use super::types::{
    Anchor, Attestation, Attester, Benchmarks, Evidence, Measurement, NumberMap, Resources,
    SignatureField, VERSION,
};
use crate::canonical::CanonicalError;
use crate::crypto::{Keypair, POI_TAG};
use crate::hash::Hash32;
use crate::params::NetworkAnchor;
use crate::weight::impact_score;

/// Sets the attester key and signature of `att` with `key`; returns the digest (id).
pub fn sign(att: &mut Attestation, key: &Keypair) -> Result<Hash32, CanonicalError> {
    att.attester.pubkey_ed25519 = key.public().to_string();
    att.signature.alg = "ed25519".into();
    att.signature.sig_base16.clear();
    let digest = att.digest()?;
    att.signature.sig_base16 = key.sign_tagged(POI_TAG, &digest).to_hex();
    Ok(digest)
}

/// The content of an attestation; [`Draft::sign`] computes the impact score and signs.
#[derive(Debug, Clone)]
pub struct Draft {
    pub network: NetworkAnchor,
    pub attester_id: String,
    pub pack_sha256: Hash32,
    pub dimensions: NumberMap,
    pub weights: NumberMap,
    pub time_window: [String; 2],
    pub nonce: String,
    pub resources: Option<Resources>,
    pub benchmarks: Option<Benchmarks>,
    pub methodology_ref: Option<String>,
}

impl Draft {
    pub fn sign(self, key: &Keypair) -> Result<(Attestation, Hash32), CanonicalError> {
        let impact = impact_score(&self.dimensions, &self.weights);
        let mut att = Attestation {
            version: VERSION.into(),
            anchor: Anchor {
                chain_id: self.network.chain_id,
                genesis_merkle_root: self.network.genesis_merkle_root.to_hex(),
                block_ref: None,
            },
            attester: Attester {
                id: self.attester_id,
                pubkey_ed25519: String::new(),
            },
            resources: self.resources,
            evidence: Evidence {
                pack_sha256: self.pack_sha256.to_hex(),
                pack_bytes: None,
                files_processed: None,
                redactions_count: None,
                methodology_ref: self.methodology_ref,
            },
            measurement: Measurement {
                dimensions: self.dimensions,
                weights: self.weights,
                impact_score: impact,
            },
            benchmarks: self.benchmarks,
            time_window: self.time_window,
            nonce: self.nonce,
            signature: SignatureField {
                alg: "ed25519".into(),
                sig_base16: String::new(),
            },
        };
        let digest = sign(&mut att, key)?;
        Ok((att, digest))
    }
}
