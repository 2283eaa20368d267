//! Client-side tools of BIZRA Node0, each a `node0` subcommand: building and submitting
//! attestations, the smoke test, the load generator (`bench`), the probes (`keepalive`, `db_pool_probe`) and the local
//! validator network (`testnet`), and what several of them share: the HTTP client
//! (`client`), the latency histograms with their percentiles (`latency`) and the
//! attestations signed before a timed run (`presign`).

pub mod attest;
pub mod bench;
pub mod client;
pub mod db_pool_probe;
pub mod keepalive;
pub mod latency;
pub mod presign;
pub mod smoke;
pub mod testnet;
pub mod verify_compression;
