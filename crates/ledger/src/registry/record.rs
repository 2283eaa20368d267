//! A validator's record in the registry and its status (docs/protocol.md §3.5).

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::hash::Hash32;
use crate::params::INITIAL_REP_SCORE;
use crate::weight;

/// Where a validator is in its life.
///
/// Pending → Active (at an epoch boundary) → Exiting → Exited; any state but Slashed →
/// Slashed. Exited and Slashed (after quarantine) may register again and become Pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidatorStatus {
    Pending,
    Active,
    Exiting,
    Exited,
    Slashed,
}

impl ValidatorStatus {
    /// Active and Exiting validators form the active set: they vote and their weight
    /// counts toward finality.
    pub fn in_active_set(self) -> bool {
        matches!(self, ValidatorStatus::Active | ValidatorStatus::Exiting)
    }
}

/// One validator as every node derives it from genesis and the ledger entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorRecord {
    /// BLAKE3 of the public key bytes.
    pub validator_id: Hash32,
    pub pubkey_ed25519: PublicKey,
    /// Base URL of the validator's node.
    pub network_address: String,
    pub status: ValidatorStatus,
    /// Proof-of-Impact weight in millionths. An integer so that slashing's ⌊w·f⌋ is exact.
    pub poi_weight_micro: u64,
    /// 0..=100000; a new validator starts at 500.
    pub rep_score: u64,
    pub stake_bond: u64,
    /// Epoch of the last activation.
    pub epoch_join: Option<u64>,
    /// Epoch the validator leaves (Exiting) or left (Exited, Slashed) the active set.
    pub epoch_exit: Option<u64>,
    pub last_seen_slot: u64,
    /// Set by slashing: the first epoch at which the key may register again.
    pub quarantine_until: Option<u64>,
}

impl ValidatorRecord {
    /// A fresh record with the initial reputation and no impact yet.
    pub fn new(
        pubkey_ed25519: PublicKey,
        network_address: String,
        stake_bond: u64,
        status: ValidatorStatus,
    ) -> ValidatorRecord {
        ValidatorRecord {
            validator_id: pubkey_ed25519.validator_id(),
            pubkey_ed25519,
            network_address,
            status,
            poi_weight_micro: 0,
            rep_score: INITIAL_REP_SCORE,
            stake_bond,
            epoch_join: None,
            epoch_exit: None,
            last_seen_slot: 0,
            quarantine_until: None,
        }
    }

    /// Impact as the real number the weight formula takes.
    pub fn poi_weight(&self) -> f64 {
        self.poi_weight_micro as f64 / 1e6
    }

    /// ⌊100 + 10·impact + 0.05·rep + 0.02·√bond⌋ (docs/protocol.md §2.4), whatever the
    /// status; the registry counts it only for the active set.
    pub fn effective_weight(&self) -> u64 {
        weight::effective_weight(self.poi_weight(), self.rep_score, self.stake_bond)
    }

    pub fn in_active_set(&self) -> bool {
        self.status.in_active_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn record() -> ValidatorRecord {
        ValidatorRecord::new(
            Keypair::from_seed([1; 32]).public(),
            "http://127.0.0.1:8080".into(),
            10_000,
            ValidatorStatus::Active,
        )
    }

    #[test]
    fn weight_uses_micro_impact() {
        let mut r = record();
        r.rep_score = 10_000;
        r.poi_weight_micro = 50_000_000;
        assert_eq!(r.effective_weight(), 1102);
        r.poi_weight_micro = 876_000;
        assert_eq!(r.effective_weight(), 610);
    }

    #[test]
    fn serde_names() {
        let r = record();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "active");
        assert_eq!(v["rep_score"], 500);
        assert_eq!(v["validator_id"], r.pubkey_ed25519.validator_id().to_hex());
        assert!(v["quarantine_until"].is_null());
        let back: ValidatorRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        for (s, name) in [
            (ValidatorStatus::Pending, "\"pending\""),
            (ValidatorStatus::Exiting, "\"exiting\""),
            (ValidatorStatus::Exited, "\"exited\""),
            (ValidatorStatus::Slashed, "\"slashed\""),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), name);
        }
    }

    #[test]
    fn active_set_membership() {
        use ValidatorStatus::*;
        let members: Vec<_> = [Pending, Active, Exiting, Exited, Slashed]
            .into_iter()
            .filter(|s| s.in_active_set())
            .collect();
        assert_eq!(members, vec![Active, Exiting]);
    }
}
