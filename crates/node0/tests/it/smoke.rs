//! `node0 smoke URL` as an operator runs it: passes against a live node, fails loudly
//! (non-zero exit, a `FAIL` line) against an address where nothing listens.

use std::process::Output;
use std::time::Duration;

use crate::common::*;

async fn smoke(url: &str) -> Output {
    let mut cmd = node0_command();
    cmd.args(["smoke", url, "--finality-timeout-s", "15"]);
    let run = tokio::task::spawn_blocking(move || cmd.output());
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("node0 smoke hangs")
        .expect("join")
        .expect("run node0 smoke")
}

both_stores!(smoke_passes_against_a_running_node);
async fn smoke_passes_against_a_running_node(dir: TestDir) {
    let node = Node::start(&dir).await;
    let out = smoke(&node.base).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for step in [
        "health",
        "genesis",
        "submit",
        "finalized",
        "inclusion proof",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(step)),
            "no passed step {step}:\n{stdout}"
        );
    }
    assert!(stdout.contains("all steps passed"), "{stdout}");
    // It really submitted: the node holds its attestation, finalized.
    let list = node.get_ok("/api/validator/attestations").await;
    assert_eq!(list["items"][0]["status"], "finalized");
}

#[tokio::test]
async fn smoke_fails_where_nothing_listens() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = smoke(&url).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .chain(stderr.lines())
            .any(|l| l.starts_with("FAIL") && l.contains("health")),
        "no FAIL line naming the step:\n{stdout}\n{stderr}"
    );
}
