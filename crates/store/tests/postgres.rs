//! The store suite on PostgreSQL (a schema of its own per test, dropped afterwards), plus
//! what only this backend has: the pool settings, PgBouncer mode, concurrent replicas
//! sharing one database, and a server that goes away.

mod suite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bizra_store::{AnyStore, PgConfig, PostgresStore, Store, StoreError};
use bizra_testkit::TestSchema;
use suite::{batch, key, store_suite, Harness};

/// A schema on the test server; every `open` reaches the same tables.
struct PgHarness {
    schema: TestSchema,
    pgbouncer: bool,
}

impl PgHarness {
    async fn new() -> PgHarness {
        PgHarness::with(false).await
    }

    async fn with(pgbouncer: bool) -> PgHarness {
        PgHarness {
            schema: TestSchema::create().await.expect("test schema"),
            pgbouncer,
        }
    }

    fn config(&self) -> PgConfig {
        let mut c = PgConfig::new(self.schema.url.clone());
        c.schema = Some(self.schema.name.clone());
        c.pgbouncer = self.pgbouncer;
        c
    }
}

impl Harness for PgHarness {
    type S = AnyStore;
    async fn open(&self) -> AnyStore {
        AnyStore::open_postgres(self.config())
            .await
            .expect("open store")
    }
    fn shared(&self) -> bool {
        true
    }
}

store_suite!(PgHarness::new().await);

/// PgBouncer's transaction pooling forbids named prepared statements; the suite must pass
/// with every statement sent unnamed.
mod pgbouncer_mode {
    use super::*;
    store_suite!(PgHarness::with(true).await);
}

#[tokio::test]
async fn tables_are_in_their_schema_at_the_current_version() {
    let h = PgHarness::new().await;
    let s = PostgresStore::open(h.config()).await.unwrap();
    assert_eq!(s.schema(), h.schema.name);
    assert_eq!(
        s.schema_version().await.unwrap(),
        bizra_store::postgres::PG_SCHEMA_VERSION
    );
    // Opening again (a second replica, a restart) migrates nothing and keeps the version.
    let again = PostgresStore::open(h.config()).await.unwrap();
    assert_eq!(
        again.schema_version().await.unwrap(),
        bizra_store::postgres::PG_SCHEMA_VERSION
    );
}

/// A database a newer build migrated further is refused rather than misread. Two
/// workers: the refused open's transaction is rolled back by a task sqlx spawns when it
/// is dropped, and on one thread that task could not run while the schema's `Drop`
/// waits for its locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let h = PgHarness::new().await;
    let s = PostgresStore::open(h.config()).await.unwrap();
    s.close().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&h.schema.url)
        .await
        .unwrap();
    sqlx::query(&format!(
        "INSERT INTO \"{}\".schema_version (version, name, applied_at_ms) \
         VALUES (999, 'future', 0)",
        h.schema.name
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let err = PostgresStore::open(h.config()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

/// A schema that a build of block header version 1 wrote is refused at open with a
/// message that names both versions (docs/protocol.md §3.1), and left as it was: the
/// migration transaction is rolled back before any migration ran. Two workers, as for
/// the newer schema above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_block_header_version_1_is_refused_unchanged() {
    let h = PgHarness::new().await;
    bizra_testkit::v1_store::write_postgres(&h.schema)
        .await
        .expect("a version-1 schema");
    let err = PostgresStore::open(h.config()).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::HeaderVersion {
            place: "database schema",
            found: 1,
            expected: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "this database schema holds block headers of version 1; this node reads and writes \
         version 2; start it with a new database schema (no migration from version 1)"
    );
    assert_eq!(
        bizra_testkit::v1_store::postgres_shape(&h.schema)
            .await
            .expect("readable"),
        (bizra_testkit::v1_store::POSTGRES_SCHEMA_VERSION, false)
    );
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let h = PgHarness::new().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let c = h.config();
            tokio::spawn(async move { PostgresStore::open(c).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().expect("every replica opens");
    }
}

#[tokio::test]
async fn bad_settings_are_refused_before_connecting() {
    let h = PgHarness::new().await;
    let mut c = h.config();
    c.max_connections = 0;
    assert!(matches!(
        PostgresStore::open(c).await,
        Err(StoreError::Invalid(_))
    ));
    let mut c = h.config();
    c.schema = Some("Robert'); DROP TABLE x;--".into());
    assert!(matches!(
        PostgresStore::open(c).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_hang() {
    let mut c = PgConfig::new("postgres://postgres@127.0.0.1:1/test");
    c.acquire_timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let err = PostgresStore::open(c).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_cancelled_as_unavailable() {
    let h = PgHarness::new().await;
    let mut c = h.config();
    c.statement_timeout = Duration::from_millis(200);
    let s = PostgresStore::open(c).await.unwrap();
    // A lock held elsewhere makes the insert wait; the server cancels it at 200 ms.
    let mut blocker = lock_counters(&h).await;
    let items = batch(&key(1), "alice", 0, 3);
    let err = s.insert_attestations(&items).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    // Nothing of the cancelled batch was written, and the store works again.
    assert_eq!(s.count_attestations().await.unwrap(), 0);
    s.insert_attestations(&items).await.unwrap();
    assert_eq!(s.count_attestations().await.unwrap(), 3);
}

/// An external transaction holding `counters` exclusively: attestation inserts wait on it
/// while holding their pool connection.
async fn lock_counters(h: &PgHarness) -> sqlx::PgConnection {
    let mut blocker = <sqlx::PgConnection as sqlx::Connection>::connect(&h.schema.url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".counters IN EXCLUSIVE MODE",
        h.schema.name
    ))
    .execute(&mut blocker)
    .await
    .unwrap();
    blocker
}

#[tokio::test]
async fn every_acquire_is_timed_and_a_full_pool_is_unavailable_after_the_timeout() {
    let h = PgHarness::new().await;
    let waits = Arc::new(AtomicU64::new(0));
    let mut c = h.config();
    c.max_connections = 2;
    c.acquire_timeout = Duration::from_millis(300);
    let counted = waits.clone();
    c.on_acquire = Some(Arc::new(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    }));
    let s = PostgresStore::open(c).await.unwrap();
    let before = waits.load(Ordering::Relaxed);
    s.ping().await.unwrap();
    assert_eq!(waits.load(Ordering::Relaxed), before + 1);

    // Both connections wait on the lock inside an insert; a third caller gets none.
    let mut blocker = lock_counters(&h).await;
    let writers: Vec<_> = (0..2u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(
                async move { s.insert_attestations(&batch(&key(10 + i), "w", 0, 2)).await },
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.pool_stats().in_use < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.pool_stats().in_use, 2, "{:?}", s.pool_stats());
    let started = std::time::Instant::now();
    let err = s.ping().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    let stats = s.pool_stats();
    assert!(stats.max_size == 2 && stats.size <= 2, "{stats:?}");

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    for w in writers {
        assert_eq!(w.await.unwrap().unwrap().len(), 2);
    }
    assert_eq!(s.count_attestations().await.unwrap(), 4);
}

#[tokio::test]
async fn replicas_inserting_at_once_keep_seq_in_commit_order() {
    // Two stores (two replicas' pools) on one schema, inserting concurrently while a
    // reader pages newest-first: every page is a prefix-consistent view, so walking the
    // pages once at the end finds every row exactly once, in strictly falling seq.
    let h = PgHarness::new().await;
    let a = PostgresStore::open(h.config()).await.unwrap();
    let b = PostgresStore::open(h.config()).await.unwrap();
    let tasks: Vec<_> = [(a.clone(), 1u8), (b.clone(), 2u8)]
        .into_iter()
        .map(|(s, k)| {
            tokio::spawn(async move {
                for i in 0..20u64 {
                    s.insert_attestations(&batch(&key(k), "r", i * 10, 10))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    let mut last = u64::MAX;
    loop {
        let page = a.list_attestations(None, cursor, 37).await.unwrap();
        for r in &page.items {
            assert!(r.seq < last, "seq order broken");
            last = r.seq;
            assert!(seen.insert(r.digest), "row repeated");
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 400);
    assert_eq!(b.count_attestations().await.unwrap(), 400);
}
