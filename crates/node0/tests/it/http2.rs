//! h2c: a client that speaks HTTP/2 without TLS from its first byte ("prior
//! knowledge") is served on the same port as HTTP/1.1, many requests at once on one
//! connection, request bodies and compressed answers included.

use crate::common::*;
use bizra_ledger::crypto::Keypair;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

async fn h2c(node: &Node) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    send
}

/// GET over the h2 connection, asking for no encoding; the status and the body.
async fn h2_get(send: &SendRequest<Full<Bytes>>, path: &str) -> (http::StatusCode, Bytes) {
    let mut req = request("GET", path, Vec::new());
    req.headers_mut().remove(http::header::ACCEPT_ENCODING);
    let r = send.clone().send_request(req).await.expect("h2 GET");
    let status = r.status();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

/// `http_connections_accepted_total`, read over the h2 connection itself: a read on the
/// test's pooled HTTP/1.1 client may open a connection of its own (hyper can start the
/// next request before the previous one's connection is back in its pool).
async fn connections_accepted(send: &SendRequest<Full<Bytes>>) -> f64 {
    let (status, body) = h2_get(send, "/metrics").await;
    assert_eq!(status, 200);
    metric_in(
        &String::from_utf8_lossy(&body),
        "http_connections_accepted_total",
    )
}

fn request(method: &str, path: &str, body: Vec<u8>) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1{path}"))
        .header("content-type", "application/json")
        .header("accept-encoding", "zstd")
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

both_stores!(h2c_with_prior_knowledge_serves_many_streams_on_one_connection);
async fn h2c_with_prior_knowledge_serves_many_streams_on_one_connection(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let send = h2c(&node).await;
    // Counted when accepted, so this read already includes the h2 connection.
    let before = connections_accepted(&send).await;

    // 200 reads at once, on one connection.
    let mut reads = Vec::new();
    for i in 0..200 {
        let mut send = send.clone();
        let path = if i % 2 == 0 {
            "/health"
        } else {
            "/api/consensus/tipset"
        };
        reads.push(tokio::spawn(async move {
            let r = send.send_request(request("GET", path, Vec::new())).await;
            r.map(|r| (r.version(), r.status()))
        }));
    }
    for r in reads {
        let (version, status) = r.await.expect("task").expect("h2 response");
        assert_eq!(version, http::Version::HTTP_2);
        assert_eq!(status, 200);
    }

    // A request body: a submission is stored.
    let (att, id) = signed(&anchor, &Keypair::generate());
    let mut s = send.clone();
    let r = s
        .send_request(request(
            "POST",
            "/api/validator/attestation/submit",
            att.to_string().into_bytes(),
        ))
        .await
        .expect("h2 submit");
    assert_eq!(r.status(), 201);
    let body = r.into_body().collect().await.expect("body").to_bytes();
    let reply: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["attestation_id"], id);
    let (status, _) = h2_get(&send, &format!("/api/validator/attestation/{id}")).await;
    assert_eq!(status, 200);

    // A large answer is compressed as asked.
    let mut s = send.clone();
    let r = s
        .send_request(request("GET", "/openapi.json", Vec::new()))
        .await
        .expect("h2 openapi");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"zstd"[..])
    );

    // All of it over the one h2 connection: no connection was accepted after it.
    let after = connections_accepted(&send).await;
    assert_eq!(
        after - before,
        0.0,
        "connections opened after the h2 one: {}",
        after - before
    );
}
