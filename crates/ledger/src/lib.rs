//! The domain of BIZRA Node0: formats, rules, cryptography, the consensus core (certified
//! DAG, commit rule, ledger order) and the validator registry. Pure: no I/O, no clock, no async. Callers pass the time in.

pub mod attestation;
pub mod block;
pub mod canonical;
pub mod consensus;
pub mod crypto;
pub mod genesis;
pub mod hash;
pub mod merkle;
pub mod params;
pub mod proposal;
pub mod registry;
pub mod vote;
pub mod weight;

pub use hash::Hash32;
