//! `node0 db-pool-probe` against the real PostgreSQL test server: the binary as an
//! operator runs it, its JSON read back.

use std::process::Output;

use bizra_store::{PgConfig, PostgresStore, Store};
use bizra_testkit::{shared_postgres_url, TestSchema};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_node0");

async fn probe(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("db-pool-probe")
        .args(["--database-url", &shared_postgres_url()])
        .args(args)
        .env_remove("NODE0_DATABASE_URL")
        .output()
        .await
        .expect("run node0 db-pool-probe")
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "probe failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} is not a count in {v:#}"))
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

async fn schema_exists(name: &str) -> bool {
    let mut conn = PgConnection::connect(&shared_postgres_url())
        .await
        .expect("test PostgreSQL");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .expect("pg_namespace");
    let _ = conn.close().await;
    exists
}

/// Four tasks per connection on a pool of 2, for two seconds: the pool is saturated, every
/// operation waited its turn, nothing failed, and the probe's own schema is gone after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturates_a_small_pool_and_reports_the_waits() {
    for op in ["read", "mixed"] {
        let out = probe(&[
            "--pool-size",
            "2",
            "--concurrency",
            "8",
            "--duration-s",
            "2",
            "--op",
            op,
        ])
        .await;
        let v = report(&out);
        assert_eq!(v["probe"], "db-pool-probe");
        assert_eq!(u(&v, "/config/pool_size"), 2);
        assert_eq!(u(&v, "/config/concurrency"), 8);
        assert_eq!(v["config"]["op"], op);
        let completed = u(&v, "/operations/completed");
        assert!(completed > 0, "{op}: no operation completed: {v:#}");
        assert_eq!(u(&v, "/operations/failed"), 0, "{op}: {v:#}");
        for kind in ["timeout", "unavailable", "other"] {
            assert_eq!(u(&v, &format!("/errors/{kind}")), 0, "{op}: {kind}: {v:#}");
        }
        // The pool was full, and never more than full.
        assert_eq!(u(&v, "/pool/peak_in_use"), 2, "{op}: {v:#}");
        assert_eq!(u(&v, "/pool/max_size"), 2);
        assert!(u(&v, "/pool/peak_size") <= 2);
        assert!(u(&v, "/pool/samples") > 10, "{v:#}");
        // Every operation took at least one connection, and with 8 tasks on 2 connections
        // the waits are real.
        assert!(u(&v, "/acquire_wait_ms/count") >= completed, "{v:#}");
        assert!(f(&v, "/acquire_wait_ms/p99") > 0.0, "{v:#}");
        // The percentile names of every tool's report (crates/tools/src/latency.rs).
        assert!(f(&v, "/acquire_wait_ms/p999") >= f(&v, "/acquire_wait_ms/p99"));
        assert!(f(&v, "/acquire_wait_ms/max") >= f(&v, "/acquire_wait_ms/p999"));
        assert!(f(&v, "/acquire_wait_ms/min") <= f(&v, "/acquire_wait_ms/p50"));
        assert_eq!(u(&v, "/op_latency_ms/count"), completed);
        assert!(f(&v, "/op_latency_ms/p50") > 0.0);
        assert!(f(&v, "/throughput_ops_s") > 0.0);
        assert!(f(&v, "/elapsed_s") >= 2.0);
        assert_eq!(
            u(&v, "/reads/misses"),
            0,
            "reads find the seeded rows: {v:#}"
        );
        assert!(u(&v, "/reads/hits") > 0);
        if op == "mixed" {
            assert!(u(&v, "/writes/inserted") > 0, "{v:#}");
            assert!(u(&v, "/operations/by_call/count_attestations") > 0);
        }
        let schema = v["schema"]["name"].as_str().expect("schema name");
        assert!(schema.starts_with("node0_probe_"), "{schema}");
        assert_eq!(v["schema"]["owned"], true);
        assert_eq!(v["schema"]["dropped"], true);
        assert!(!schema_exists(schema).await, "{schema} left behind");
    }
}

/// Connections held 300 ms, 8 tasks on 2 of them, 50 ms to get one: acquires time out, and
/// they are reported as acquire timeouts (the errors this run causes on purpose), nothing
/// else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_connections_past_the_acquire_timeout_counts_timeouts() {
    let out = probe(&[
        "--pool-size",
        "2",
        "--concurrency",
        "8",
        "--duration-s",
        "2",
        "--hold-ms",
        "300",
        "--acquire-timeout-ms",
        "50",
    ])
    .await;
    let v = report(&out);
    assert_eq!(v["config"]["op"], "hold");
    assert!(u(&v, "/operations/by_call/hold") > 0, "{v:#}");
    let timeouts = u(&v, "/errors/acquire_timeout");
    assert!(timeouts > 0, "{v:#}");
    assert_eq!(u(&v, "/errors/timeout"), timeouts);
    assert_eq!(u(&v, "/errors/statement_timeout"), 0);
    assert_eq!(u(&v, "/errors/unavailable"), 0, "{v:#}");
    assert_eq!(u(&v, "/errors/other"), 0, "{v:#}");
    assert_eq!(u(&v, "/operations/failed"), timeouts);
    assert_eq!(u(&v, "/pool/peak_in_use"), 2, "{v:#}");
    // A timed-out acquire waited the whole timeout, and is in the histogram.
    assert!(f(&v, "/acquire_wait_ms/max") >= 50.0, "{v:#}");
    // A successful hold took its 300 ms.
    assert!(f(&v, "/op_latency_ms/p50") >= 300.0, "{v:#}");
}

/// `--schema` probes an existing node schema read-only: it must hold the node's tables,
/// writes are refused, and nothing in it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_schema_is_probed_read_only() {
    let schema = TestSchema::create().await.expect("test schema");
    // Empty: no node tables, so the probe refuses rather than creating them.
    let out = probe(&[
        "--schema",
        &schema.name,
        "--op",
        "ping",
        "--duration-s",
        "1",
    ])
    .await;
    assert!(!out.status.success(), "probed a schema without tables");

    let mut config = PgConfig::new(schema.url.clone());
    config.schema = Some(schema.name.clone());
    config.max_connections = 2;
    let store = PostgresStore::open(config).await.expect("node tables");
    let out = probe(&[
        "--schema",
        &schema.name,
        "--op",
        "write",
        "--duration-s",
        "1",
    ])
    .await;
    assert!(!out.status.success(), "wrote into a node's schema");
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));

    let out = probe(&[
        "--schema",
        &schema.name,
        "--op",
        "read",
        "--pool-size",
        "2",
        "--operations",
        "200",
    ])
    .await;
    let v = report(&out);
    assert_eq!(u(&v, "/operations/completed"), 200, "{v:#}");
    assert_eq!(v["schema"]["owned"], false);
    assert_eq!(v["schema"]["dropped"], false);
    assert!(schema_exists(&schema.name).await);
    assert_eq!(store.count_attestations().await.expect("count"), 0);
    store.close().await;
}

/// No server: a non-zero exit and no report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_database_is_a_failure() {
    let out = Command::new(BIN)
        .args([
            "db-pool-probe",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/test",
            "--duration-s",
            "1",
        ])
        .output()
        .await
        .expect("run node0");
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}
