//! Property tests of the registry: caps, quarantine and replay over random histories.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::testkit::{id, key, registry, slash};
use super::{ExitRequest, Offense, Registration, Registry, RegistryEntry, ValidatorStatus};
use crate::hash::Hash32;
use crate::params::MAX_ACTIVE_VALIDATORS;

/// Close to the cap, so that random registrations reach it within a few epochs.
const GENESIS: u16 = 97;
/// Keys the operations draw from: the genesis set and some newcomers.
const POOL: u16 = 130;

#[derive(Debug, Clone)]
enum Op {
    Register(u16, u64),
    Exit(u16),
    /// Equivocation evidence for a key at a height.
    SlashEntry(u16, u64),
    Slash(u16, Offense),
    CreditRep(u16, u64),
    CreditImpact(u16, u64),
    Boundary,
}

/// An operation made concrete: signed entries are built once, so both runs apply the
/// same bytes.
#[derive(Debug, Clone)]
enum Step {
    Entry(Box<RegistryEntry>),
    Slash(Hash32, Offense),
    CreditRep(Hash32, u64),
    CreditImpact(Hash32, u64),
    Boundary,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Mostly newcomers, some genesis keys (refused until they exit).
        6 => (80..POOL, 0..1_000u64).prop_map(|(k, b)| Op::Register(k, b)),
        1 => (0..POOL).prop_map(Op::Exit),
        1 => (0..POOL, 0..3u64).prop_map(|(k, h)| Op::SlashEntry(k, h)),
        1 => (0..POOL, prop::sample::select(Offense::ALL.to_vec()))
            .prop_map(|(k, o)| Op::Slash(k, o)),
        1 => (0..POOL, 0..2_000u64).prop_map(|(k, p)| Op::CreditRep(k, p)),
        1 => (0..POOL, 0..5_000_000u64).prop_map(|(k, m)| Op::CreditImpact(k, m)),
        4 => Just(Op::Boundary),
    ]
}

fn base() -> &'static Registry {
    static BASE: OnceLock<Registry> = OnceLock::new();
    BASE.get_or_init(|| registry(GENESIS))
}

/// Turns operations into steps; the epoch of each entry is the number of boundaries
/// before it, which is the registry's epoch when it is applied.
fn steps(ops: &[Op]) -> Vec<Step> {
    let chain = base().chain_id();
    let mut epoch = 0;
    ops.iter()
        .map(|op| match *op {
            Op::Register(k, bond) => Step::Entry(Box::new(RegistryEntry::Register(
                Registration::sign(chain, epoch, &key(k), &format!("http://v{k}"), bond).unwrap(),
            ))),
            Op::Exit(k) => Step::Entry(Box::new(RegistryEntry::Exit(
                ExitRequest::sign(chain, epoch, &key(k)).unwrap(),
            ))),
            Op::SlashEntry(k, h) => Step::Entry(Box::new(slash(k, h))),
            Op::Slash(k, o) => Step::Slash(id(k), o),
            Op::CreditRep(k, p) => Step::CreditRep(id(k), p),
            Op::CreditImpact(k, m) => Step::CreditImpact(id(k), m),
            Op::Boundary => {
                epoch += 1;
                Step::Boundary
            }
        })
        .collect()
}

/// Applies one step and returns its outcome as text, for comparing runs.
fn run(reg: &mut Registry, step: &Step) -> String {
    let epoch = reg.epoch();
    match step {
        Step::Entry(e) => format!("{:?}", reg.apply_entry(e, epoch)),
        Step::Slash(v, o) => format!("{:?}", reg.apply_slash(v, *o, epoch)),
        Step::CreditRep(v, p) => format!("{:?}", reg.credit_reputation(v, *p)),
        Step::CreditImpact(v, m) => format!("{:?}", reg.credit_impact(v, *m)),
        Step::Boundary => format!("{:?}", reg.on_epoch_boundary(epoch + 1)),
    }
}

/// quarantine_until of every Slashed validator.
fn slashed(reg: &Registry) -> BTreeMap<Hash32, Option<u64>> {
    reg.list(Some(ValidatorStatus::Slashed))
        .into_iter()
        .map(|r| (r.validator_id, r.quarantine_until))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_histories_keep_the_invariants(ops in prop::collection::vec(op(), 1..150)) {
        let steps = steps(&ops);
        let mut reg = base().clone();
        let mut outcomes = Vec::new();
        for step in &steps {
            let before = reg.clone();
            let outcome = run(&mut reg, step);
            if outcome.starts_with("Err") {
                prop_assert_eq!(&reg, &before, "a failed step changed the registry");
            }
            prop_assert!(reg.active_count() <= MAX_ACTIVE_VALIDATORS);
            for (v, until) in slashed(&before) {
                let now = reg.get(&v).map(|r| r.status);
                if now != Some(ValidatorStatus::Slashed) {
                    prop_assert!(
                        until.is_some_and(|u| reg.epoch() >= u),
                        "{v} left Slashed at epoch {} before {until:?}", reg.epoch()
                    );
                    prop_assert_eq!(now, Some(ValidatorStatus::Pending));
                }
            }
            outcomes.push(outcome);
        }

        let mut again = base().clone();
        let replayed: Vec<String> = steps.iter().map(|s| run(&mut again, s)).collect();
        prop_assert_eq!(&again, &reg);
        prop_assert_eq!(replayed, outcomes);
    }
}
