//! The BIZRA Node0 server. The binary (`node0`) is a thin CLI over this crate, which
//! exposes only what it needs: the [`Node`] (open, run, stop), its [`Config`], the data
//! directory ([`datadir`]) and the log output ([`log_sink`]). The wire types clients
//! share live in `bizra-wire`.
//!
//! The modules are layers, top to bottom; a module uses only those after it in this list
//! (`tests/layers.rs` holds the order, and ARCHITECTURE.md explains it):
//! - edge: `server` (start and stop), `http` (router, middleware, handlers), `state`
//!   (what handlers share), `datadir`, `config`;
//! - services: `consensus` (chain state, block production, the validator network) and
//!   `ingest` (the submit path);
//! - infrastructure: `cache`, `limit`, `peers`, `redis_link`;
//! - foundation: `problem`, `trace_id`, `events`, `metrics`, `log_sink`, `clock`,
//!   `faults`.

mod cache;
mod clock;
pub mod config;
mod consensus;
pub mod datadir;
mod events;
mod faults;
mod http;
mod ingest;
mod limit;
pub mod log_sink;
mod metrics;
mod peers;
mod problem;
mod redis_link;
mod server;
mod state;
mod trace_id;

pub use config::{Config, ConfigArgs};
pub use server::{shutdown_signal, Node, NodeError};
