//! Test support shared by the crates' tests: the PostgreSQL and Redis servers they run
//! against, a throw-away PostgreSQL schema per test, and stores as builds of block header
//! version 1 left them (`v1_store`).
//!
//! Tests never touch the machine's own servers unless told to. Without
//! `NODE0_TEST_DATABASE_URL` (or `NODE0_TEST_REDIS_URL`), the first test that asks starts a
//! private server from the installed binaries, on a free port in a temporary directory,
//! once per test process; it stops, and its directory is removed, when the process ends,
//! however it ends (the `watchdog` module). With the variable set, tests use that server.
//!
//! Where the binaries are missing, every test that needs them fails at once with one line
//! naming the package to install.

pub mod postgres;
pub mod redis;
pub mod schema;
pub mod v1_store;
mod watchdog;

pub use postgres::{shared_postgres_url, PrivatePostgres};
pub use redis::{shared_redis, PrivateRedis, RedisAddr};
pub use schema::TestSchema;

use std::net::TcpListener;

/// What can stop a private server from starting.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{0}")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("PostgreSQL: {0}")]
    Sql(#[from] sqlx::Error),
}

impl TestkitError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
        let what = what.into();
        move |source| TestkitError::Io { what, source }
    }
}

/// A port nothing listens on right now. Another process may take it before the caller
/// binds it; the servers here retry on another port when that happens.
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
