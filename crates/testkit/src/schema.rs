//! A throw-away PostgreSQL schema per test, so test runs and tests never see each other's
//! rows.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

use crate::postgres::shared_postgres_url;
use crate::TestkitError;

/// Prefix of every test schema; [`TestSchema::create`] drops leftovers older than an hour
/// (from runs against a shared server that were killed before their cleanup ran).
const PREFIX: &str = "node0_test_";
const STALE_AFTER_SECS: u64 = 3600;

/// A uniquely named, empty schema on the tests' server ([`shared_postgres_url`]);
/// dropped with everything in it when this value is dropped.
#[derive(Debug)]
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    /// Creates the schema. Fails, rather than skipping the test, when the server does not
    /// answer: a test that silently does nothing proves nothing.
    pub async fn create() -> Result<TestSchema, TestkitError> {
        let url = shared_postgres_url();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut random = [0u8; 6];
        getrandom::fill(&mut random)
            .map_err(|e| TestkitError::Failed(format!("no randomness: {e}")))?;
        let name = format!("{PREFIX}{now}_{}", hex::encode(random));
        let mut conn = PgConnection::connect(&url).await.map_err(|e| {
            TestkitError::Failed(format!(
                "PostgreSQL for tests at {url} does not answer ({e})"
            ))
        })?;
        drop_stale(&mut conn, now).await?;
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(TestSchema { url, name })
    }

    /// `url` with this schema as the search path, for a process that takes only a URL.
    pub fn url_with_search_path(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }
}

async fn drop_stale(conn: &mut PgConnection, now: u64) -> Result<(), TestkitError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)",
    )
    .bind(PREFIX)
    .fetch_all(&mut *conn)
    .await?;
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|t| t + STALE_AFTER_SECS < now) {
            // Another run may drop it at the same moment: IF EXISTS, errors ignored.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
    Ok(())
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        // Drop cannot await, and may run inside a runtime: a thread of its own with a
        // one-off runtime does the work.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = runtime {
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&url).await {
                        let _ = sqlx::query(&sql).execute(&mut conn).await;
                        let _ = conn.close().await;
                    }
                });
            }
        });
        let _ = worker.join();
    }
}
