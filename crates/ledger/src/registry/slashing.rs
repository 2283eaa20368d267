//! The slashing table (docs/protocol.md §3.5) and its exact integer application to a
//! record.

use serde::{Deserialize, Serialize};

use super::record::{ValidatorRecord, ValidatorStatus};
use crate::hash::Hash32;

/// Factors are in basis points so that ⌊x·f⌋ is computed exactly.
pub const BPS: u64 = 10_000;

/// The offenses of the slashing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Offense {
    #[serde(rename = "equivocation")]
    Equivocation,
    #[serde(rename = "fraudulent_poi")]
    FraudulentPoI,
    #[serde(rename = "censorship")]
    Censorship,
    #[serde(rename = "key_theft")]
    KeyTheft,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Penalty {
    /// Share of `poi_weight_micro` removed, in basis points.
    pub weight_bps: u64,
    /// Share of `stake_bond` removed, in basis points.
    pub bond_bps: u64,
    /// Subtracted from `rep_score`, stopping at 0.
    pub rep_penalty: u64,
    /// Epochs before the key may register again.
    pub quarantine_epochs: u64,
}

impl Offense {
    pub const ALL: [Offense; 4] = [
        Offense::Equivocation,
        Offense::FraudulentPoI,
        Offense::Censorship,
        Offense::KeyTheft,
    ];

    /// Weight factor / bond factor / rep penalty / quarantine epochs.
    pub const fn penalty(self) -> Penalty {
        let (weight_bps, bond_bps, rep_penalty, quarantine_epochs) = match self {
            Offense::Equivocation => (9_000, 10_000, 5_000, 4),
            Offense::FraudulentPoI => (7_000, 5_000, 3_000, 2),
            Offense::Censorship => (5_000, 3_000, 2_000, 2),
            Offense::KeyTheft => (9_500, 1_000, 500, 1),
        };
        Penalty {
            weight_bps,
            bond_bps,
            rep_penalty,
            quarantine_epochs,
        }
    }
}

/// What a slash took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlashReport {
    pub validator_id: Hash32,
    pub offense: Offense,
    pub weight_cut_micro: u64,
    pub bond_cut: u64,
    pub rep_cut: u64,
    pub quarantine_until: u64,
}

/// ⌊x·bps/10000⌋ in u128, so it neither overflows nor rounds. Never more than `x` while
/// `bps` ≤ 10000.
pub fn cut(x: u64, bps: u64) -> u64 {
    let c = (x as u128) * (bps.min(BPS) as u128) / (BPS as u128);
    // c ≤ x, so it fits.
    u64::try_from(c).unwrap_or(x)
}

/// Applies `offense` to `rec` at `current_epoch`. The caller has checked that `rec` is not
/// already Slashed.
pub(crate) fn apply(
    rec: &mut ValidatorRecord,
    offense: Offense,
    current_epoch: u64,
) -> SlashReport {
    let p = offense.penalty();
    let weight_cut_micro = cut(rec.poi_weight_micro, p.weight_bps);
    let bond_cut = cut(rec.stake_bond, p.bond_bps);
    let rep_cut = rec.rep_score.min(p.rep_penalty);
    rec.poi_weight_micro -= weight_cut_micro;
    rec.stake_bond -= bond_cut;
    rec.rep_score -= rep_cut;
    if rec.in_active_set() {
        // It leaves the active set now, whatever exit epoch it had planned.
        rec.epoch_exit = Some(current_epoch);
    }
    rec.status = ValidatorStatus::Slashed;
    let quarantine_until = current_epoch.saturating_add(p.quarantine_epochs);
    rec.quarantine_until = Some(quarantine_until);
    SlashReport {
        validator_id: rec.validator_id,
        offense,
        weight_cut_micro,
        bond_cut,
        rep_cut,
        quarantine_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn record(weight: u64, bond: u64, rep: u64) -> ValidatorRecord {
        let mut r = ValidatorRecord::new(
            Keypair::from_seed([1; 32]).public(),
            "http://n".into(),
            bond,
            ValidatorStatus::Active,
        );
        r.poi_weight_micro = weight;
        r.rep_score = rep;
        r
    }

    #[test]
    fn the_table_with_exact_numbers() {
        // weight 1_000_000 µ, bond 10_000, rep 6000, slashed at epoch 10.
        let expect = [
            (Offense::Equivocation, 100_000, 0, 1_000, 14),
            (Offense::FraudulentPoI, 300_000, 5_000, 3_000, 12),
            (Offense::Censorship, 500_000, 7_000, 4_000, 12),
            (Offense::KeyTheft, 50_000, 9_000, 5_500, 11),
        ];
        for (offense, weight, bond, rep, until) in expect {
            let mut r = record(1_000_000, 10_000, 6_000);
            let rep_before = r.rep_score;
            let report = apply(&mut r, offense, 10);
            assert_eq!(
                (r.poi_weight_micro, r.stake_bond, r.rep_score),
                (weight, bond, rep),
                "{offense:?}"
            );
            assert_eq!(r.status, ValidatorStatus::Slashed);
            assert_eq!(r.quarantine_until, Some(until));
            assert_eq!(r.epoch_exit, Some(10));
            assert_eq!(report.weight_cut_micro, 1_000_000 - weight);
            assert_eq!(report.bond_cut, 10_000 - bond);
            assert_eq!(report.rep_cut, rep_before - rep);
            assert_eq!(report.quarantine_until, until);
        }
    }

    #[test]
    fn cuts_are_floored_not_rounded() {
        // 999_999 · 0.9 = 899_999.1 → cut 899_999; 3 · 0.5 = 1.5 → cut 1; 7 · 0.3 = 2.1 → 2.
        let mut r = record(999_999, 3, 100);
        apply(&mut r, Offense::FraudulentPoI, 0);
        assert_eq!(r.poi_weight_micro, 999_999 - 699_999);
        assert_eq!(r.stake_bond, 2);
        assert_eq!(r.rep_score, 0);
        let mut r = record(999_999, 7, 100);
        apply(&mut r, Offense::Equivocation, 0);
        assert_eq!(r.poi_weight_micro, 100_000);
        assert_eq!(r.stake_bond, 0);
        let mut r = record(1, 7, 100);
        apply(&mut r, Offense::Censorship, 0);
        assert_eq!((r.poi_weight_micro, r.stake_bond), (1, 5));
    }

    #[test]
    fn no_overflow_at_the_top() {
        let mut r = record(u64::MAX, u64::MAX, u64::MAX);
        apply(&mut r, Offense::KeyTheft, u64::MAX);
        assert_eq!(
            r.poi_weight_micro,
            u64::MAX - (u64::MAX as u128 * 95 / 100) as u64
        );
        assert_eq!(r.stake_bond, u64::MAX - u64::MAX / 10);
        assert_eq!(r.quarantine_until, Some(u64::MAX));
        assert_eq!(cut(u64::MAX, BPS), u64::MAX);
    }

    #[test]
    fn a_pending_validator_keeps_no_exit_epoch() {
        let mut r = record(0, 0, 500);
        r.status = ValidatorStatus::Pending;
        apply(&mut r, Offense::Censorship, 3);
        assert_eq!(r.epoch_exit, None);
        assert_eq!(r.status, ValidatorStatus::Slashed);
    }

    #[test]
    fn offense_names() {
        let names: Vec<_> = Offense::ALL
            .iter()
            .map(|o| serde_json::to_string(o).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "\"equivocation\"",
                "\"fraudulent_poi\"",
                "\"censorship\"",
                "\"key_theft\""
            ]
        );
    }
}
