//! The API over real HTTP against the real binary: the life of an attestation,
//! idempotency and replay, batches, pagination under concurrent inserts, trace ids, and
//! the operator surface (metrics, OpenAPI, readiness, events).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::crypto::Keypair;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

both_stores!(an_attestation_goes_from_accepted_to_finalized_with_a_verifiable_proof);
async fn an_attestation_goes_from_accepted_to_finalized_with_a_verifiable_proof(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let before_status = node.get_ok("/api/consensus/status").await;
    let before_stats = node.get_ok("/api/consensus/stats").await;
    let before_tipset = node.get_ok("/api/consensus/tipset").await;
    assert_eq!(before_status["height"], 0, "fresh node starts at genesis");
    assert_eq!(before_tipset["count"], 1);
    assert_eq!(before_tipset["tips"][0]["height"], 0);

    let key = Keypair::generate();
    let (att, id) = signed(&anchor, &key);
    let r = node.submit(&att).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"));
    let body = r.json();
    assert_eq!(body["attestation_id"], id);
    assert_eq!(body["digest"], id);
    assert_eq!(body["status"], "accepted");
    // 0.8·0.75 + 0.4·0.25
    let impact = body["impact_score"].as_f64().expect("impact_score");
    assert!((impact - 0.7).abs() < 1e-9, "impact {impact}");

    let view = node.wait_finalized(&id).await;
    assert_eq!(view["attestation_id"], id);
    assert_eq!(
        view["attestation"], att,
        "the stored attestation is what was sent"
    );
    assert!(view["received_at"].is_string());
    let height = view["block"]["height"].as_u64().expect("block height");
    assert!(height >= 1);
    assert_eq!(
        view["proof"]["tree_size"].as_u64().map(|n| n >= 1),
        Some(true)
    );
    check_inclusion(&node, &id, &view).await;

    let hash = view["block"]["hash"].as_str().expect("block hash");
    let block = node.get_ok(&format!("/api/consensus/block/{hash}")).await;
    assert_eq!(block["hash"], hash);
    assert_eq!(block["finalized"], true);
    assert!(block["signature"].is_string(), "a produced block is signed");
    let ids: Vec<&str> = block["attestation_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(ids.contains(&id.as_str()));
    let votes = block["qc"]["votes"]
        .as_array()
        .expect("a finalized block has a QC");
    assert_eq!(votes.len(), 1, "one validator, one vote");
    let node_id = node.get_ok("/health").await["node_id"].clone();
    assert_eq!(votes[0]["validator_id"], node_id);
    assert!(block["qc"]["weight"].as_u64().unwrap_or(0) > 0);

    let fin = node
        .get_ok(&format!("/api/consensus/finality/{hash}"))
        .await;
    assert_eq!(fin["hash"], hash);
    assert_eq!(fin["finalized"], true);
    assert_eq!(fin["height"], height);
    assert_eq!(fin["threshold_bps"], 6667);
    assert_eq!(fin["voters"], json!([node_id]));
    assert!(fin["weight"].as_u64() >= fin["total_weight"].as_u64());

    let status = node.get_ok("/api/consensus/status").await;
    assert!(status["height"].as_u64() >= Some(height));
    assert!(status["finalized_height"].as_u64() >= Some(height));
    assert_eq!(status["genesis_hash"], before_status["genesis_hash"]);
    let stats = node.get_ok("/api/consensus/stats").await;
    assert!(stats["height"].as_u64() >= Some(height));
    assert!(stats["blocks_produced"].as_u64() > before_stats["blocks_produced"].as_u64());
    assert!(stats["blocks_finalized"].as_u64() > before_stats["blocks_finalized"].as_u64());
    assert_eq!(stats["attestations_accepted"], 1);
    let tipset = node.get_ok("/api/consensus/tipset").await;
    assert!(tipset["height"].as_u64() >= Some(height));
    assert!(tipset["tips"]
        .as_array()
        .expect("tips")
        .iter()
        .all(|t| t["height"].as_u64() >= Some(height)));
    let list = node.get_ok("/api/validator/attestations").await;
    assert_eq!(list["items"][0]["attestation_id"], id);
    assert_eq!(list["next_cursor"], Value::Null);
}

both_stores!(every_response_carries_a_trace_id);
async fn every_response_carries_a_trace_id(dir: TestDir) {
    let node = Node::start(&dir).await;
    let sent = node
        .http
        .get(node.url("/health"))
        .header("X-Trace-Id", "it-trace-0001")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        sent.headers().get("x-trace-id").map(|v| v.as_bytes()),
        Some(&b"it-trace-0001"[..])
    );

    // One that is not short and plain is replaced, not echoed into logs and headers.
    for bad in ["has space", &"a".repeat(200), "semi;colon"] {
        let r = node
            .http
            .get(node.url("/health"))
            .header("X-Trace-Id", bad)
            .send()
            .await
            .expect("GET");
        let got = r.headers().get("x-trace-id").expect("trace id");
        assert_ne!(got.as_bytes(), bad.as_bytes());
    }

    // Generated when not sent, and a new one per request.
    let a = node.get("/health").await;
    let b = node.get("/health").await;
    let ta = a
        .header("x-trace-id")
        .expect("generated trace id")
        .to_string();
    let tb = b
        .header("x-trace-id")
        .expect("generated trace id")
        .to_string();
    assert!(ta.len() >= 16 && ta != tb, "{ta} {tb}");

    // Errors carry it too, in the header and the problem body.
    let r = Reply::from(
        node.http
            .get(node.url("/api/validator/attestation/nothex"))
            .header("X-Trace-Id", "it-trace-err")
            .send()
            .await
            .expect("GET"),
    )
    .await
    .expect("body");
    let p = r.problem(400, "invalid_hash");
    assert_eq!(p["trace_id"], "it-trace-err");
    let r = node.get("/no/such/route").await;
    r.problem(404, "not_found");
}

both_stores!(successful_probes_stay_out_of_the_info_log);
async fn successful_probes_stay_out_of_the_info_log(dir: TestDir) {
    let node = Node::start(&dir).await;
    let calls = [
        ("/health", "it-probe-health"),
        ("/ready", "it-probe-ready"),
        ("/metrics", "it-probe-metrics"),
        ("/api/consensus/status", "it-api-status"),
    ];
    for (path, trace) in calls {
        let r = node
            .http
            .get(node.url(path))
            .header("X-Trace-Id", trace)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "{path}");
    }
    let (status, log) = node.terminate().await;
    assert!(status.success(), "{status:?}");
    // The node logs at info by default: API requests are there, probes are not.
    assert!(log.contains("it-api-status"), "{log}");
    for (path, trace) in &calls[..3] {
        assert!(!log.contains(trace), "{path} logged at info:\n{log}");
    }
}

both_stores!(resubmission_is_idempotent_and_a_reused_nonce_is_a_conflict);
async fn resubmission_is_idempotent_and_a_reused_nonce_is_a_conflict(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    let (att, id) = signed(&anchor, &key);
    assert_eq!(node.submit_new(&att).await, id);

    let again = node.submit(&att).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["attestation_id"], id);
    let count = |v: &Value| v["items"].as_array().map(Vec::len).unwrap_or(0);
    let list = node.get_ok("/api/validator/attestations").await;
    assert_eq!(count(&list), 1, "no second copy");

    // After finalization, the same answer with the stored state.
    node.wait_finalized(&id).await;
    let later = node.submit(&att).await;
    assert_eq!(later.status, 200);
    assert_eq!(later.json()["status"], "finalized");

    // Same key and nonce, different content: a replay.
    let mut d = draft(&anchor, "it-attester");
    d.nonce = att["nonce"].as_str().expect("nonce").to_string();
    d.dimensions.insert("quality".into(), 0.6);
    let (other, other_id) = d.sign(&key).expect("sign");
    assert_ne!(other_id.to_hex(), id);
    let r = node.submit(&to_json(&other)).await;
    r.problem(409, "duplicate_nonce");
    assert_eq!(
        node.get(&format!("/api/validator/attestation/{other_id}"))
            .await
            .status,
        404,
        "the replay is not stored"
    );

    // The same nonce under another key is someone else's nonce: fine.
    let mut d = draft(&anchor, "it-attester-2");
    d.nonce = att["nonce"].as_str().expect("nonce").to_string();
    let (third, _) = d.sign(&Keypair::generate()).expect("sign");
    assert_eq!(node.submit(&to_json(&third)).await.status, 201);

    // Inside a batch, the same rules per item.
    let r = node
        .post_json(
            "/api/validator/attestation/batch",
            &batch_body(vec![att.clone(), to_json(&other)]),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["attestation_id"], id);
    assert_eq!(results[0]["status"], "finalized");
    assert_eq!(results[1]["error"]["code"], "duplicate_nonce");
    let list = node.get_ok("/api/validator/attestations").await;
    assert_eq!(count(&list), 2);
}

both_stores!(a_batch_is_stored_whole_and_finalized);
async fn a_batch_is_stored_whole_and_finalized(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    let (items, ids): (Vec<Value>, Vec<String>) = (0..50).map(|_| signed(&anchor, &key)).unzip();
    let r = node
        .post_json("/api/validator/attestation/batch", &batch_body(items))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["accepted"], 50);
    assert_eq!(body["rejected"], 0);
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 50);
    for (i, (res, id)) in results.iter().zip(&ids).enumerate() {
        assert_eq!(res["index"], i);
        assert_eq!(res["attestation_id"], id.as_str());
        assert_eq!(res["status"], "accepted");
        assert!(res.get("error").is_none());
    }
    for id in &ids {
        let view = node.wait_finalized(id).await;
        check_inclusion(&node, id, &view).await;
    }
    let stats = node.get_ok("/api/consensus/stats").await;
    assert_eq!(stats["attestations_accepted"], 50);
    assert_eq!(stats["attestations_pending"], 0);
}

both_stores!(pagination_neither_skips_nor_repeats_under_concurrent_inserts);
async fn pagination_neither_skips_nor_repeats_under_concurrent_inserts(dir: TestDir) {
    let node = Arc::new(Node::start(&dir).await);
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    let (items, batch_ids): (Vec<Value>, Vec<String>) =
        (0..150).map(|_| signed(&anchor, &key)).unzip();
    let mut existing = batch_ids.clone();
    let r = node
        .post_json("/api/validator/attestation/batch", &batch_body(items))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A writer keeps inserting while the walk runs; it records each acknowledged id.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let writer = {
        let (node, acked, stop, anchor) =
            (node.clone(), acked.clone(), stop.clone(), anchor.clone());
        tokio::spawn(async move {
            let key = Keypair::generate();
            loop {
                let (att, _) = signed(&anchor, &key);
                tokio::select! {
                    _ = stop.notified() => return,
                    id = node.submit_new(&att) => acked.lock().expect("lock").push(id),
                }
            }
        })
    };
    // Let the writer get going so inserts overlap the walk from its first page.
    let started = Instant::now();
    while acked.lock().expect("lock").len() < 5 {
        assert!(started.elapsed() < PATIENCE, "writer makes no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    existing.extend(acked.lock().expect("lock").iter().cloned());
    let acked_at_start = acked.lock().expect("lock").len();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/validator/attestations?limit=37".to_string(),
            Some(c) => format!("/api/validator/attestations?limit=37&cursor={c}"),
        };
        let page = node.get_ok(&path).await;
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 37);
        for it in items {
            let id = it["attestation_id"].as_str().expect("id").to_string();
            *seen.entry(id.clone()).or_default() += 1;
            order.push(id);
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), 37, "only the last page is short");
                cursor = Some(c.to_string());
            }
            None => break,
        }
        // At least one insert lands between any two pages.
        let had = acked.lock().expect("lock").len();
        let waited = Instant::now();
        while acked.lock().expect("lock").len() == had {
            assert!(waited.elapsed() < PATIENCE, "writer stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    stop.notify_one();
    writer.await.expect("writer task");
    let acked_total = acked.lock().expect("lock").len();
    assert!(
        acked_total > acked_at_start,
        "no insert happened during the walk; the test proves nothing"
    );
    assert!(pages >= 5);

    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated ids: {repeated:?}");
    let missing: Vec<_> = existing
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "skipped ids: {missing:?}");
    let all_acked = acked.lock().expect("lock").clone();
    let known: HashSet<&String> = existing.iter().chain(all_acked.iter()).collect();
    let foreign: Vec<_> = seen.keys().filter(|id| !known.contains(id)).collect();
    assert!(foreign.is_empty(), "ids nobody submitted: {foreign:?}");
    // Newest first: the batch, stored in item order, comes back reversed.
    let walked_batch: Vec<&String> = order.iter().filter(|id| batch_ids.contains(id)).collect();
    let reversed: Vec<&String> = batch_ids.iter().rev().collect();
    assert_eq!(walked_batch, reversed, "not newest first");
}

both_stores!(metrics_openapi_readiness_and_events);
async fn metrics_openapi_readiness_and_events(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;

    // Subscribe before the submission so the finalization cannot be missed.
    let mut events = node
        .http
        .get(node.url("/api/events"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("GET /api/events");
    assert_eq!(events.status(), 200);
    let ct = events
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");

    let (att, id) = signed(&anchor, &Keypair::generate());
    node.submit_new(&att).await;
    let mut stream = String::new();
    let deadline = Instant::now() + PATIENCE;
    while !stream.contains("event: block_finalized") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.chunk())
            .await
            .expect("no block_finalized event in time")
            .expect("event stream")
            .expect("stream ended");
        stream.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(stream.contains("event: attestation_accepted"), "{stream}");
    assert!(stream.contains(&id), "{stream}");
    drop(events);
    node.wait_finalized(&id).await;

    let metrics = node.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    for family in [
        "http_requests_total",
        "attestations_accepted_total",
        "blocks_produced_total",
        "blocks_finalized_total",
        "finality_lag_blocks",
        "db_write_queue_depth",
    ] {
        assert!(
            metrics.text.lines().any(|l| l.starts_with(family)),
            "no {family} in /metrics:\n{}",
            metrics.text
        );
    }
    let accepted = metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix("attestations_accepted_total "))
        .expect("attestations_accepted_total sample");
    assert_eq!(accepted.trim().parse::<f64>().ok(), Some(1.0));
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("http_requests_total{")
                && l.contains("route=\"/api/validator/attestation/submit\"")
                && l.contains("status=\"201\"")),
        "submit not counted:\n{}",
        metrics.text
    );

    let api = node.get("/openapi.json").await;
    assert_eq!(api.status, 200);
    let doc = api.json();
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/validator/attestation/submit",
        "/api/validator/attestation/{id}",
        "/api/consensus/tipset",
        "/health",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
    // 429 documented exactly where the limiter applies.
    let responses = |path: &str, method: &str| doc["paths"][path][method]["responses"].clone();
    for (path, method) in [
        ("/api/validator/attestation/submit", "post"),
        ("/api/validator/attestation/{id}", "get"),
        ("/api/validator/register", "post"),
    ] {
        let r = responses(path, method);
        assert!(r["429"].is_object(), "{method} {path} lacks 429: {r}");
        assert!(r["429"]["headers"]["Retry-After"].is_object(), "{r}");
    }
    for (path, method) in [
        ("/health", "get"),
        ("/metrics", "get"),
        ("/api/consensus/submit-block", "post"),
    ] {
        let r = responses(path, method);
        assert!(r.is_object() && r["429"].is_null(), "{method} {path}: {r}");
    }

    let ready = node.get("/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let ready = ready.json();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["checks"]["store"]["status"], "ok");

    let health = node.get_ok("/health").await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["chain_id"], anchor.chain_id.as_str());
    let consensus = node.get_ok("/api/consensus/health").await;
    assert_eq!(consensus["healthy"], true);
}

/// One GET with `headers`: status, headers and the body's bytes as sent.
async fn get_bytes(node: &Node, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
    let mut req = node.http.get(node.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let r = req.send().await.expect("GET");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

both_stores!(a_cached_attestation_reads_the_same_in_every_encoding);
async fn a_cached_attestation_reads_the_same_in_every_encoding(dir: TestDir) {
    use std::io::Read;
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    // A few in one block, so that the proof makes the answer large enough to be stored
    // compressed.
    let mut ids = Vec::new();
    for _ in 0..8 {
        let (att, id) = signed(&anchor, &Keypair::generate());
        assert_eq!(node.submit(&att).await.status, 201);
        ids.push(id);
    }
    let path = format!("/api/validator/attestation/{}", ids[0]);
    let zstd = [("accept-encoding", "zstd")];
    // Wait for finality as a zstd client, so that the cache entry is made for one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (headers, compressed) = loop {
        let (status, headers, body) = get_bytes(&node, &path, &zstd).await;
        assert_eq!(status, 200);
        let text = match headers.get("content-encoding") {
            Some(_) => zstd::decode_all(&body[..]).expect("zstd body"),
            None => body.clone(),
        };
        let view: Value = serde_json::from_slice(&text).expect("json");
        if view["status"] == "finalized" {
            break (headers, body);
        }
        assert!(Instant::now() < deadline, "not finalized: {view}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        headers.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"zstd"[..]),
        "a finalized attestation is served from the cache as stored"
    );
    let etag = headers.get("etag").expect("etag").clone();
    let raw = zstd::decode_all(&compressed[..]).expect("zstd body");

    // A client without Accept-Encoding gets the identity body; the entry keeps it, and
    // the cache counts the kept bytes.
    let before = node.metric("cache_bytes").await;
    for _ in 0..2 {
        let (status, headers, body) = get_bytes(&node, &path, &[]).await;
        assert_eq!(status, 200);
        assert!(headers.get("content-encoding").is_none());
        assert_eq!(headers.get("etag"), Some(&etag));
        assert_eq!(body, raw);
        assert_eq!(node.metric("cache_bytes").await, before + raw.len() as f64);
    }

    // The stored codec is still served as stored; gzip through the compression layer.
    let (_, headers, body) = get_bytes(&node, &path, &zstd).await;
    assert_eq!(body, compressed);
    assert_eq!(headers.get("etag"), Some(&etag));
    let (_, headers, body) = get_bytes(&node, &path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        headers.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let mut gunzipped = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut gunzipped)
        .expect("gzip body");
    assert_eq!(gunzipped, raw);

    let etag = etag.to_str().expect("ascii etag");
    let (status, _, body) = get_bytes(&node, &path, &[("if-none-match", etag)]).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
}
