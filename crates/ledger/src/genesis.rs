//! The genesis file and the genesis block every node derives from it (docs/protocol.md
//! §3.1).

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::block::{Block, BlockHeader, BLOCK_VERSION};
use crate::canonical::{to_canonical_bytes, CanonicalError};
use crate::crypto::PublicKey;
use crate::hash::Hash32;
use crate::merkle;
use crate::params::{NetworkAnchor, DEFAULT_CHAIN_ID, DEFAULT_GENESIS_MERKLE_ROOT};

/// A validator of the initial set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub pubkey_ed25519: PublicKey,
    pub stake_bond: u64,
    /// Base URL of the validator's node (`http://127.0.0.1:8080`).
    pub network_address: String,
}

impl GenesisValidator {
    pub fn validator_id(&self) -> Hash32 {
        self.pubkey_ed25519.validator_id()
    }
}

/// The genesis document. Every node with the same file computes the same genesis hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    /// RFC 3339.
    pub genesis_time: String,
    pub genesis_merkle_root: Hash32,
    pub validators: Vec<GenesisValidator>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis file is not valid: {0}")]
    Parse(String),
    #[error("genesis_time is not an RFC 3339 timestamp at or after 1970")]
    Time,
    #[error("genesis needs at least one validator")]
    NoValidators,
    #[error("validator {0} appears twice")]
    DuplicateValidator(String),
    #[error("validator {0} key is not a usable Ed25519 key (not a point, or small-order)")]
    BadKey(String),
    #[error("validator {0} stake_bond is larger than 2^53 - 1")]
    StakeTooLarge(String),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

impl Genesis {
    /// A one-validator genesis with the default chain id and merkle root.
    pub fn single(validator: PublicKey, network_address: &str, genesis_time: &str) -> Genesis {
        Genesis {
            chain_id: DEFAULT_CHAIN_ID.into(),
            genesis_time: genesis_time.into(),
            genesis_merkle_root: DEFAULT_GENESIS_MERKLE_ROOT.parse().unwrap_or_default(),
            validators: vec![GenesisValidator {
                pubkey_ed25519: validator,
                stake_bond: 0,
                network_address: network_address.into(),
            }],
        }
    }

    /// Parses and checks a genesis file.
    pub fn from_json(bytes: &[u8]) -> Result<Genesis, GenesisError> {
        let g: Genesis =
            serde_json::from_slice(bytes).map_err(|e| GenesisError::Parse(e.to_string()))?;
        g.check()?;
        Ok(g)
    }

    pub fn check(&self) -> Result<(), GenesisError> {
        self.genesis_time_ms()?;
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        let mut ids: Vec<_> = self.validators.iter().map(|v| v.validator_id()).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(GenesisError::DuplicateValidator(w[0].to_hex()));
        }
        for v in &self.validators {
            v.pubkey_ed25519
                .check_point()
                .map_err(|_| GenesisError::BadKey(v.validator_id().to_hex()))?;
            // Hashed with RFC 8785: larger integers would be rounded.
            if v.stake_bond > crate::attestation::schema::MAX_SAFE_INTEGER {
                return Err(GenesisError::StakeTooLarge(v.validator_id().to_hex()));
            }
        }
        Ok(())
    }

    pub fn genesis_time_ms(&self) -> Result<u64, GenesisError> {
        let t =
            OffsetDateTime::parse(&self.genesis_time, &Rfc3339).map_err(|_| GenesisError::Time)?;
        u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| GenesisError::Time)
    }

    /// BLAKE3 of the document's RFC 8785 bytes.
    pub fn digest(&self) -> Result<Hash32, CanonicalError> {
        Ok(Hash32::digest(&to_canonical_bytes(self)?))
    }

    pub fn anchor(&self) -> NetworkAnchor {
        NetworkAnchor {
            chain_id: self.chain_id.clone(),
            genesis_merkle_root: self.genesis_merkle_root,
        }
    }

    /// Height 0, no parents, no attestations (att_root is the empty tree's root), proposed
    /// by no validator: the `proposer` field carries the genesis document's digest, so the
    /// genesis hash commits to the whole file, validators included. Unsigned.
    pub fn block(&self) -> Result<Block, GenesisError> {
        let header = BlockHeader {
            version: BLOCK_VERSION,
            chain_id: self.chain_id.clone(),
            epoch: 0,
            height: 0,
            parents: vec![],
            att_root: merkle::root(&[]),
            att_count: 0,
            entries_root: merkle::root(&[]),
            entries_count: 0,
            proposer: self.digest()?,
            timestamp_ms: self.genesis_time_ms()?,
        };
        Ok(Block {
            hash: header.hash()?,
            header,
            signature: None,
            attestation_ids: vec![],
            entry_ids: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn genesis() -> Genesis {
        Genesis::single(
            Keypair::from_seed([9; 32]).public(),
            "http://127.0.0.1:8080",
            "2026-01-01T00:00:00Z",
        )
    }

    #[test]
    fn genesis_hash_is_deterministic_and_commits_to_validators() {
        let g = genesis();
        let text = serde_json::to_vec_pretty(&g).unwrap();
        let again = Genesis::from_json(&text).unwrap();
        assert_eq!(g.block().unwrap().hash, again.block().unwrap().hash);
        let mut other = g.clone();
        other.validators[0].stake_bond = 1;
        assert_ne!(g.block().unwrap().hash, other.block().unwrap().hash);
        let b = g.block().unwrap();
        b.check_integrity().unwrap();
        assert_eq!(b.header.timestamp_ms, 1_767_225_600_000);
    }

    #[test]
    fn bad_genesis_files() {
        let mut g = genesis();
        g.validators.push(g.validators[0].clone());
        assert!(matches!(
            g.check(),
            Err(GenesisError::DuplicateValidator(_))
        ));
        let mut g = genesis();
        g.validators.clear();
        assert!(matches!(g.check(), Err(GenesisError::NoValidators)));
        let mut g = genesis();
        g.genesis_time = "soon".into();
        assert!(matches!(g.check(), Err(GenesisError::Time)));
        assert!(Genesis::from_json(b"{\"chain_id\":1}").is_err());
    }
}
