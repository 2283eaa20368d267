//! The integration tests of `node0`, in one test binary (as ripgrep keeps its own): each
//! module drives the real `node0` binary over HTTP on loopback, against the embedded
//! store and a real PostgreSQL and Redis (private servers of the test process unless
//! `NODE0_TEST_DATABASE_URL` / `NODE0_TEST_REDIS_URL` name others; see `bizra-testkit`).

#[macro_use]
mod common;

mod api;
mod bad_input;
mod db_pool_probe;
mod errors;
mod http2;
mod network;
mod pg_outage;
mod redis;
mod registry;
mod replicas;
mod restart;
mod smoke;
