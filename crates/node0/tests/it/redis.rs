//! Redis: the shared L2 cache and the shared rate limiter, against the real `node0` binary
//! and a real Redis (the test process's shared server; servers of their own for the
//! outage tests). Each test uses its own key prefix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::crypto::Keypair;
use bizra_testkit::{PrivateRedis, RedisAddr};
use serde_json::json;

/// The Redis server the tests share (a private one of this test process unless
/// `NODE0_TEST_REDIS_URL` names another).
fn shared() -> RedisAddr {
    bizra_testkit::shared_redis()
}

/// A key prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("node0-test:{test}:{}:{nanos}:", std::process::id())
}

// ---- metrics --------------------------------------------------------------------------

async fn metrics(node: &Node) -> String {
    let r = node.get("/metrics").await;
    assert_eq!(r.status, 200);
    r.text
}

fn header_u64(r: &Reply, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", r.header(name)))
}

async fn submit_finalized(node: &Node, n: usize) -> Vec<String> {
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    let mut ids = Vec::new();
    for _ in 0..n {
        let (att, _) = signed(&anchor, &key);
        ids.push(node.submit_new(&att).await);
    }
    for id in &ids {
        node.wait_finalized(id).await;
    }
    ids
}

// ---- the L2 cache ---------------------------------------------------------------------

#[tokio::test]
async fn a_restarted_node_with_a_cold_l1_is_served_from_l2() {
    let url = shared().url();
    let prefix = unique_prefix("l2");
    let dir = TestDir::new();
    let flags = ["--redis-url", &url, "--redis-prefix", &prefix];
    let node = Node::start_in(&dir, &flags).await;
    let id = submit_finalized(&node, 1).await.remove(0);
    // The finalized read above cached it; this one is an L1 hit.
    let first = node.get(&format!("/api/validator/attestation/{id}")).await;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("etag").to_string();
    // The write to Redis is queued, not awaited: wait for it to land.
    let key = format!("{prefix}c1:att:{id}");
    let deadline = Instant::now() + PATIENCE;
    while shared().command(&["EXISTS", &key]).unwrap() != ":1" {
        assert!(Instant::now() < deadline, "{key} never written to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ttl: i64 = shared().command(&["TTL", &key]).unwrap()[1..]
        .parse()
        .unwrap();
    assert!((250..=300).contains(&ttl), "L2 TTL {ttl}");
    let (status, _) = node.terminate().await;
    assert!(status.success());

    let node = Node::start_in(&dir, &flags).await;
    let m = metrics(&node).await;
    assert_eq!(metric(&m, "cache_hits_total", "tier=\"l2\""), 0.0);
    let again = node.get(&format!("/api/validator/attestation/{id}")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text, first.text, "the L2 body is the stored body");
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(
        again.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let m = metrics(&node).await;
    assert_eq!(metric(&m, "cache_hits_total", "tier=\"l2\""), 1.0, "{m}");
    // Promoted to L1: the next read does not go to Redis.
    let r = node
        .http
        .get(node.url(&format!("/api/validator/attestation/{id}")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let m = metrics(&node).await;
    assert_eq!(metric(&m, "cache_hits_total", "tier=\"l2\""), 1.0);
    assert_eq!(metric(&m, "cache_l2_fallbacks_total", ""), 0.0, "{m}");
    let ready = node.get_ok("/ready").await;
    assert_eq!(ready["checks"]["cache_l2"]["status"], "ok", "{ready}");
    assert!(ready["checks"]["cache_l2"]["latency_ms"].as_f64().is_some());
}

// ---- rate limiting ----------------------------------------------------------------------

#[tokio::test]
async fn past_the_burst_a_429_problem_with_ratelimit_headers() {
    let url = shared().url();
    let prefix = unique_prefix("burst");
    // A restarted Redis (or another test) may have dropped the script: the limiter must
    // fall back from EVALSHA to EVAL by itself.
    assert_eq!(shared().command(&["SCRIPT", "FLUSH"]).unwrap(), "+OK");
    let dir = TestDir::new();
    let node = Node::start_in(
        &dir,
        &[
            "--redis-url",
            &url,
            "--redis-prefix",
            &prefix,
            "--rate-limit",
            "on",
            "--rate-read-per-s",
            "0.2",
            "--rate-read-burst",
            "5",
        ],
    )
    .await;
    for expect_remaining in (0..5).rev() {
        let r = node.get("/api/consensus/status").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(header_u64(&r, "ratelimit-limit"), 5);
        assert_eq!(header_u64(&r, "ratelimit-remaining"), expect_remaining);
    }
    let r = node.get("/api/consensus/tipset").await;
    let body = r.problem(429, "rate_limited");
    assert!(body["detail"].as_str().unwrap().contains("read"), "{body}");
    let retry = header_u64(&r, "retry-after");
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_eq!(header_u64(&r, "ratelimit-limit"), 5);
    assert_eq!(header_u64(&r, "ratelimit-remaining"), 0);
    let reset = header_u64(&r, "ratelimit-reset");
    assert!((20..=25).contains(&reset), "RateLimit-Reset {reset}");
    // Unknown routes count too: a scanner cannot probe for free.
    assert_eq!(node.get("/no/such/route").await.status, 429);

    // Exempt routes, and another class, are not affected.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(node.get(path).await.status, 200, "{path}");
        assert!(node.get(path).await.header("ratelimit-limit").is_none());
    }
    let anchor = {
        // genesis is a read: build the anchor from the data directory's genesis instead.
        let g: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.data().join("genesis.json")).expect("genesis.json"),
        )
        .unwrap();
        bizra_ledger::params::NetworkAnchor {
            chain_id: g["chain_id"].as_str().unwrap().to_string(),
            genesis_merkle_root: g["genesis_merkle_root"].as_str().unwrap().parse().unwrap(),
        }
    };
    let (att, _) = signed(&anchor, &Keypair::generate());
    let r = node.submit(&att).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let m = metrics(&node).await;
    assert_eq!(
        metric(&m, "rate_limited_total", "class=\"read\""),
        2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "rate_limited_total", "class=\"submit\""), 0.0);
    assert_eq!(metric(&m, "rate_limit_fallbacks_total", ""), 0.0, "{m}");
    // Decided in Redis: the client's TAT key is there.
    let tat = format!("{prefix}rl:read:127.0.0.1");
    assert_eq!(shared().command(&["EXISTS", &tat]).unwrap(), ":1");
}

#[tokio::test]
async fn local_limiter_keys_clients_by_trusted_forwarded_for() {
    let dir = TestDir::new();
    let node = Node::start_in(
        &dir,
        &[
            "--rate-limit",
            "on",
            "--rate-read-per-s",
            "0.1",
            "--rate-read-burst",
            "3",
            "--trusted-proxies",
            "127.0.0.1,10.0.0.0/8",
        ],
    )
    .await;
    let get_as = |xff: &'static str| {
        let req = node.http.get(node.url("/api/consensus/status"));
        async move {
            Reply::from(req.header("x-forwarded-for", xff).send().await.unwrap())
                .await
                .unwrap()
        }
    };
    // 203.0.113.1 behind two trusted proxies, with a forged left-most entry.
    for _ in 0..3 {
        assert_eq!(get_as("6.6.6.6, 203.0.113.1, 10.1.2.3").await.status, 200);
    }
    get_as("7.7.7.7, 203.0.113.1, 10.1.2.3")
        .await
        .problem(429, "rate_limited");
    // Another client behind the same proxy has its own quota.
    assert_eq!(get_as("203.0.113.2").await.status, 200);
    let m = metrics(&node).await;
    assert_eq!(metric(&m, "rate_limited_total", "class=\"read\""), 1.0);
    let ready = node.get_ok("/ready").await;
    assert_eq!(ready["checks"]["cache_l2"]["status"], "disabled");
}

#[tokio::test]
async fn two_nodes_share_one_quota_through_redis() {
    let url = shared().url();
    let prefix = unique_prefix("shared");
    let flags = [
        "--redis-url",
        &url,
        "--redis-prefix",
        &prefix,
        "--rate-limit",
        "on",
        "--rate-read-per-s",
        "0.1",
        "--rate-read-burst",
        "10",
    ];
    let (da, db) = (TestDir::new(), TestDir::new());
    let a = Node::start_in(&da, &flags).await;
    let b = Node::start_in(&db, &flags).await;
    let mut ok = [0u32; 2];
    let mut limited = [0u32; 2];
    for i in 0..30 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = node.get("/api/consensus/status").await;
        match r.status {
            200 => ok[i % 2] += 1,
            429 => limited[i % 2] += 1,
            s => panic!("status {s}: {}", r.text),
        }
    }
    let total = ok[0] + ok[1];
    // One quota of 10 for both (each alone would have allowed 10: 20 in all); a test
    // slower than 10 s could see one more.
    assert!(
        (10..=11).contains(&total),
        "allowed {ok:?}, refused {limited:?}"
    );
    assert!(limited[0] > 0 && limited[1] > 0, "refused {limited:?}");
}

// ---- outages -----------------------------------------------------------------------------

#[tokio::test]
async fn redis_killed_mid_load_costs_no_request() {
    let mut redis = PrivateRedis::start().expect("a private redis-server");
    let dir = TestDir::new();
    let node = Arc::new(
        Node::start_in(
            &dir,
            &[
                "--redis-url",
                &redis.url(),
                "--rate-limit",
                "on",
                "--rate-read-per-s",
                "100000",
                "--rate-read-burst",
                "100000",
                "--rate-submit-per-s",
                "100000",
                "--rate-submit-burst",
                "100000",
                "--rate-admin-per-s",
                "0.01",
                "--rate-admin-burst",
                "3",
            ],
        )
        .await,
    );
    let ids = Arc::new(submit_finalized(&node, 4).await);
    let ready = node.get_ok("/ready").await;
    assert_eq!(ready["checks"]["cache_l2"]["status"], "ok", "{ready}");
    let anchor = node.anchor().await;

    let stop_at = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (node, ids) = (node.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = w;
            while Instant::now() < stop_at {
                let path = match i % 3 {
                    0 => format!("/api/validator/attestation/{}", ids[i % ids.len()]),
                    1 => "/api/consensus/tipset".to_string(),
                    _ => "/api/consensus/stats".to_string(),
                };
                let r = node.get(&path).await;
                seen.push((path, r.status, r.text));
                i += 1;
            }
            seen
        }));
    }
    for _ in 0..2 {
        let (node, anchor) = (node.clone(), anchor.clone());
        tasks.push(tokio::spawn(async move {
            let key = Keypair::generate();
            let mut seen = Vec::new();
            while Instant::now() < stop_at {
                let (att, _) = signed(&anchor, &key);
                let r = node.submit(&att).await;
                seen.push(("submit".to_string(), r.status, r.text));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.stop();
    let killed_at = Instant::now();
    let mut total = 0;
    for t in tasks {
        for (what, status, text) in t.await.unwrap() {
            total += 1;
            assert!(
                status == 200 || status == 201,
                "{what}: {status} {text} ({:?} after the kill)",
                killed_at.elapsed()
            );
        }
    }
    assert!(total > 50, "only {total} requests in 3 s");

    let m = metrics(&node).await;
    assert!(metric(&m, "redis_failures_total", "") > 0.0, "{m}");
    assert!(metric(&m, "rate_limit_fallbacks_total", "") > 0.0, "{m}");
    assert!(metric(&m, "cache_l2_fallbacks_total", "") > 0.0, "{m}");
    let ready = node.get("/ready").await;
    assert_eq!(
        ready.status, 200,
        "Redis down does not make the node unready"
    );
    assert_eq!(ready.json()["checks"]["cache_l2"]["status"], "down");

    // Quotas still hold, now decided by the local limiter: the admin burst is 3.
    let before = metric(&m, "rate_limit_fallbacks_total", "");
    for _ in 0..3 {
        let r = node
            .post_json("/api/validator/register", &json!({"not": "a registration"}))
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
    node.post_json("/api/validator/register", &json!({}))
        .await
        .problem(429, "rate_limited");
    let m = metrics(&node).await;
    assert!(
        metric(&m, "rate_limit_fallbacks_total", "") >= before + 4.0,
        "{m}"
    );
    assert_eq!(metric(&m, "rate_limited_total", "class=\"admin\""), 1.0);

    // Redis back on the same port: the node reconnects by itself.
    redis.restart().expect("redis-server back on its port");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ready = node.get_ok("/ready").await;
        if ready["checks"]["cache_l2"]["status"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "never reconnected: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tat = format!("node0:{}:rl:read:127.0.0.1", anchor.chain_id);
    let deadline = Instant::now() + PATIENCE;
    loop {
        node.get_ok("/api/consensus/status").await;
        if redis.addr().command(&["EXISTS", &tat]).unwrap() == ":1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never decided in Redis again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stalled_redis_costs_at_most_its_timeout() {
    let redis = PrivateRedis::start().expect("a private redis-server");
    let dir = TestDir::new();
    let node = Node::start_in(
        &dir,
        &[
            "--redis-url",
            &redis.url(),
            "--redis-timeout-ms",
            "50",
            "--rate-limit",
            "on",
        ],
    )
    .await;
    let ids = submit_finalized(&node, 2).await;
    let ready = node.get_ok("/ready").await;
    assert_eq!(ready["checks"]["cache_l2"]["status"], "ok", "{ready}");
    // Redis answers nothing for 2 s (the connection stays open: a stall, not an outage).
    let addr = redis.addr();
    let stall = std::thread::spawn(move || addr.command(&["DEBUG", "SLEEP", "2"]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        // An unknown id misses L1 and so asks L2 before the store (then 404); status asks
        // only the limiter. Both go to the stalled Redis.
        let (path, expect) = if i % 2 == 0 {
            (format!("/api/validator/attestation/{}", nonce()), 404)
        } else {
            ("/api/consensus/status".to_string(), 200)
        };
        let t = Instant::now();
        let r = node.get(&path).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, expect, "{path}: {}", r.text);
    }
    // Cached answers are still served.
    for id in &ids {
        node.get_ok(&format!("/api/validator/attestation/{id}"))
            .await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a request waited {slowest:?} on a stalled Redis"
    );
    let m = metrics(&node).await;
    assert!(
        metric(&m, "redis_failures_total", "reason=\"timeout\"") > 0.0,
        "{m}"
    );
    assert!(metric(&m, "rate_limit_fallbacks_total", "") > 0.0, "{m}");
    assert!(metric(&m, "cache_l2_fallbacks_total", "") > 0.0, "{m}");
    assert_eq!(stall.join().unwrap().unwrap(), "+OK");
}

#[tokio::test]
async fn a_node_pointed_at_a_dead_redis_serves_normally() {
    let dead = free_port();
    let dir = TestDir::new();
    let node = Node::start_in(
        &dir,
        &[
            "--redis-url",
            &format!("redis://127.0.0.1:{dead}"),
            "--rate-limit",
            "on",
        ],
    )
    .await;
    let ids = submit_finalized(&node, 2).await;
    for id in &ids {
        let v = node
            .get_ok(&format!("/api/validator/attestation/{id}"))
            .await;
        assert_eq!(v["status"], "finalized");
    }
    node.get_ok("/api/consensus/tipset").await;
    let ready = node.get("/ready").await;
    assert_eq!(ready.status, 200);
    let checks = &ready.json()["checks"];
    assert_eq!(checks["cache_l2"]["status"], "down", "{checks}");
    assert_eq!(checks["store"]["status"], "ok");
    let m = metrics(&node).await;
    assert!(
        metric(&m, "rate_limit_fallbacks_total", "reason=\"down\"") > 0.0,
        "{m}"
    );
    assert!(
        metric(&m, "cache_l2_fallbacks_total", "reason=\"down\"") > 0.0,
        "{m}"
    );
    assert_eq!(metric(&m, "cache_hits_total", "tier=\"l2\""), 0.0);
}
