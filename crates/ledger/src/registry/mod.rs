//! The validator registry (docs/protocol.md §3.5): records, ledger entries, slashing,
//! epochs.
//!
//! Every node derives the same registry from the genesis file and the ledger entries in
//! finalized order; nothing here reads a clock, so the caller passes the epoch in.
//!
//! Choices made here (the resulting rules are in docs/protocol.md §3.5):
//!
//! - **Entries are bound to a chain and an epoch.** Registration and exit entries sign
//!   `chain_id` and `epoch` besides their own fields and are accepted only in that epoch
//!   on that chain, so an old entry cannot be replayed to pull a key back in or out of
//!   the set. A node whose entry missed its epoch signs a new one.
//! - **Only equivocation is slashed through a ledger entry.** It is the only offense with
//!   a self-contained proof (two conflicting signed objects), which any node can check
//!   alone. FraudulentPoI, Censorship and KeyTheft have the penalties of the table in
//!   [`Offense`] and [`Registry::apply_slash`], but no entry format: that needs an
//!   authority decision (a quorum-signed verdict, say) that the protocol does not define.
//!   Each equivocation (offender, height) is punished once.
//! - **Slashing a Slashed validator is refused** ([`RegistryError::AlreadySlashed`]), so the
//!   second offense neither cuts again nor extends the quarantine. Evidence refused this way
//!   is not recorded and can be used once the validator has returned.
//! - **Quarantine.** A slash sets `quarantine_until` = epoch + the table's quarantine. From
//!   that epoch on the key may register again and becomes Pending; before it the
//!   registration is refused ([`RegistryError::Quarantined`]). Weight, reputation and the
//!   remaining bond carry over and the new bond is added, so coming back does not undo the
//!   slash. Activation needs reputation ≥ 500, which a slashed key has usually lost; it
//!   regains it through [`Registry::credit_reputation`]. Exited keys may register again
//!   the same way, without the wait.
//! - **Exit** is accepted from Active only; Pending, Exiting and the rest get
//!   [`RegistryError::NotActive`].
//! - **Pending validators do not decay**, otherwise one left waiting by the churn limit
//!   would fall below 500 and never activate.

mod entry;
mod epoch;
mod error;
mod evidence;
mod record;
mod slashing;
mod state;

#[cfg(test)]
mod prop;
#[cfg(test)]
pub(crate) mod testkit;

pub use entry::{
    ExitRequest, Registration, RegistryEntry, EXIT_TAG, MAX_NETWORK_ADDRESS_LEN, REGISTER_TAG,
};
pub use epoch::{epoch_of_slot, epoch_of_time, first_slot_of_epoch, slot_of_time};
pub use error::RegistryError;
pub use evidence::{Evidence, EvidenceError, HeaderVote};
pub use record::{ValidatorRecord, ValidatorStatus};
pub use slashing::{cut, Offense, Penalty, SlashReport, BPS};
pub use state::{churn_limit, decay_rep, Applied, EpochReport, Registry};
