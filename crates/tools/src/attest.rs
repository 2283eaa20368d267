//! Building signed attestations for a network (`node0 attest`, the smoke test, load
//! generation).

use std::collections::BTreeMap;

use bizra_ledger::attestation::builder::Draft;
use bizra_ledger::attestation::Attestation;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::client::{Client, ClientError};

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the node's genesis answer lacks {0}")]
    Genesis(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// The anchor values of the network a node serves, from `/api/consensus/genesis`.
pub async fn network_of(client: &Client) -> Result<NetworkAnchor, AttestError> {
    let g = client.get_ok("/api/consensus/genesis").await?;
    let chain_id = g["chain_id"]
        .as_str()
        .ok_or(AttestError::Genesis("chain_id"))?
        .to_string();
    let genesis_merkle_root = g["genesis_merkle_root"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(AttestError::Genesis("genesis_merkle_root"))?;
    Ok(NetworkAnchor {
        chain_id,
        genesis_merkle_root,
    })
}

/// A fresh random nonce of 32 bytes, as 64 hex digits.
pub fn random_nonce() -> String {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // Unique enough for a nonce even without the OS source: time and address.
        let t = OffsetDateTime::now_utc().unix_timestamp_nanos();
        b[..16].copy_from_slice(&t.to_le_bytes());
    }
    hex::encode(b)
}

/// What `node0 attest` takes from flags.
#[derive(Debug, Clone)]
pub struct AttestSpec {
    pub attester_id: String,
    pub dimensions: BTreeMap<String, f64>,
    /// Equal weights over the dimensions when empty.
    pub weights: BTreeMap<String, f64>,
    pub pack_sha256: Option<Hash32>,
    /// Hours back from now that the work started.
    pub window_hours: u32,
    pub nonce: Option<String>,
    pub methodology_ref: Option<String>,
}

impl AttestSpec {
    /// The attestation the client tools make up for themselves (smoke test, load
    /// generator, pool probe): two scored dimensions, a one-hour window ending now, a fresh
    /// nonce, the evidence hash derived from it. `attester_id` names the tool.
    pub fn sample(attester_id: &str) -> AttestSpec {
        AttestSpec {
            attester_id: attester_id.into(),
            dimensions: [("quality".to_string(), 0.8), ("reach".to_string(), 0.4)].into(),
            weights: [("quality".to_string(), 0.75), ("reach".to_string(), 0.25)].into(),
            pack_sha256: None,
            window_hours: 1,
            nonce: None,
            methodology_ref: None,
        }
    }

    pub fn sign(
        &self,
        network: &NetworkAnchor,
        key: &Keypair,
    ) -> Result<(Attestation, Hash32), AttestError> {
        if self.dimensions.is_empty() {
            return Err(AttestError::Invalid(
                "at least one --dimension name=value".into(),
            ));
        }
        let weights = if self.weights.is_empty() {
            let w = 1.0 / self.dimensions.len() as f64;
            self.dimensions.keys().map(|k| (k.clone(), w)).collect()
        } else {
            self.weights.clone()
        };
        let end = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        let start = end - Duration::hours(self.window_hours.max(1) as i64);
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let nonce = self.nonce.clone().unwrap_or_else(random_nonce);
        let pack = self
            .pack_sha256
            .unwrap_or_else(|| Hash32::digest(nonce.as_bytes()));
        let draft = Draft {
            network: network.clone(),
            attester_id: self.attester_id.clone(),
            pack_sha256: pack,
            dimensions: self.dimensions.clone(),
            weights,
            time_window: [fmt(start), fmt(end)],
            nonce,
            resources: None,
            benchmarks: None,
            methodology_ref: self.methodology_ref.clone(),
        };
        draft
            .sign(key)
            .map_err(|e| AttestError::Invalid(e.to_string()))
    }
}

/// Parses `name=value`.
pub fn parse_pair(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not name=value"))?;
    let v: f64 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
    Ok((k.to_string(), v))
}

/// Submits and returns the answer.
pub async fn submit(
    client: &Client,
    att: &Attestation,
) -> Result<crate::client::Answer, AttestError> {
    let body: Value = serde_json::to_value(att).map_err(|e| AttestError::Invalid(e.to_string()))?;
    Ok(client
        .post("/api/validator/attestation/submit", &body)
        .await?)
}
