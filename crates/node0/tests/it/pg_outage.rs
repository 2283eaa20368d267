//! PostgreSQL restarted under load: during the outage requests fail with 503
//! within the timeouts (never a hang, never a 500), the node recovers by itself, and no
//! acknowledged attestation is lost.
//!
//! The test runs a PostgreSQL cluster of its own (`bizra_testkit::PrivatePostgres`), so
//! stopping it disturbs no other test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::crypto::Keypair;

/// What the load saw, by kind of answer.
#[derive(Default)]
struct Seen {
    acked: Vec<String>,
    unavailable: u64,
    ok_reads: u64,
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_costs_503s_and_no_acknowledged_attestation() {
    let mut pg = bizra_testkit::PrivatePostgres::init().expect("a private PostgreSQL cluster");
    let dir = TestDir::new();
    let url = pg.url();
    // Short store and request timeouts, so the outage shows in seconds.
    let node = Node::start_in(
        &dir,
        &[
            "--database-url",
            &url,
            "--db-acquire-timeout-ms",
            "1000",
            "--request-timeout-ms",
            "3000",
        ],
    )
    .await;
    let anchor = node.anchor().await;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (seen, stop, anchor) = (seen.clone(), stop.clone(), anchor.clone());
        let base = node.base.clone();
        tasks.push(tokio::spawn(async move {
            let key = Keypair::generate();
            let http = client(Duration::from_secs(20));
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, id) = if i < 2 {
                    let (att, id) = signed(&anchor, &key);
                    let r = http
                        .post(format!("{base}/api/validator/attestation/submit"))
                        .json(&att)
                        .send()
                        .await
                        .expect("the node answers during the outage");
                    (r.status().as_u16(), Some(id))
                } else {
                    let r = http
                        .get(format!("{base}/api/validator/attestations?limit=5"))
                        .send()
                        .await
                        .expect("the node answers during the outage");
                    (r.status().as_u16(), None)
                };
                let took = started.elapsed();
                {
                    let mut s = seen.lock().expect("lock");
                    s.slowest = s.slowest.max(took);
                    match (status, id) {
                        (201, Some(id)) => s.acked.push(id),
                        (200, None) => s.ok_reads += 1,
                        (503, _) => s.unavailable += 1,
                        (other, _) => panic!("answered {other} during a database restart"),
                    }
                }
                if status == 503 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }

    let wait_acked = |n: usize| {
        let seen = seen.clone();
        async move {
            let started = Instant::now();
            while seen.lock().expect("lock").acked.len() < n {
                assert!(started.elapsed() < PATIENCE, "submissions do not succeed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_acked(50).await;

    pg.stop().expect("stop PostgreSQL");
    let down_at = Instant::now();
    let before_outage = seen.lock().expect("lock").unavailable;
    // Requests go on against a dead database for a few seconds; readiness says so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = node.get("/ready").await;
    assert_eq!(ready.status, 503, "ready during the outage: {}", ready.text);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = seen.lock().expect("lock").unavailable - before_outage;
    assert!(during > 0, "no request noticed the outage");

    pg.start().expect("start PostgreSQL again");
    let acked_at_restart = seen.lock().expect("lock").acked.len();
    // Recovery by itself: submissions succeed again without touching the node.
    wait_acked(acked_at_restart + 50).await;
    eprintln!(
        "database down for 3 s; submissions succeeded again {:?} after it was started; {during} x 503 meanwhile",
        down_at.elapsed().saturating_sub(Duration::from_secs(3))
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("tasks ended")
        .into_inner()
        .expect("lock");
    // Never a hang past the timeouts: the request timeout (3 s) bounds every answer.
    assert!(
        seen.slowest < Duration::from_millis(4500),
        "a request took {:?}",
        seen.slowest
    );
    assert!(seen.ok_reads > 0);
    assert_eq!(node.get("/ready").await.status, 200);
    for id in &seen.acked {
        let v = node.wait_finalized(id).await;
        check_inclusion(&node, id, &v).await;
    }
}
