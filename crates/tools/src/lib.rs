//! Client-side tools of BIZRA Node0, each a `node0` subcommand: building and submitting
//! attestations, the smoke test, and (later) the load generator and probes.

pub mod attest;
pub mod client;
pub mod smoke;
