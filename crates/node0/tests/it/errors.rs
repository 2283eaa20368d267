//! Refusals over HTTP: every validation code of docs/protocol.md §2.3, schema errors with
//! their field path, every 4xx class of the HTTP API, and the 503s of the concurrency limit
//! and the request timeout, each as RFC 9457 problem+json.

use crate::common::*;
use bizra_ledger::attestation::types::Benchmarks;
use bizra_ledger::attestation::Attestation;
use bizra_ledger::crypto::{Keypair, PublicKey};
use serde_json::{json, Value};

type Edit = Box<dyn Fn(&mut Attestation, &Keypair)>;
type JsonEdit = Box<dyn Fn(&mut Value)>;

/// One way to break a valid attestation, and the code that must name it.
struct Case {
    name: &'static str,
    code: &'static str,
    edit: Edit,
}

fn case(
    name: &'static str,
    code: &'static str,
    edit: impl Fn(&mut Attestation, &Keypair) + 'static,
) -> Case {
    Case {
        name,
        code,
        edit: Box::new(edit),
    }
}

/// An encoding of 32 bytes that is not a point of the curve, found rather than
/// hard-coded so it follows the ledger's own check.
fn not_a_point() -> String {
    let bad = (0u8..=255)
        .map(|b| PublicKey([b; 32]))
        .find(|pk| pk.check_point().is_err())
        .expect("some repeated byte is not a curve point");
    bad.to_string()
}

/// Each case re-signs after its edit (where the edit is not the signature itself), so
/// the rule under test is the first one that fails.
fn rule_cases() -> Vec<Case> {
    vec![
        case("version", "invalid_version", |a, k| {
            a.version = "poi-0.9".into();
            resign(a, k);
        }),
        case("chain", "chain_mismatch", |a, k| {
            a.anchor.chain_id = "another-chain".into();
            resign(a, k);
        }),
        case("genesis root", "genesis_mismatch", |a, k| {
            a.anchor.genesis_merkle_root = "00".repeat(32);
            resign(a, k);
        }),
        case(
            "evidence hash uppercase",
            "invalid_evidence_hash",
            |a, k| {
                a.evidence.pack_sha256 = a.evidence.pack_sha256.to_uppercase();
                resign(a, k);
            },
        ),
        case("evidence hash short", "invalid_evidence_hash", |a, k| {
            a.evidence.pack_sha256 = "abcd".into();
            resign(a, k);
        }),
        case("nonce short", "invalid_nonce", |a, k| {
            a.nonce = "ab".repeat(15);
            resign(a, k);
        }),
        case("nonce not hex", "invalid_nonce", |a, k| {
            a.nonce = "zz".repeat(20);
            resign(a, k);
        }),
        case("nonce too long", "invalid_nonce", |a, k| {
            a.nonce = "a".repeat(129);
            resign(a, k);
        }),
        case("window unparsable", "invalid_time_window", |a, k| {
            a.time_window[0] = "yesterday".into();
            resign(a, k);
        }),
        case("window reversed", "invalid_time_window", |a, k| {
            a.time_window = [rfc3339_ago(0), rfc3339_ago(3600)];
            resign(a, k);
        }),
        case("window in the future", "invalid_time_window", |a, k| {
            a.time_window[1] = rfc3339_ahead(3600);
            resign(a, k);
        }),
        case("window over 366 days", "invalid_time_window", |a, k| {
            a.time_window[0] = rfc3339_ago(367 * 86_400);
            resign(a, k);
        }),
        case("dimension above 1", "dimension_out_of_range", |a, k| {
            a.measurement.dimensions.insert("quality".into(), 1.5);
            resign(a, k);
        }),
        case("dimension below 0", "dimension_out_of_range", |a, k| {
            a.measurement.dimensions.insert("reach".into(), -0.1);
            resign(a, k);
        }),
        case("weights sum", "weights_sum", |a, k| {
            a.measurement.weights.insert("reach".into(), 0.2);
            resign(a, k);
        }),
        case("negative weight", "weights_sum", |a, k| {
            a.measurement.weights = [("quality".into(), 1.5), ("reach".into(), -0.5)].into();
            resign(a, k);
        }),
        case("impact", "impact_mismatch", |a, k| {
            a.measurement.impact_score += 0.01;
            resign(a, k);
        }),
        case("benchmark delta", "benchmark_delta_mismatch", |a, k| {
            a.benchmarks = Some(Benchmarks {
                pre: Some([("performance".into(), 0.5)].into()),
                post: Some([("performance".into(), 0.75)].into()),
                delta: Some(0.5),
            });
            resign(a, k);
        }),
        case("signature alg", "unsupported_signature_alg", |a, k| {
            resign(a, k);
            a.signature.alg = "rsa".into();
        }),
        case("pubkey not a point", "invalid_pubkey", |a, k| {
            resign(a, k);
            a.attester.pubkey_ed25519 = not_a_point();
        }),
        case("pubkey malformed", "invalid_pubkey", |a, k| {
            resign(a, k);
            a.attester.pubkey_ed25519 = "ed25519:xyz".into();
        }),
        case("signature flipped", "bad_signature", |a, k| {
            resign(a, k);
            let s = &mut a.signature.sig_base16;
            let flipped = if s.starts_with('0') { "1" } else { "0" };
            s.replace_range(0..1, flipped);
        }),
        case("signed by another key", "bad_signature", |a, k| {
            resign(a, &Keypair::generate());
            a.attester.pubkey_ed25519 = k.public().to_string();
        }),
        case("content changed after signing", "bad_signature", |a, k| {
            resign(a, k);
            a.attester.id = "someone-else".into();
        }),
    ]
}

both_stores!(every_validation_code_is_a_400_with_that_code);
async fn every_validation_code_is_a_400_with_that_code(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    for c in rule_cases() {
        let (mut att, _) = draft(&anchor, "it-attester").sign(&key).expect("sign");
        (c.edit)(&mut att, &key);
        let body = to_json(&att);
        let r = node.submit(&body).await;
        assert_eq!(r.status, 400, "{}: {}", c.name, r.text);
        let p = r.problem(400, c.code);
        assert!(!p["detail"].as_str().unwrap_or("").is_empty(), "{}", c.name);

        // verify agrees, without storing.
        let v = node
            .post_json("/api/validator/attestation/verify", &body)
            .await;
        assert_eq!(v.status, 200, "{}: {}", c.name, v.text);
        let v = v.json();
        assert_eq!(v["valid"], false, "{}", c.name);
        assert_eq!(v["reasons"][0]["code"], c.code, "{}: {v}", c.name);

        // The same refusal inside a batch, next to a valid item.
        let (good, good_id) = signed(&anchor, &key);
        let b = node
            .post_json(
                "/api/validator/attestation/batch",
                &batch_body(vec![good, body]),
            )
            .await;
        assert_eq!(b.status, 207, "{}: {}", c.name, b.text);
        let b = b.json();
        assert_eq!(b["results"][0]["attestation_id"], good_id);
        assert_eq!(b["results"][1]["error"]["code"], c.code, "{}", c.name);
    }
    let stats = node.get_ok("/api/consensus/stats").await;
    assert_eq!(
        stats["attestations_accepted"].as_u64(),
        Some(rule_cases().len() as u64),
        "only the valid batch items were stored"
    );
}

both_stores!(a_valid_attestation_verifies_without_being_stored);
async fn a_valid_attestation_verifies_without_being_stored(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let (att, id) = signed(&anchor, &Keypair::generate());
    let v = node
        .post_json("/api/validator/attestation/verify", &att)
        .await;
    assert_eq!(v.status, 200, "{}", v.text);
    let v = v.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["reasons"], json!([]));
    assert_eq!(v["computed"]["digest"], id);
    let impact = v["computed"]["impact_score"].as_f64().expect("impact");
    assert!((impact - 0.7).abs() < 1e-9);
    node.get(&format!("/api/validator/attestation/{id}"))
        .await
        .problem(404, "not_found");
    // Verify reports a nonce already used by another stored attestation.
    node.submit_new(&att).await;
    let mut d = draft(&anchor, "it-attester");
    d.nonce = att["nonce"].as_str().expect("nonce").into();
    let key = Keypair::generate();
    let (first, _) = d.clone().sign(&key).expect("sign");
    node.submit_new(&to_json(&first)).await;
    d.dimensions.insert("reach".into(), 0.2);
    let (replay, _) = d.sign(&key).expect("sign");
    let v = node
        .post_json("/api/validator/attestation/verify", &to_json(&replay))
        .await
        .json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["reasons"][0]["code"], "duplicate_nonce", "{v}");
}

both_stores!(schema_errors_name_the_field);
async fn schema_errors_name_the_field(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let (good, _) = signed(&anchor, &Keypair::generate());

    let edits: Vec<(&str, &str, JsonEdit)> = vec![
        (
            "schema",
            "evidence.extra",
            Box::new(|v| v["evidence"]["extra"] = json!(1)),
        ),
        (
            "schema",
            "surprise",
            Box::new(|v| v["surprise"] = json!(true)),
        ),
        (
            "schema",
            "measurement.impact_score",
            Box::new(|v| v["measurement"]["impact_score"] = json!("high")),
        ),
        (
            "schema",
            "time_window[1]",
            Box::new(|v| v["time_window"][1] = json!(5)),
        ),
        (
            "schema",
            "resources",
            Box::new(|v| v["resources"] = Value::Null),
        ),
        (
            "schema",
            "evidence.pack_bytes",
            Box::new(|v| v["evidence"]["pack_bytes"] = json!(-1)),
        ),
        (
            "schema",
            "attester.id",
            Box::new(|v| v["attester"]["id"] = json!("")),
        ),
        (
            "schema",
            "measurement.dimensions",
            Box::new(|v| {
                let many: serde_json::Map<String, Value> =
                    (0..65).map(|i| (format!("d{i}"), json!(0.5))).collect();
                v["measurement"]["dimensions"] = Value::Object(many);
            }),
        ),
    ];
    for (code, field, edit) in edits {
        let mut v = good.clone();
        edit(&mut v);
        let p = node.submit(&v).await.problem(400, code);
        assert_eq!(p["field"], field, "{p}");
        // The batch names the item too.
        let b = node
            .post_json(
                "/api/validator/attestation/batch",
                &batch_body(vec![v.clone()]),
            )
            .await;
        let p = b.problem(400, "batch_rejected");
        assert_eq!(p["results"][0]["error"]["code"], code);
        assert_eq!(
            p["results"][0]["error"]["field"],
            format!("attestations[0].{field}")
        );
    }

    // A missing required field.
    let mut v = good.clone();
    v.as_object_mut().expect("object").remove("nonce");
    node.submit(&v).await.problem(400, "schema");

    // Not JSON at all.
    let text = good.to_string();
    for body in [&text.as_bytes()[..text.len() / 2], b"{", b"", b"[1,2"] {
        let r = node
            .post_raw(
                "/api/validator/attestation/submit",
                "application/json",
                body.to_vec(),
            )
            .await;
        r.problem(400, "invalid_json");
    }
    // Trailing garbage after a valid document.
    let mut trailing = text.clone().into_bytes();
    trailing.extend_from_slice(b" {}");
    node.post_raw(
        "/api/validator/attestation/submit",
        "application/json",
        trailing,
    )
    .await
    .problem(400, "invalid_json");
}

both_stores!(every_4xx_class_is_a_problem);
async fn every_4xx_class_is_a_problem(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    let submit = "/api/validator/attestation/submit";
    let batch = "/api/validator/attestation/batch";

    // 413: a single body over 64 KiB (valid JSON, so only its size is wrong).
    let mut d = draft(&anchor, "it-attester");
    d.methodology_ref = Some("m".repeat(70 * 1024));
    let (big, _) = d.sign(&key).expect("sign");
    node.submit(&to_json(&big))
        .await
        .problem(413, "payload_too_large");
    // Just under the limit is fine.
    let mut d = draft(&anchor, "it-attester");
    d.methodology_ref = Some("m".repeat(60 * 1024));
    let (fits, _) = d.sign(&key).expect("sign");
    assert_eq!(node.submit(&to_json(&fits)).await.status, 201);
    // A batch over 1 MiB is refused; one over 64 KiB but under 1 MiB is not.
    let padding = vec![to_json(&fits); 20];
    node.post_json(batch, &batch_body(padding))
        .await
        .problem(413, "payload_too_large");
    let r = node
        .post_json(batch, &batch_body(vec![to_json(&fits); 2]))
        .await;
    assert_eq!(r.status, 200, "a 120 KiB batch is under 1 MiB: {}", r.text);

    // 415: wrong or missing content type.
    let (att, _) = signed(&anchor, &key);
    let bytes = att.to_string().into_bytes();
    for ct in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let r = if ct.is_empty() {
            Reply::from(
                node.http
                    .post(node.url(submit))
                    .body(bytes.clone())
                    .send()
                    .await
                    .expect("POST"),
            )
            .await
            .expect("body")
        } else {
            node.post_raw(submit, ct, bytes.clone()).await
        };
        r.problem(415, "unsupported_media_type");
    }
    node.post_raw(batch, "text/json", bytes.clone())
        .await
        .problem(415, "unsupported_media_type");
    // A charset parameter is still JSON.
    let r = node
        .post_raw(submit, "application/json; charset=utf-8", bytes.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // 400 for a malformed hash in a path, 404 for an unknown one.
    for path in [
        "/api/validator/attestation/xyz",
        &format!("/api/validator/attestation/{}", "A".repeat(64)),
        &format!("/api/validator/attestation/{}", "a".repeat(63)),
        &format!("/api/consensus/block/{}", "ABC".repeat(21) + "D"),
        "/api/consensus/block/xyz",
        "/api/consensus/finality/123",
        "/api/validator/nothex",
    ] {
        node.get(path).await.problem(400, "invalid_hash");
    }
    let zero = "0".repeat(64);
    for path in [
        format!("/api/validator/attestation/{zero}"),
        format!("/api/consensus/block/{zero}"),
        format!("/api/consensus/finality/{zero}"),
        format!("/api/validator/{zero}"),
    ] {
        node.get(&path).await.problem(404, "not_found");
    }

    // Unknown routes and wrong methods.
    node.get("/api/nothing/here")
        .await
        .problem(404, "not_found");
    node.post_json("/api/consensus/nothing", &json!({}))
        .await
        .problem(404, "not_found");
    let r = Reply::from(
        node.http
            .delete(node.url("/health"))
            .send()
            .await
            .expect("DELETE"),
    )
    .await
    .expect("body");
    r.problem(405, "method_not_allowed");
    let r = Reply::from(
        node.http
            .put(node.url(submit))
            .header("content-type", "application/json")
            .body(bytes.clone())
            .send()
            .await
            .expect("PUT"),
    )
    .await
    .expect("body");
    r.problem(405, "method_not_allowed");
    node.post_json("/api/consensus/tipset", &json!({}))
        .await
        .problem(405, "method_not_allowed");
    // A GET on a POST route is a wrong method, not a malformed attestation id.
    node.get(submit).await.problem(405, "method_not_allowed");
    node.get(batch).await.problem(405, "method_not_allowed");

    // Batch shapes.
    let too_many = vec![json!({}); 1001];
    let p = node
        .post_json(batch, &batch_body(too_many))
        .await
        .problem(400, "batch_too_large");
    assert_eq!(p["field"], "attestations");
    node.post_json(batch, &batch_body(vec![]))
        .await
        .problem(400, "empty_batch");
    node.post_json(batch, &json!({"attestations": {}}))
        .await
        .problem(400, "schema");
    node.post_json(batch, &json!({"items": []}))
        .await
        .problem(400, "schema");

    // A mixed batch: 207 with a result per item, in order.
    let (v1, id1) = signed(&anchor, &key);
    let (v2, id2) = signed(&anchor, &key);
    let mut bad = v2.clone();
    bad["evidence"]["extra"] = json!(1);
    let r = node
        .post_json(batch, &batch_body(vec![v1, bad, json!("nope"), v2]))
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    let b = r.json();
    assert_eq!(b["accepted"], 2);
    assert_eq!(b["rejected"], 2);
    let res = b["results"].as_array().expect("results");
    assert_eq!(res.len(), 4);
    assert_eq!(res[0]["attestation_id"], id1);
    assert_eq!(res[0]["status"], "accepted");
    assert_eq!(res[1]["index"], 1);
    assert_eq!(res[1]["error"]["code"], "schema");
    assert_eq!(res[1]["error"]["field"], "attestations[1].evidence.extra");
    assert!(res[1].get("attestation_id").is_none());
    assert_eq!(res[2]["error"]["code"], "schema");
    // An item that is not an object at all is named by its own path.
    assert_eq!(res[2]["error"]["field"], "attestations[2]");
    assert_eq!(res[3]["attestation_id"], id2);
    for id in [&id1, &id2] {
        node.wait_finalized(id).await;
    }

    // List queries.
    let list = "/api/validator/attestations";
    node.get(&format!("{list}?limit=501"))
        .await
        .problem(400, "invalid_query");
    node.get(&format!("{list}?limit=0"))
        .await
        .problem(400, "invalid_query");
    node.get(&format!("{list}?limit=ten"))
        .await
        .problem(400, "invalid_query");
    node.get(&format!("{list}?colour=red"))
        .await
        .problem(400, "invalid_query");
    for cursor in ["bogus", "c1_", "c1_XYZ", "c1_0ff", "c2_10"] {
        node.get(&format!("{list}?cursor={cursor}"))
            .await
            .problem(400, "invalid_cursor");
    }
    assert_eq!(node.get(&format!("{list}?limit=500")).await.status, 200);
    node.get("/api/consensus/blocks?limit=1001")
        .await
        .problem(400, "invalid_query");
    node.get("/api/validator/list?status=bogus")
        .await
        .problem(400, "invalid_query");
    node.get("/api/validator/epoch/minus-one/summary")
        .await
        .problem(400, "invalid_path");
}

/// A batch of `n` fresh attestations: long enough in flight (`n` signatures to check,
/// rows to commit) for other requests to arrive meanwhile.
async fn big_batch(node: &Node, n: usize) -> Value {
    let anchor = node.anchor().await;
    let key = Keypair::from_seed([7; 32]);
    batch_body((0..n).map(|_| signed(&anchor, &key).0).collect())
}

/// Past `--max-concurrent-requests`, a request is answered at once with a 503 problem
/// (`overloaded`, `Retry-After`), counted in `/metrics`; the requests within the limit
/// are served.
#[tokio::test]
async fn past_the_concurrency_limit_a_request_gets_an_overloaded_problem() {
    let dir = TestDir::new();
    let node = Node::start_in(&dir, &["--max-concurrent-requests", "1"]).await;
    let body = big_batch(&node, 400).await;
    let batch = node.post_json("/api/validator/attestation/batch", &body);
    let probes = async {
        let mut replies = Vec::new();
        for _ in 0..200 {
            replies.push(node.get("/api/consensus/status").await);
        }
        replies
    };
    let (batch, probes) = tokio::join!(batch, probes);
    // Either the batch or a probe can be the one turned away, whichever came second.
    let mut refused = 0;
    for r in probes.iter().chain([&batch]) {
        if r.status == 503 {
            r.problem(503, "overloaded");
            assert_eq!(r.header("retry-after"), Some("1"));
            refused += 1;
        } else {
            assert!(
                r.status == 200 || r.status == 207,
                "{}: {}",
                r.status,
                r.text
            );
        }
    }
    assert!(
        refused > 0,
        "no request was refused past a limit of 1; batch {}",
        batch.status
    );
    let metrics = node.get("/metrics").await.text;
    assert!(
        metrics.contains(r#"overloaded_total{stage="http"}"#),
        "no http overload counted"
    );
}

/// Liveness answers 200 while the node turns other requests away: an orchestrator must
/// not restart a node for being busy.
#[tokio::test]
async fn liveness_answers_while_the_node_sheds_load() {
    let dir = TestDir::new();
    let node = Node::start_in(&dir, &["--max-concurrent-requests", "1"]).await;
    // The batch holds the one slot unless a status request took it first; then again.
    for _ in 0..5 {
        let body = big_batch(&node, 400).await;
        let batch = node.post_json("/api/validator/attestation/batch", &body);
        let probes = async {
            let mut replies = Vec::new();
            for _ in 0..200 {
                let status = node.get("/api/consensus/status").await.status;
                let health = node.get("/health").await;
                replies.push((status, health));
            }
            replies
        };
        let (_, probes) = tokio::join!(batch, probes);
        for (_, health) in &probes {
            assert_eq!(health.status, 200, "{}", health.text);
        }
        // A `/health` sent between two refused requests ran while the limit was taken.
        if probes.windows(2).any(|w| w[0].0 == 503 && w[1].0 == 503) {
            return;
        }
    }
    panic!("the batch never held the limit while probes ran");
}

/// A request that takes longer than `--request-timeout-ms` is answered with a 503
/// problem (`timeout`), not left waiting.
#[tokio::test]
async fn past_the_request_timeout_the_answer_is_a_timeout_problem() {
    let dir = TestDir::new();
    let node = Node::start_in(&dir, &["--request-timeout-ms", "1"]).await;
    let body = big_batch(&node, 400).await;
    let r = node
        .post_json("/api/validator/attestation/batch", &body)
        .await;
    r.problem(503, "timeout");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Quick routes still answer within the same limit.
    assert_eq!(node.get("/health").await.status, 200);
}
