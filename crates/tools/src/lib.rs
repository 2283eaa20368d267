//! Client-side tools of BIZRA Node0, each a `node0` subcommand: building and submitting
//! attestations, the smoke test, the load generator (`bench`), the probes (`keepalive`,
//! `db_pool_probe`) and the codec measurement (`verify_compression`), and what several of
//! them share: the HTTP client (`client`), the latency histograms with their percentiles
//! (`latency`) and the attestations signed before a timed run (`presign`). They talk to a
//! node over HTTP (or, for the pool probe, to its PostgreSQL store) and never link the
//! server.

pub mod attest;
pub mod bench;
pub mod client;
pub mod db_pool_probe;
pub mod keepalive;
pub mod latency;
pub mod presign;
pub mod smoke;
pub mod verify_compression;
