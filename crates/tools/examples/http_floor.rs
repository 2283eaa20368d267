//! The floor under the node's `/health`: the same kind of JSON answer from a bare hyper
//! server and from a bare axum router, with no middleware, store or state. Run beside
//! the node and load both with the same generator: what the node costs on top of its
//! HTTP stack is the difference (BENCHMARKS.md).
//!
//!     cargo run --release -p bizra-tools --example http_floor -- hyper 127.0.0.1:18200
//!     cargo run --release -p bizra-tools --example http_floor -- axum 127.0.0.1:18200

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;

/// The shape and size of the node's `/health` answer.
const BODY: &str = r#"{"status":"healthy","version":"0.1.0","node_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0","chain_id":"bizra-devnet","uptime_s":12}"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "hyper".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18200".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("http_floor: {mode} on {addr}");
    match mode.as_str() {
        "axum" => {
            let app = axum::Router::new().route(
                "/health",
                axum::routing::get(|| async {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        BODY,
                    )
                }),
            );
            axum::serve(listener, app).await?;
        }
        "hyper" => loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let answer = hyper::service::service_fn(|_req| async {
                    let mut resp =
                        hyper::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, answer)
                    .await;
            });
        },
        other => return Err(format!("unknown mode {other}: hyper or axum").into()),
    }
    Ok(())
}
