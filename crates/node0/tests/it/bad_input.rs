//! The bad-input sweep: every body a careless or hostile client can send, on
//! every route that takes a body, gets a 4xx problem: never a 5xx, a dropped connection
//! or a hang, and the node keeps serving with its state intact.

use std::time::Duration;

use crate::common::*;
use bizra_ledger::crypto::Keypair;

const ROUTES: [&str; 6] = [
    "/api/validator/attestation/submit",
    "/api/validator/attestation/batch",
    "/api/validator/attestation/verify",
    "/api/validator/register",
    "/api/validator/exit",
    "/api/validator/slash",
];

/// Named bad bodies. `valid` is a valid attestation's JSON text, the raw material for
/// near-misses.
fn bodies(valid: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, body: Vec<u8>| out.push((name.to_string(), body));

    // Truncated JSON.
    for cut in [1, valid.len() / 3, valid.len() / 2, valid.len() - 1] {
        add(
            &format!("truncated at {cut}"),
            valid.as_bytes()[..cut].to_vec(),
        );
    }
    add("unclosed object", b"{\"version\":".to_vec());
    add("unclosed string", b"{\"version\":\"poi-1.0".to_vec());

    // Huge numbers, alone and in fields of every kind.
    for n in [
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "1e-400",
        "18446744073709551616",
    ] {
        add(&format!("number {n}"), n.as_bytes().to_vec());
        add(
            &format!("impact_score {n}"),
            valid
                .replacen(
                    "\"impact_score\":",
                    &format!("\"impact_score\":{n},\"x\":"),
                    1,
                )
                .into_bytes(),
        );
        add(
            &format!("pack_bytes {n}"),
            valid
                .replacen(
                    "\"evidence\":{",
                    &format!("\"evidence\":{{\"pack_bytes\":{n},"),
                    1,
                )
                .into_bytes(),
        );
        add(
            &format!("registration numbers {n}"),
            format!(
                "{{\"chain_id\":\"bizra-testnet-001\",\"epoch\":{n},\"pubkey_ed25519\":\"ed25519:{}\",\
                 \"network_address\":\"http://x\",\"stake_bond\":{n},\"signature\":\"{}\"}}",
                "a".repeat(64),
                "b".repeat(128)
            )
            .into_bytes(),
        );
        add(
            &format!("exit epoch {n}"),
            format!(
                "{{\"chain_id\":\"bizra-testnet-001\",\"epoch\":{n},\"validator_id\":\"{}\",\"signature\":\"{}\"}}",
                "a".repeat(64),
                "b".repeat(128)
            )
            .into_bytes(),
        );
        add(
            &format!("batch item {n}"),
            format!("{{\"attestations\":[{n}]}}").into_bytes(),
        );
    }

    // NaN and Infinity are not JSON.
    for lit in ["NaN", "Infinity", "-Infinity", "nan", "inf"] {
        add(&format!("literal {lit}"), lit.as_bytes().to_vec());
        add(
            &format!("impact_score {lit}"),
            valid
                .replacen(
                    "\"impact_score\":",
                    &format!("\"impact_score\":{lit},\"x\":"),
                    1,
                )
                .into_bytes(),
        );
        add(
            &format!("in a batch {lit}"),
            format!("{{\"attestations\":[{{\"measurement\":{lit}}}]}}").into_bytes(),
        );
    }

    // Deep nesting, under and over the 64 KiB single-body limit.
    add("100k [", "[".repeat(100_000).into_bytes());
    add("60k [", "[".repeat(60_000).into_bytes());
    add(
        "60k [ closed",
        format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)).into_bytes(),
    );
    add("10k objects", "{\"a\":".repeat(10_000).into_bytes());
    add(
        "deep inside a batch",
        format!("{{\"attestations\":[{}]}}", "[".repeat(50_000)).into_bytes(),
    );
    add(
        "deep inside a field",
        valid
            .replacen(
                "\"nonce\":",
                &format!("\"nonce\":{}1{},\"y\":", "[".repeat(5000), "]".repeat(5000)),
                1,
            )
            .into_bytes(),
    );
    add(
        "deep slash evidence",
        format!("{{\"evidence\":{}}}", "{\"double_vote\":".repeat(5000)).into_bytes(),
    );

    // Wrong types.
    for v in [
        "[]",
        "{}",
        "\"an attestation\"",
        "42",
        "true",
        "{\"version\":1}",
        "{\"attestations\":\"x\"}",
        "{\"attestations\":{}}",
        "{\"attestations\":[[]]}",
        "{\"evidence\":\"x\"}",
        "{\"evidence\":{\"double_proposal\":{\"first\":1,\"second\":2}}}",
        "{\"chain_id\":5,\"epoch\":\"now\"}",
    ] {
        add(&format!("wrong type {v}"), v.as_bytes().to_vec());
    }
    add(
        "time_window a string",
        valid
            .replacen("\"time_window\":[", "\"time_window\":\"x\",\"z\":[", 1)
            .into_bytes(),
    );

    // Invalid UTF-8 and invalid Unicode.
    add("bytes ff fe", b"\xff\xfe{}".to_vec());
    add("overlong slash", b"{\"version\":\"\xc0\xaf\"}".to_vec());
    let mut broken = valid.as_bytes().to_vec();
    let at = valid
        .find("it-attester")
        .expect("attester id in the sample")
        + 1;
    broken[at] = 0xc3;
    broken[at + 1] = 0x28;
    add("invalid UTF-8 inside a string", broken);
    add("lone surrogate", b"{\"version\":\"\\ud800\"}".to_vec());
    add(
        "BOM before JSON",
        [&b"\xef\xbb\xbf"[..], valid.as_bytes()].concat(),
    );
    add("NUL bytes", vec![0u8; 1024]);

    // Unknown fields.
    add(
        "unknown top-level field",
        valid.replacen('{', "{\"surprise\":1,", 1).into_bytes(),
    );
    add(
        "unknown field in a batch",
        b"{\"attestations\":[],\"extra\":true}".to_vec(),
    );
    add(
        "unknown field in a registration",
        format!(
            "{{\"chain_id\":\"bizra-testnet-001\",\"epoch\":0,\"pubkey_ed25519\":\"ed25519:{}\",\
             \"network_address\":\"http://x\",\"stake_bond\":1,\"signature\":\"{}\",\"admin\":true}}",
            "a".repeat(64),
            "b".repeat(128)
        )
        .into_bytes(),
    );

    // Nothing much at all.
    add("empty body", Vec::new());
    add("whitespace", b"  \n\t ".to_vec());
    add("null", b"null".to_vec());
    add("two documents", b"{} {}".to_vec());
    out
}

/// Sends `body`; fails the test when no answer comes.
async fn send(
    node: &Node,
    http: &reqwest::Client,
    route: &str,
    name: &str,
    ct: &str,
    body: Vec<u8>,
) -> Reply {
    let sent = http
        .post(node.url(route))
        .header("content-type", ct)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => Reply::from(r).await.expect("read body"),
        Err(e) => {
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why.push_str(&format!(": {s}"));
                src = s.source();
            }
            panic!("POST {route} with {name}: no answer: {why}")
        }
    }
}

/// POSTs `total` bytes of `[` with chunked transfer encoding over a raw connection;
/// returns the status and the response head. A reset while sending fails the test.
async fn chunked_upload(node: &Node, route: &str, total: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await?;
        let head = format!(
            "POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await?;
        let chunk = vec![b'['; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            s.write_all(&chunk).await?;
            s.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        s.write_all(b"0\r\n\r\n").await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .expect("chunked upload hangs")
        .unwrap_or_else(|e| panic!("chunked upload to {route}: {e}"));
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

both_stores!(bad_input_gets_only_4xx);
async fn bad_input_gets_only_4xx(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    let (valid, _) = signed(&anchor, &key);
    let valid = valid.to_string();
    // A few seconds: a hang fails the test instead of stalling it.
    let http = client(Duration::from_secs(5));

    let all = bodies(&valid);
    let mut sent = 0usize;
    for route in ROUTES {
        for (name, body) in &all {
            let r = send(&node, &http, route, name, "application/json", body.clone()).await;
            assert!(
                (400..500).contains(&r.status),
                "{route} with {name}: {} {}",
                r.status,
                r.text
            );
            assert!(
                r.content_type().starts_with(PROBLEM_JSON),
                "{route} with {name}: content-type {:?}",
                r.content_type()
            );
            assert!(r.json()["code"].is_string(), "{route} with {name}");
            sent += 1;
        }
        // The same as the wrong media type, which must be refused before it is read.
        for ct in ["text/plain", "application/jsonx", "multipart/form-data"] {
            send(&node, &http, route, ct, ct, valid.clone().into_bytes())
                .await
                .problem(415, "unsupported_media_type");
        }
    }
    assert!(sent > 300);

    // 10 MB: far over every limit, as JSON-looking text and as junk.
    let ten_mb = 10 * 1024 * 1024;
    let mut json_like = b"{\"attestations\":[".to_vec();
    while json_like.len() < ten_mb {
        json_like.extend_from_slice(valid.as_bytes());
        json_like.push(b',');
    }
    for route in ROUTES {
        for body in [json_like.clone(), vec![b'a'; ten_mb]] {
            send(&node, &http, route, "10 MB", "application/json", body)
                .await
                .problem(413, "payload_too_large");
        }
    }

    // 10 MB in chunks, with no Content-Length to refuse it by.
    for route in [ROUTES[0], ROUTES[1]] {
        let (status, head) = chunked_upload(&node, route, ten_mb).await;
        assert_eq!(status, 413, "{route} chunked: {head}");
        assert!(head.contains(PROBLEM_JSON), "{head}");
    }

    // Refused before it is read at all: wrong media type, unknown route, wrong method.
    let junk = vec![b'a'; ten_mb];
    send(
        &node,
        &http,
        ROUTES[0],
        "10 MB text",
        "text/plain",
        junk.clone(),
    )
    .await
    .problem(415, "unsupported_media_type");
    send(
        &node,
        &http,
        "/api/nowhere",
        "10 MB",
        "application/json",
        junk.clone(),
    )
    .await
    .problem(404, "not_found");
    send(&node, &http, "/health", "10 MB", "application/json", junk)
        .await
        .problem(405, "method_not_allowed");

    // Still serving, state intact: nothing was stored, and a valid submission works.
    let h = node.get("/health").await;
    assert_eq!(h.status, 200);
    let stats = node.get_ok("/api/consensus/stats").await;
    assert_eq!(stats["attestations_accepted"], 0, "bad input was stored");
    let validators = node.get_ok("/api/validator/stats").await;
    assert_eq!(
        validators["validator_count"], 1,
        "bad input changed the registry"
    );
    assert_eq!(validators["pending_count"], 0);
    let (att, id) = signed(&anchor, &key);
    node.submit_new(&att).await;
    node.wait_finalized(&id).await;

    // The node's own count agrees: no 5xx answered to anyone.
    let metrics = node.get("/metrics").await.text;
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("status=\"5"))
        .collect();
    assert!(server_errors.is_empty(), "{server_errors:?}");
}
