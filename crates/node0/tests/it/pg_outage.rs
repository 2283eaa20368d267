//! PostgreSQL restarted under load (issue 5): during the outage requests fail with 503
//! within the timeouts (never a hang, never a 500), the node recovers by itself, and no
//! acknowledged attestation is lost.
//!
//! The test runs its own PostgreSQL cluster (initdb in a temporary directory, on a free
//! port), so stopping it disturbs no other test. As root, the server runs as the
//! `postgres` user, which PostgreSQL requires.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bizra_ledger::crypto::Keypair;
use common::*;

/// A PostgreSQL cluster of this test's own.
struct PrivatePg {
    _root: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn pg_bin() -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    // Debian's pg_config may name the client's bindir; the server tools live beside the
    // newest installed server.
    let debian = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
    });
    debian
        .or(out)
        .filter(|p| p.join("initdb").exists())
        .expect("PostgreSQL server binaries (initdb, pg_ctl)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePg {
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn init() -> PrivatePg {
        let root = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(root.path())
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown to postgres failed");
        }
        let pg = PrivatePg {
            data: root.path().join("data"),
            bin: pg_bin(),
            port: free_port(),
            _root: root,
        };
        let data = pg.data.to_str().expect("utf-8 path").to_string();
        pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        pg.start();
        pg
    }

    fn socket_dir(&self) -> &Path {
        self.data.parent().expect("root")
    }

    fn start(&self) {
        let data = self.data.to_str().expect("utf-8 path");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.socket_dir().display()
        );
        let log = self.socket_dir().join("server.log");
        let log = log.to_str().expect("utf-8 path");
        self.run(
            "pg_ctl",
            &["-D", data, "-o", &opts, "-l", log, "-w", "start"],
        );
    }

    /// A fast shutdown: sessions are disconnected, open transactions roll back.
    fn stop(&self) {
        let data = self.data.to_str().expect("utf-8 path");
        self.run("pg_ctl", &["-D", data, "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if let Some(data) = self.data.to_str() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", data, "-m", "immediate", "stop"])
                .output();
        }
    }
}

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
    let pg = PrivatePg::init();
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

    pg.stop();
    let down_at = Instant::now();
    let before_outage = seen.lock().expect("lock").unavailable;
    // Requests go on against a dead database for a few seconds; readiness says so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = node.get("/ready").await;
    assert_eq!(ready.status, 503, "ready during the outage: {}", ready.text);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = seen.lock().expect("lock").unavailable - before_outage;
    assert!(during > 0, "no request noticed the outage");

    pg.start();
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
