//! `node0 bench` against an in-process HTTP server: counts, recorded latencies, statuses
//! and gate failures. No timing assertions (the machine is shared).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bizra_tools::bench::{self, BenchArgs};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(list: &[&str]) -> BenchArgs {
    Cli::try_parse_from(std::iter::once("bench").chain(list.iter().copied()))
        .unwrap()
        .args
}

/// Serves `/health` (200) and `/teapot` (418); counts requests.
async fn server() -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let (h1, h2) = (hits.clone(), hits.clone());
    let app = Router::new()
        .route(
            "/health",
            get(move || async move {
                h1.fetch_add(1, Ordering::Relaxed);
                r#"{"status":"healthy"}"#
            }),
        )
        .route(
            "/teapot",
            get(move || async move {
                h2.fetch_add(1, Ordering::Relaxed);
                (StatusCode::IM_A_TEAPOT, "no")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_exactly_rate_times_duration() {
    let (url, hits) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let report = bench::run(args(&[
        "--against",
        &url,
        "--rate",
        "200",
        "--duration",
        "1s",
        "--connections",
        "4",
        "--gates",
        "none",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    assert_eq!(report.run.mode, bench::Mode::Open);
    assert_eq!(report.counts.sent, 200);
    assert_eq!(report.counts.completed, 200);
    assert_eq!(report.counts.ok, 200);
    assert_eq!(report.counts.errors, 0);
    assert_eq!(report.counts.statuses.get("200"), Some(&200));
    assert_eq!(hits.load(Ordering::Relaxed), 200);
    let l = report.latency_ms;
    assert_eq!(l.count, 200);
    assert!(
        l.max > 0.0 && l.p50 > 0.0 && l.p50 <= l.p99 && l.p99 <= l.max,
        "{l:?}"
    );
    assert!(report.elapsed_s > 0.9, "the schedule spans the duration");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(written["counts"]["completed"], 200);
    assert_eq!(written["latency_ms"]["count"], 200);
    assert_eq!(written["latency_ms"]["p99"], l.p99);
    assert_eq!(written["scenario"], "health");
    assert_eq!(written["mode"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_every_answer() {
    let (url, hits) = server().await;
    let report = bench::run(args(&[
        "--against",
        &url,
        "--mode",
        "closed",
        "--connections",
        "4",
        "--threads",
        "2",
        "--duration",
        "300ms",
        "--gates",
        "none",
        "--quiet",
    ]))
    .await
    .unwrap();
    assert_eq!(report.run.mode, bench::Mode::Closed);
    assert_eq!(report.run.threads, 2);
    assert!(report.counts.completed > 0);
    assert_eq!(report.counts.ok, report.counts.completed);
    assert_eq!(report.counts.sent, report.counts.completed);
    assert_eq!(hits.load(Ordering::Relaxed), report.counts.completed);
    assert!(report.latency_ms.max > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_answers_are_errors_and_fail_the_floor() {
    let (url, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let gates = dir.path().join("gates.toml");
    std::fs::write(
        &gates,
        "[[floor]]\nscenarios = [\"*\"]\nmax_error_rate = 0.01\n",
    )
    .unwrap();
    let report = bench::run(args(&[
        "--against",
        &format!("{url}/teapot"),
        "--rate",
        "50",
        "--duration",
        "200ms",
        "--gates-file",
        gates.to_str().unwrap(),
        "--quiet",
    ]))
    .await
    .unwrap();
    assert_eq!(report.counts.completed, 10);
    assert_eq!(report.counts.errors, 10);
    assert_eq!(report.counts.statuses.get("418"), Some(&10));
    assert_eq!(report.error_rate, 1.0);
    assert!(!report.gates_passed);
    assert_eq!(report.gates.len(), 1);
    assert!(!report.gates[0].pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_gate_exits_2_and_unreachable_target_exits_1() {
    let (url, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let gates = dir.path().join("gates.toml");
    std::fs::write(
        &gates,
        "[[floor]]\nscenarios = [\"health\"]\nmin_rps = 1e12\n",
    )
    .unwrap();
    let g = gates.to_str().unwrap();
    let code = bench::main(args(&[
        "--against",
        &url,
        "--rate",
        "20",
        "--duration",
        "100ms",
        "--gates-file",
        g,
        "-q",
    ]))
    .await;
    assert_eq!(code, bench::EXIT_GATE_FAILED);

    // A port nothing listens on (bound, then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let code = bench::main(args(&[
        "--against",
        &dead,
        "--rate",
        "20",
        "--duration",
        "100ms",
        "--gates",
        "none",
        "-q",
    ]))
    .await;
    assert_eq!(code, 1);
}
