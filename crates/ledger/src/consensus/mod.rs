//! The leaderless consensus core (docs/protocol.md §3): every validator proposes one
//! block per height; blocks certified by 2/3 of the weight form the DAG of an epoch
//! ([`dag`]); Bullshark's rule commits leader blocks and their causal histories in one
//! order ([`commit`]) under the epoch's [`committee`]; the ledger order gives each new
//! attestation its `log_index` ([`order`]). Pure: the node feeds blocks and certificates
//! in, persists what comes out, and decides when to propose.

pub mod commit;
pub mod committee;
pub mod dag;
pub mod engine;
pub mod order;

#[cfg(test)]
mod sim;
