//! The registry: validator records by id and the deterministic transitions that change them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::entry::{ExitRequest, Registration, RegistryEntry};
use super::error::RegistryError;
use super::evidence::Evidence;
use super::record::{ValidatorRecord, ValidatorStatus};
use super::slashing::{self, Offense, SlashReport};
use crate::crypto::PublicKey;
use crate::genesis::Genesis;
use crate::hash::Hash32;
use crate::params::{
    EXIT_DELAY_EPOCHS, INITIAL_REP_SCORE, MAX_ACTIVE_VALIDATORS, MAX_REP_SCORE, REP_DECAY_DEN,
    REP_DECAY_NUM,
};

/// What an accepted entry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Applied {
    /// A new key, or an Exited or Slashed key after its quarantine, is now Pending.
    Registered {
        validator_id: Hash32,
    },
    /// The validator is Exiting and leaves the active set at `epoch_exit`.
    ExitScheduled {
        validator_id: Hash32,
        epoch_exit: u64,
    },
    Slashed(SlashReport),
}

/// What an epoch boundary changed, in validator-id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EpochReport {
    pub epoch: u64,
    pub exited: Vec<Hash32>,
    pub activated: Vec<Hash32>,
}

/// The validator set of one chain at one epoch.
///
/// Iteration is always in validator-id order (a `BTreeMap`), so two nodes that apply the
/// same entries and boundaries in the same order hold equal registries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registry {
    chain_id: String,
    /// The epoch of the last boundary applied; 0 at genesis.
    epoch: u64,
    validators: BTreeMap<Hash32, ValidatorRecord>,
    /// (offender, height) of every equivocation already punished, so that the same
    /// offense cannot be punished again after the validator returns.
    punished: BTreeSet<(Hash32, u64)>,
}

/// New activations allowed per epoch with `active` validators in the active set:
/// max(2, N/50).
pub fn churn_limit(active: usize) -> usize {
    (active / 50).max(2)
}

/// rep·95/100, truncated; in u128 so that no value overflows.
pub fn decay_rep(rep: u64) -> u64 {
    let r = (rep as u128) * (REP_DECAY_NUM as u128) / (REP_DECAY_DEN as u128);
    u64::try_from(r).unwrap_or(rep)
}

impl Registry {
    /// An empty registry at epoch 0.
    pub fn new(chain_id: &str) -> Registry {
        Registry {
            chain_id: chain_id.to_string(),
            epoch: 0,
            validators: BTreeMap::new(),
            punished: BTreeSet::new(),
        }
    }

    /// The genesis validators, Active from epoch 0 with the initial reputation. The caller
    /// has checked the genesis file ([`Genesis::check`]); duplicates and an oversized set
    /// are refused here as well because they would break the registry's invariants.
    pub fn from_genesis(genesis: &Genesis) -> Result<Registry, RegistryError> {
        if genesis.validators.len() > MAX_ACTIVE_VALIDATORS {
            return Err(RegistryError::TooManyGenesisValidators(
                genesis.validators.len(),
            ));
        }
        let mut reg = Registry::new(&genesis.chain_id);
        for v in &genesis.validators {
            let mut rec = ValidatorRecord::new(
                v.pubkey_ed25519,
                v.network_address.clone(),
                v.stake_bond,
                ValidatorStatus::Active,
            );
            rec.epoch_join = Some(0);
            if reg.validators.insert(rec.validator_id, rec).is_some() {
                return Err(RegistryError::AlreadyRegistered(v.validator_id()));
            }
        }
        Ok(reg)
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn get(&self, id: &Hash32) -> Option<&ValidatorRecord> {
        self.validators.get(id)
    }

    /// The registered key of `id`, whatever its status: evidence against an Exited
    /// validator still checks.
    pub fn key_of(&self, id: &Hash32) -> Option<PublicKey> {
        self.validators.get(id).map(|r| r.pubkey_ed25519)
    }

    /// All records, or those with `status`, in id order.
    pub fn list(&self, status: Option<ValidatorStatus>) -> Vec<&ValidatorRecord> {
        self.validators
            .values()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect()
    }

    /// Active and Exiting validators, in id order.
    pub fn active_set(&self) -> Vec<&ValidatorRecord> {
        self.validators
            .values()
            .filter(|r| r.in_active_set())
            .collect()
    }

    pub fn active_count(&self) -> usize {
        self.validators
            .values()
            .filter(|r| r.in_active_set())
            .count()
    }

    /// Σ effective weight over the active set, saturating.
    pub fn total_active_weight(&self) -> u64 {
        self.validators
            .values()
            .filter(|r| r.in_active_set())
            .fold(0u64, |sum, r| sum.saturating_add(r.effective_weight()))
    }

    /// The effective weight of `id` if it is in the active set, else 0: only the active
    /// set's votes count toward finality.
    pub fn weight_of(&self, id: &Hash32) -> u64 {
        self.validators
            .get(id)
            .filter(|r| r.in_active_set())
            .map_or(0, |r| r.effective_weight())
    }

    /// Adds accepted impact to a validator's PoI weight, saturating.
    pub fn credit_impact(&mut self, id: &Hash32, micro: u64) -> Result<(), RegistryError> {
        let rec = self.record_mut(id)?;
        rec.poi_weight_micro = rec.poi_weight_micro.saturating_add(micro);
        Ok(())
    }

    /// Raises a validator's reputation, up to [`MAX_REP_SCORE`]. Nothing else raises it,
    /// and activation needs [`INITIAL_REP_SCORE`], so this is how a slashed key earns its
    /// way back.
    pub fn credit_reputation(&mut self, id: &Hash32, points: u64) -> Result<(), RegistryError> {
        let rec = self.record_mut(id)?;
        rec.rep_score = rec.rep_score.saturating_add(points).min(MAX_REP_SCORE);
        Ok(())
    }

    /// Notes that the validator was seen at `slot`; never moves backwards.
    pub fn touch(&mut self, id: &Hash32, slot: u64) -> Result<(), RegistryError> {
        let rec = self.record_mut(id)?;
        rec.last_seen_slot = rec.last_seen_slot.max(slot);
        Ok(())
    }

    fn record_mut(&mut self, id: &Hash32) -> Result<&mut ValidatorRecord, RegistryError> {
        self.validators
            .get_mut(id)
            .ok_or(RegistryError::UnknownValidator(*id))
    }

    /// The caller's idea of the epoch must be the registry's: a node that applies entries
    /// with a stale epoch would diverge from the others.
    fn check_epoch(&self, current_epoch: u64) -> Result<(), RegistryError> {
        if current_epoch != self.epoch {
            return Err(RegistryError::EpochMismatch {
                given: current_epoch,
                registry: self.epoch,
            });
        }
        Ok(())
    }

    fn check_chain(&self, chain_id: &str) -> Result<(), RegistryError> {
        if chain_id != self.chain_id {
            return Err(RegistryError::WrongChain {
                entry: chain_id.to_string(),
                registry: self.chain_id.clone(),
            });
        }
        Ok(())
    }

    /// Applies one ledger entry at `current_epoch` (which must be [`Registry::epoch`]).
    /// Every check runs before anything changes, so an error leaves the registry as it
    /// was.
    pub fn apply_entry(
        &mut self,
        entry: &RegistryEntry,
        current_epoch: u64,
    ) -> Result<Applied, RegistryError> {
        self.check_epoch(current_epoch)?;
        match entry {
            RegistryEntry::Register(r) => self.register(r),
            RegistryEntry::Exit(e) => self.request_exit(e),
            RegistryEntry::Slash { evidence } => self.slash_with_evidence(evidence),
        }
    }

    fn register(&mut self, r: &Registration) -> Result<Applied, RegistryError> {
        self.check_chain(&r.chain_id)?;
        if r.epoch != self.epoch {
            return Err(RegistryError::WrongEpoch {
                entry: r.epoch,
                current: self.epoch,
            });
        }
        r.verify()?;
        let validator_id = r.validator_id();
        let epoch = self.epoch;
        match self.validators.get_mut(&validator_id) {
            None => {
                let rec = ValidatorRecord::new(
                    r.pubkey_ed25519,
                    r.network_address.clone(),
                    r.stake_bond,
                    ValidatorStatus::Pending,
                );
                self.validators.insert(validator_id, rec);
            }
            Some(rec) => {
                match rec.status {
                    ValidatorStatus::Pending
                    | ValidatorStatus::Active
                    | ValidatorStatus::Exiting => {
                        return Err(RegistryError::AlreadyRegistered(validator_id));
                    }
                    ValidatorStatus::Slashed => {
                        let until = rec.quarantine_until.unwrap_or(0);
                        if epoch < until {
                            return Err(RegistryError::Quarantined {
                                validator_id,
                                until,
                            });
                        }
                    }
                    ValidatorStatus::Exited => {}
                }
                // Back to Pending. Weight, reputation, the remaining bond and the
                // quarantine record stay: returning does not wash out a slash.
                rec.status = ValidatorStatus::Pending;
                rec.network_address = r.network_address.clone();
                rec.stake_bond = rec.stake_bond.saturating_add(r.stake_bond);
                rec.epoch_join = None;
                rec.epoch_exit = None;
            }
        }
        Ok(Applied::Registered { validator_id })
    }

    fn request_exit(&mut self, e: &ExitRequest) -> Result<Applied, RegistryError> {
        self.check_chain(&e.chain_id)?;
        if e.epoch != self.epoch {
            return Err(RegistryError::WrongEpoch {
                entry: e.epoch,
                current: self.epoch,
            });
        }
        let epoch_exit = self.epoch.saturating_add(EXIT_DELAY_EPOCHS);
        let rec = self.record_mut(&e.validator_id)?;
        e.verify(&rec.pubkey_ed25519)?;
        if rec.status != ValidatorStatus::Active {
            return Err(RegistryError::NotActive(e.validator_id));
        }
        rec.status = ValidatorStatus::Exiting;
        rec.epoch_exit = Some(epoch_exit);
        Ok(Applied::ExitScheduled {
            validator_id: e.validator_id,
            epoch_exit,
        })
    }

    fn slash_with_evidence(&mut self, evidence: &Evidence) -> Result<Applied, RegistryError> {
        self.check_chain(evidence.chain_id())?;
        let offender = evidence.check(|id| self.key_of(id))?;
        let offense_key = (offender, evidence.height());
        if self.punished.contains(&offense_key) {
            return Err(RegistryError::AlreadyPunished {
                validator_id: offender,
                height: offense_key.1,
            });
        }
        let report = self.apply_slash(&offender, Offense::Equivocation, self.epoch)?;
        self.punished.insert(offense_key);
        Ok(Applied::Slashed(report))
    }

    /// Slashes `id` for `offense` at `current_epoch` (which must be [`Registry::epoch`]).
    ///
    /// Equivocation reaches this through a checked slash entry. The other offenses have no
    /// evidence format, so no ledger entry carries them; a node calls this only on a
    /// decision every node makes alike (one recorded in the ledger), or the registries
    /// diverge.
    ///
    /// A Slashed validator is refused with [`RegistryError::AlreadySlashed`]: its weight and
    /// bond were already cut and it cannot vote until it registers again.
    pub fn apply_slash(
        &mut self,
        id: &Hash32,
        offense: Offense,
        current_epoch: u64,
    ) -> Result<SlashReport, RegistryError> {
        self.check_epoch(current_epoch)?;
        let rec = self.record_mut(id)?;
        if rec.status == ValidatorStatus::Slashed {
            return Err(RegistryError::AlreadySlashed(*id));
        }
        Ok(slashing::apply(rec, offense, current_epoch))
    }

    /// Moves to `new_epoch`, which must be the next epoch: boundaries are never skipped,
    /// since each applies one step of decay.
    ///
    /// In order: (1) Exiting validators whose exit epoch has come are Exited; (2) Pending
    /// validators with reputation ≥ 500 are activated in id order, at most
    /// max(2, N/50) of them (N = active set size after step 1) and never past
    /// [`MAX_ACTIVE_VALIDATORS`]; (3) reputation decays ×95/100 for Active, Exiting and
    /// Slashed validators. Activation comes before decay so that a new validator at 500
    /// qualifies. Pending validators do not decay: one that waits behind the churn limit
    /// would otherwise drop below 500 after one epoch and never activate.
    pub fn on_epoch_boundary(&mut self, new_epoch: u64) -> Result<EpochReport, RegistryError> {
        let expected = self.epoch.saturating_add(1);
        if new_epoch != expected || self.epoch == u64::MAX {
            return Err(RegistryError::EpochOrder {
                expected,
                got: new_epoch,
            });
        }
        let mut report = EpochReport {
            epoch: new_epoch,
            ..EpochReport::default()
        };

        for rec in self.validators.values_mut() {
            if rec.status == ValidatorStatus::Exiting
                && rec.epoch_exit.is_none_or(|e| e <= new_epoch)
            {
                rec.status = ValidatorStatus::Exited;
                report.exited.push(rec.validator_id);
            }
        }

        let active = self.active_count();
        let room = churn_limit(active).min(MAX_ACTIVE_VALIDATORS.saturating_sub(active));
        for rec in self
            .validators
            .values_mut()
            .filter(|r| r.status == ValidatorStatus::Pending && r.rep_score >= INITIAL_REP_SCORE)
            .take(room)
        {
            rec.status = ValidatorStatus::Active;
            rec.epoch_join = Some(new_epoch);
            report.activated.push(rec.validator_id);
        }

        for rec in self.validators.values_mut() {
            if matches!(
                rec.status,
                ValidatorStatus::Active | ValidatorStatus::Exiting | ValidatorStatus::Slashed
            ) {
                rec.rep_score = decay_rep(rec.rep_score);
            }
        }

        self.epoch = new_epoch;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testkit::{
        double_vote, exit, genesis, id, key, register, registry, slash,
    };
    use ValidatorStatus::*;

    fn status(reg: &Registry, i: u16) -> ValidatorStatus {
        reg.get(&id(i)).unwrap().status
    }

    fn next(reg: &mut Registry) -> EpochReport {
        reg.on_epoch_boundary(reg.epoch() + 1).unwrap()
    }

    fn apply(reg: &mut Registry, e: &RegistryEntry) -> Result<Applied, RegistryError> {
        let epoch = reg.epoch();
        reg.apply_entry(e, epoch)
    }

    /// Applies the entry `make` builds for the registry as it is now.
    fn apply_with(
        reg: &mut Registry,
        make: impl FnOnce(&Registry) -> RegistryEntry,
    ) -> Result<Applied, RegistryError> {
        let e = make(reg);
        apply(reg, &e)
    }

    #[test]
    fn genesis_validators_start_active() {
        let reg = registry(3);
        assert_eq!(reg.len(), 3);
        assert_eq!(reg.epoch(), 0);
        for r in reg.list(None) {
            assert_eq!(r.status, Active);
            assert_eq!(r.epoch_join, Some(0));
            assert_eq!(r.rep_score, 500);
            assert_eq!(r.stake_bond, 10_000);
        }
        // 100 + 0.05·500 + 0.02·√10000 = 127 each.
        assert_eq!(reg.weight_of(&id(0)), 127);
        assert_eq!(reg.total_active_weight(), 3 * 127);
        assert_eq!(reg.weight_of(&id(9)), 0);

        let mut dup = genesis(2);
        dup.validators.push(dup.validators[0].clone());
        assert_eq!(
            Registry::from_genesis(&dup),
            Err(RegistryError::AlreadyRegistered(id(0)))
        );
        assert_eq!(
            Registry::from_genesis(&genesis(101)),
            Err(RegistryError::TooManyGenesisValidators(101))
        );
        assert_eq!(
            Registry::from_genesis(&genesis(100))
                .unwrap()
                .active_count(),
            100
        );
    }

    #[test]
    fn pending_then_active_at_the_next_boundary() {
        let mut reg = registry(1);
        let e = register(&reg, 7, 400);
        assert_eq!(
            apply(&mut reg, &e),
            Ok(Applied::Registered {
                validator_id: id(7)
            })
        );
        let r = reg.get(&id(7)).unwrap();
        assert_eq!((r.status, r.rep_score, r.stake_bond), (Pending, 500, 400));
        assert_eq!(r.network_address, "http://v7");
        assert_eq!(reg.weight_of(&id(7)), 0);
        assert_eq!(
            apply(&mut reg, &e),
            Err(RegistryError::AlreadyRegistered(id(7)))
        );
        assert_eq!(
            apply_with(&mut reg, |r| register(r, 0, 1)),
            Err(RegistryError::AlreadyRegistered(id(0)))
        );

        let report = next(&mut reg);
        assert_eq!(report.activated, vec![id(7)]);
        let r = reg.get(&id(7)).unwrap();
        assert_eq!((r.status, r.epoch_join), (Active, Some(1)));
        // Activated at 500, then decayed with the rest of the active set.
        assert_eq!(r.rep_score, 475);
        assert!(reg.weight_of(&id(7)) > 0);
    }

    #[test]
    fn entries_are_bound_to_epoch_and_chain() {
        let mut reg = registry(1);
        let stale = register(&reg, 7, 0);
        next(&mut reg);
        assert_eq!(
            apply(&mut reg, &stale),
            Err(RegistryError::WrongEpoch {
                entry: 0,
                current: 1
            })
        );
        let other = RegistryEntry::Register(
            Registration::sign("other-chain", 1, &key(7), "http://v7", 0).unwrap(),
        );
        assert!(matches!(
            apply(&mut reg, &other),
            Err(RegistryError::WrongChain { .. })
        ));
        // The caller's epoch must match the registry's.
        let fresh = register(&reg, 7, 0);
        assert_eq!(
            reg.apply_entry(&fresh, 0),
            Err(RegistryError::EpochMismatch {
                given: 0,
                registry: 1
            })
        );
        assert!(reg.apply_entry(&fresh, 1).is_ok());
    }

    #[test]
    fn bad_signatures_change_nothing() {
        let mut reg = registry(2);
        let before = reg.clone();
        let mut e = register(&reg, 7, 5);
        if let RegistryEntry::Register(r) = &mut e {
            r.stake_bond = 5_000_000;
        }
        assert_eq!(apply(&mut reg, &e), Err(RegistryError::BadSignature));
        // An exit for validator 1 signed by key 0.
        let mut e = exit(&reg, 0);
        if let RegistryEntry::Exit(x) = &mut e {
            x.validator_id = id(1);
        }
        assert_eq!(apply(&mut reg, &e), Err(RegistryError::BadSignature));
        assert_eq!(reg, before);
    }

    #[test]
    fn exit_path() {
        let mut reg = registry(3);
        next(&mut reg);
        assert_eq!(
            apply_with(&mut reg, |r| exit(r, 1)),
            Ok(Applied::ExitScheduled {
                validator_id: id(1),
                epoch_exit: 3
            })
        );
        assert_eq!(status(&reg, 1), Exiting);
        assert_eq!(reg.active_count(), 3);
        assert!(reg.weight_of(&id(1)) > 0);
        assert_eq!(
            apply_with(&mut reg, |r| exit(r, 1)),
            Err(RegistryError::NotActive(id(1)))
        );
        assert_eq!(
            apply_with(&mut reg, |r| exit(r, 9)),
            Err(RegistryError::UnknownValidator(id(9)))
        );

        let report = next(&mut reg);
        assert!(report.exited.is_empty());
        assert_eq!(status(&reg, 1), Exiting);
        let report = next(&mut reg);
        assert_eq!(report.exited, vec![id(1)]);
        let r = reg.get(&id(1)).unwrap();
        assert_eq!((r.status, r.epoch_exit), (Exited, Some(3)));
        assert_eq!(reg.active_count(), 2);
        assert_eq!(reg.weight_of(&id(1)), 0);
        // Exited validators no longer decay.
        let rep = r.rep_score;
        next(&mut reg);
        assert_eq!(reg.get(&id(1)).unwrap().rep_score, rep);

        // A Pending validator cannot exit.
        apply_with(&mut reg, |r| register(r, 8, 0)).unwrap();
        assert_eq!(
            apply_with(&mut reg, |r| exit(r, 8)),
            Err(RegistryError::NotActive(id(8)))
        );
    }

    #[test]
    fn exited_key_registers_again_with_its_history() {
        let mut reg = registry(2);
        reg.credit_impact(&id(1), 2_000_000).unwrap();
        apply_with(&mut reg, |r| exit(r, 1)).unwrap();
        next(&mut reg);
        next(&mut reg);
        assert_eq!(status(&reg, 1), Exited);
        let rep = reg.get(&id(1)).unwrap().rep_score;
        apply_with(&mut reg, |r| register(r, 1, 50)).unwrap();
        let r = reg.get(&id(1)).unwrap();
        assert_eq!(
            (r.status, r.epoch_join, r.epoch_exit),
            (Pending, None, None)
        );
        assert_eq!(r.stake_bond, 10_050);
        assert_eq!(r.poi_weight_micro, 2_000_000);
        assert_eq!(r.rep_score, rep);
    }

    #[test]
    fn churn_limit_values() {
        assert_eq!(churn_limit(0), 2);
        assert_eq!(churn_limit(99), 2);
        assert_eq!(churn_limit(100), 2);
        assert_eq!(churn_limit(150), 3);
    }

    #[test]
    fn churn_limits_activations_to_two_per_epoch_in_id_order() {
        let mut reg = registry(3);
        for i in 10..20 {
            apply_with(&mut reg, |r| register(r, i, 0)).unwrap();
        }
        let mut pending: Vec<Hash32> = (10..20).map(id).collect();
        pending.sort();
        for round in 0..5 {
            let report = next(&mut reg);
            assert_eq!(
                report.activated,
                pending[2 * round..2 * round + 2],
                "{round}"
            );
            assert_eq!(reg.active_count(), 3 + 2 * (round + 1));
            // Those still waiting keep the reputation they need.
            for r in reg.list(Some(Pending)) {
                assert_eq!(r.rep_score, 500);
            }
        }
        assert!(reg.list(Some(Pending)).is_empty());
    }

    #[test]
    fn the_active_set_never_passes_the_cap() {
        let mut reg = registry(99);
        for i in 200..205 {
            apply_with(&mut reg, |r| register(r, i, 0)).unwrap();
        }
        assert_eq!(next(&mut reg).activated.len(), 1);
        assert_eq!(reg.active_count(), MAX_ACTIVE_VALIDATORS);
        assert!(next(&mut reg).activated.is_empty());
        assert_eq!(reg.list(Some(Pending)).len(), 4);
        // A place frees up once an exit completes.
        apply_with(&mut reg, |r| exit(r, 0)).unwrap();
        assert!(next(&mut reg).activated.is_empty(), "exiting still counts");
        let report = next(&mut reg);
        assert_eq!(report.exited, vec![id(0)]);
        assert_eq!(report.activated.len(), 1);
        assert_eq!(reg.active_count(), MAX_ACTIVE_VALIDATORS);
    }

    #[test]
    fn low_reputation_blocks_activation() {
        let mut reg = registry(1);
        apply_with(&mut reg, |r| register(r, 5, 0)).unwrap();
        reg.validators.get_mut(&id(5)).unwrap().rep_score = 499;
        assert!(next(&mut reg).activated.is_empty());
        reg.credit_reputation(&id(5), 1).unwrap();
        assert_eq!(next(&mut reg).activated, vec![id(5)]);
        reg.credit_reputation(&id(5), u64::MAX).unwrap();
        assert_eq!(reg.get(&id(5)).unwrap().rep_score, MAX_REP_SCORE);
    }

    #[test]
    fn decay_truncates() {
        assert_eq!(decay_rep(500), 475);
        assert_eq!(decay_rep(475), 451); // 451.25
        assert_eq!(decay_rep(451), 428); // 428.45
        assert_eq!(decay_rep(19), 18); // 18.05
        assert_eq!(decay_rep(1), 0);
        assert_eq!(decay_rep(0), 0);
        assert_eq!(decay_rep(100_000), 95_000);
        assert_eq!(decay_rep(u64::MAX), (u64::MAX as u128 * 95 / 100) as u64);
        let mut reg = registry(1);
        let reps: Vec<u64> = (0..3)
            .map(|_| {
                next(&mut reg);
                reg.get(&id(0)).unwrap().rep_score
            })
            .collect();
        assert_eq!(reps, [475, 451, 428]);
    }

    #[test]
    fn boundaries_come_one_at_a_time() {
        let mut reg = registry(1);
        assert_eq!(
            reg.on_epoch_boundary(2),
            Err(RegistryError::EpochOrder {
                expected: 1,
                got: 2
            })
        );
        assert!(reg.on_epoch_boundary(0).is_err());
        assert_eq!(reg.on_epoch_boundary(1).unwrap().epoch, 1);
        assert!(reg.on_epoch_boundary(1).is_err());
        assert_eq!(reg.epoch(), 1);
    }

    #[test]
    fn equivocation_entry_slashes_with_exact_numbers() {
        let mut reg = registry(3);
        reg.credit_impact(&id(1), 1_000_000).unwrap();
        reg.credit_reputation(&id(1), 5_500).unwrap();
        let total = reg.total_active_weight();
        let w1 = reg.weight_of(&id(1));
        let Applied::Slashed(report) = apply(&mut reg, &slash(1, 10)).unwrap() else {
            panic!("not a slash")
        };
        assert_eq!(report.offense, Offense::Equivocation);
        assert_eq!(report.quarantine_until, 4);
        let r = reg.get(&id(1)).unwrap();
        assert_eq!(
            (r.status, r.poi_weight_micro, r.stake_bond, r.rep_score),
            (Slashed, 100_000, 0, 1_000)
        );
        assert_eq!((r.quarantine_until, r.epoch_exit), (Some(4), Some(0)));
        assert_eq!(reg.active_count(), 2);
        assert_eq!(reg.weight_of(&id(1)), 0);
        assert_eq!(reg.total_active_weight(), total - w1);

        // The same offense again, and another while Slashed.
        assert_eq!(
            apply(&mut reg, &slash(1, 10)),
            Err(RegistryError::AlreadyPunished {
                validator_id: id(1),
                height: 10
            })
        );
        assert_eq!(
            apply(&mut reg, &slash(1, 11)),
            Err(RegistryError::AlreadySlashed(id(1)))
        );
        // Evidence against a stranger, or that does not check.
        assert_eq!(
            apply(&mut reg, &slash(9, 10)),
            Err(RegistryError::BadEvidence(
                crate::registry::EvidenceError::UnknownValidator(id(9))
            ))
        );
        let Evidence::DoubleVote { first, .. } = double_vote(2, 5) else {
            unreachable!()
        };
        let same = RegistryEntry::Slash {
            evidence: Box::new(Evidence::DoubleVote {
                first: first.clone(),
                second: first,
            }),
        };
        assert!(matches!(
            apply(&mut reg, &same),
            Err(RegistryError::BadEvidence(_))
        ));
        assert_eq!(status(&reg, 2), Active);
    }

    #[test]
    fn every_offense_through_the_registry() {
        let expect = [
            (Offense::Equivocation, 100_000, 0, 1_000, 4),
            (Offense::FraudulentPoI, 300_000, 5_000, 3_000, 2),
            (Offense::Censorship, 500_000, 7_000, 4_000, 2),
            (Offense::KeyTheft, 50_000, 9_000, 5_500, 1),
        ];
        for (offense, weight, bond, rep, q) in expect {
            let mut reg = registry(2);
            reg.credit_impact(&id(1), 1_000_000).unwrap();
            reg.credit_reputation(&id(1), 5_500).unwrap();
            reg.apply_slash(&id(1), offense, 0).unwrap();
            let r = reg.get(&id(1)).unwrap();
            assert_eq!(
                (
                    r.poi_weight_micro,
                    r.stake_bond,
                    r.rep_score,
                    r.quarantine_until
                ),
                (weight, bond, rep, Some(q)),
                "{offense:?}"
            );
        }
    }

    #[test]
    fn any_state_but_slashed_can_be_slashed() {
        let mut reg = registry(3);
        apply_with(&mut reg, |r| register(r, 5, 0)).unwrap(); // Pending
        apply_with(&mut reg, |r| exit(r, 1)).unwrap(); // Exiting
        apply_with(&mut reg, |r| exit(r, 2)).unwrap();
        next(&mut reg);
        next(&mut reg); // 2 Exited, 1 too
        assert_eq!(status(&reg, 2), Exited);
        for i in [0, 1, 2, 5] {
            reg.apply_slash(&id(i), Offense::Censorship, 2).unwrap();
            assert_eq!(status(&reg, i), Slashed);
            assert_eq!(
                reg.apply_slash(&id(i), Offense::KeyTheft, 2),
                Err(RegistryError::AlreadySlashed(id(i)))
            );
        }
        assert_eq!(reg.active_count(), 0);
        assert_eq!(
            reg.apply_slash(&id(9), Offense::Censorship, 2),
            Err(RegistryError::UnknownValidator(id(9)))
        );
        assert!(matches!(
            reg.apply_slash(&id(0), Offense::Censorship, 1),
            Err(RegistryError::EpochMismatch { .. })
        ));
    }

    #[test]
    fn an_exiting_validator_slashed_leaves_now() {
        let mut reg = registry(2);
        apply_with(&mut reg, |r| exit(r, 1)).unwrap();
        reg.apply_slash(&id(1), Offense::FraudulentPoI, 0).unwrap();
        assert_eq!(reg.get(&id(1)).unwrap().epoch_exit, Some(0));
        next(&mut reg);
        next(&mut reg);
        // The planned exit does not pull it out of Slashed.
        assert_eq!(status(&reg, 1), Slashed);
    }

    #[test]
    fn quarantine_then_return() {
        let mut reg = registry(3);
        apply(&mut reg, &slash(1, 3)).unwrap(); // Equivocation at epoch 0: until 4.
        let slashed = reg.get(&id(1)).unwrap().clone();
        for _ in 0..3 {
            next(&mut reg);
            assert_eq!(
                apply_with(&mut reg, |r| register(r, 1, 100)),
                Err(RegistryError::Quarantined {
                    validator_id: id(1),
                    until: 4
                })
            );
        }
        next(&mut reg);
        assert_eq!(reg.epoch(), 4);
        apply_with(&mut reg, |r| register(r, 1, 100)).unwrap();
        let r = reg.get(&id(1)).unwrap();
        assert_eq!(r.status, Pending);
        assert_eq!(r.stake_bond, 100);
        assert_eq!(r.poi_weight_micro, slashed.poi_weight_micro);
        assert_eq!(r.quarantine_until, Some(4));
        // Reputation fell to 0 with the slash; the key waits until it earns 500 again.
        assert_eq!(r.rep_score, 0);
        assert!(next(&mut reg).activated.is_empty());
        reg.credit_reputation(&id(1), 500).unwrap();
        assert_eq!(next(&mut reg).activated, vec![id(1)]);

        // The old evidence cannot punish it twice; a new offense can.
        assert!(matches!(
            apply(&mut reg, &slash(1, 3)),
            Err(RegistryError::AlreadyPunished { .. })
        ));
        assert!(apply(&mut reg, &slash(1, 40)).is_ok());
        assert_eq!(reg.get(&id(1)).unwrap().quarantine_until, Some(10));
    }

    #[test]
    fn bookkeeping_calls() {
        let mut reg = registry(1);
        reg.touch(&id(0), 40).unwrap();
        reg.touch(&id(0), 30).unwrap();
        assert_eq!(reg.get(&id(0)).unwrap().last_seen_slot, 40);
        reg.credit_impact(&id(0), u64::MAX).unwrap();
        reg.credit_impact(&id(0), 1).unwrap();
        assert_eq!(reg.get(&id(0)).unwrap().poi_weight_micro, u64::MAX);
        assert_eq!(
            reg.touch(&id(3), 1),
            Err(RegistryError::UnknownValidator(id(3)))
        );
        assert!(reg.credit_impact(&id(3), 1).is_err());
        assert!(reg.credit_reputation(&id(3), 1).is_err());
    }

    #[test]
    fn same_entries_same_registry() {
        let run = || {
            let mut reg = registry(4);
            let mut log = Vec::new();
            for step in 0..6u16 {
                let mut entries = vec![register(&reg, 10 + step, u64::from(step))];
                match step {
                    0 | 1 => entries.push(exit(&reg, step)),
                    2 => entries.push(slash(2, 7)),
                    3 => entries.push(slash(10, 7)),
                    // Refused: a stranger, and an offense already punished.
                    _ => entries.extend([slash(99, 7), slash(2, 7)]),
                }
                for e in &entries {
                    log.push(format!("{:?}", apply(&mut reg, e)));
                }
                reg.credit_impact(&id(step), 1_000).ok();
                next(&mut reg);
            }
            (reg, log)
        };
        let (a, log_a) = run();
        let (b, log_b) = run();
        assert_eq!(a, b);
        assert_eq!(log_a, log_b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        // The run did exercise each kind of entry.
        assert!(!a.list(Some(Slashed)).is_empty());
        assert!(!a.list(Some(Exited)).is_empty());
        assert!(a.active_count() > 0);
    }
}
