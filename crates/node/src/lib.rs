//! The BIZRA Node0 server: configuration, data directory, chain state, block producer,
//! HTTP API, events and metrics. The binary (`node0`) is a thin CLI over this crate.

pub mod api;
pub mod cache;
pub mod chain;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod events;
pub mod ingest;
pub mod leadership;
pub mod limit;
pub mod listener;
pub mod log_sink;
pub mod metrics;
pub mod peers;
pub mod producer;
pub mod redis_link;
pub mod server;
pub mod state;
pub mod submit;
pub mod validator;

pub use config::{Config, ConfigArgs};
pub use server::{Node, NodeError};
