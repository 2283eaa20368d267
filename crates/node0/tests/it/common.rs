//! Harness for the integration tests: runs the real `node0` binary on a free port with its
//! own temporary data directory, and builds signed attestations for the network it serves.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bizra_ledger::attestation::builder::{sign, Draft};
use bizra_ledger::attestation::Attestation;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::merkle::InclusionProof;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_node0");
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";
/// Slot length of test nodes: blocks come fast, so finality is quick to wait for.
pub(crate) const SLOT_MS: &str = "50";
/// How long a test waits for anything the node does in the background.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Defines `$name::sqlite` and `$name::postgres`: the test function `$name(dir: TestDir)`
/// run once on the embedded store and once on PostgreSQL (a schema of its own).
macro_rules! both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::TestDir::new()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::TestDir::postgres().await).await
            }
        }
    };
}

/// A temporary directory holding a node's data directory and the logs of its runs, and
/// the store its nodes use: the embedded one in the data directory, or a PostgreSQL
/// schema of its own (dropped with this value).
pub(crate) struct TestDir {
    root: tempfile::TempDir,
    runs: AtomicU64,
    pub pg: Option<bizra_testkit::TestSchema>,
}

impl TestDir {
    /// Nodes use the embedded store.
    pub(crate) fn new() -> TestDir {
        TestDir {
            root: tempfile::tempdir().expect("temp dir"),
            runs: AtomicU64::new(0),
            pg: None,
        }
    }

    /// Nodes use a fresh schema on the test PostgreSQL server.
    pub(crate) async fn postgres() -> TestDir {
        let schema = bizra_testkit::TestSchema::create()
            .await
            .expect("a schema on the test PostgreSQL server");
        TestDir {
            pg: Some(schema),
            ..TestDir::new()
        }
    }

    /// The flags that point `node0 serve` at this directory's store.
    pub(crate) fn store_args(&self) -> Vec<String> {
        match &self.pg {
            None => Vec::new(),
            Some(s) => vec![
                "--database-url".into(),
                s.url.clone(),
                "--database-schema".into(),
                s.name.clone(),
            ],
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn next_log(&self) -> PathBuf {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        self.root.path().join(format!("node-{n}.log"))
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// The value of the unlabelled metric `name` in a `/metrics` text; it must be there.
#[track_caller]
pub(crate) fn metric_in(exposition: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{exposition}"))
}

/// The sum of the samples of `name` whose label set contains `labels` (`""` for every
/// sample); `None` when there is no such sample.
pub(crate) fn metric_sum_if_present(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let values: Vec<f64> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// [`metric_sum_if_present`] for a metric that must be there: an absent series fails
/// the test instead of reading 0.
#[track_caller]
pub(crate) fn metric(exposition: &str, name: &str, labels: &str) -> f64 {
    metric_sum_if_present(exposition, name, labels)
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in /metrics:\n{exposition}"))
}

/// A port nothing listens on right now. Another process may take it before the node
/// binds it; [`Node::start_in`] retries on that.
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A `node0` command with the inherited `NODE0_*` settings removed, so the developer's
/// environment cannot change what a test runs.
pub(crate) fn node0_command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NODE0_") {
            cmd.env_remove(&k);
        }
    }
    // Plain log text in the log files that a failing test prints.
    cmd.env("NO_COLOR", "1");
    cmd
}

pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// A running `node0 serve`. Dropping it kills the process (SIGKILL) and reaps it.
pub(crate) struct Node {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    pub http: reqwest::Client,
    log: PathBuf,
}

impl Node {
    /// A node on a fresh data directory.
    pub(crate) async fn start(dir: &TestDir) -> Node {
        Node::start_in(dir, &[]).await
    }

    /// Starts `node0 serve` on `dir`'s data directory with `extra` flags and waits until
    /// `/health` answers.
    pub(crate) async fn start_in(dir: &TestDir, extra: &[&str]) -> Node {
        for _attempt in 0..5 {
            let port = free_port();
            let log = dir.next_log();
            let child = spawn_serve(dir, port, extra, &log);
            let mut node = Node {
                child: Some(child),
                port,
                base: format!("http://127.0.0.1:{port}"),
                http: client(Duration::from_secs(10)),
                log,
            };
            match node.wait_healthy().await {
                Ok(()) => return node,
                Err(exited) if exited && node.log_text().contains("cannot listen") => {
                    // Lost the port to another process between probing and binding.
                    continue;
                }
                Err(_) => panic!("node did not become healthy:\n{}", node.log_text()),
            }
        }
        panic!("no free port after 5 attempts")
    }

    /// Starts `cmd`, a `node0 serve` the caller set up to listen on `port` and to log to
    /// `log`, and waits until `/health` answers.
    pub(crate) async fn start_command(mut cmd: Command, port: u16, log: PathBuf) -> Node {
        let out = log_file(&log);
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn node0 serve");
        let mut node = Node {
            child: Some(child),
            port,
            base: format!("http://127.0.0.1:{port}"),
            http: client(Duration::from_secs(10)),
            log,
        };
        if node.wait_healthy().await.is_err() {
            panic!("node did not become healthy:\n{}", node.log_text());
        }
        node
    }

    /// Ok when `/health` answers 200; Err(true) when the process exited first,
    /// Err(false) on timeout.
    async fn wait_healthy(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + PATIENCE;
        let probe = client(Duration::from_secs(1));
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return Err(true);
                }
            }
            if let Ok(r) = probe.get(self.url("/health")).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(false)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9: no chance to flush or drain.
    pub(crate) fn sigkill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a graceful exit; returns its status and the run's log.
    pub(crate) async fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, self.log_text());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node did not stop after SIGTERM:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ---- HTTP helpers -------------------------------------------------------------

    pub(crate) async fn get(&self, path: &str) -> Reply {
        Reply::from(self.http.get(self.url(path)).send().await.expect("GET"))
            .await
            .expect("read body")
    }

    /// The value of the unlabelled metric `name` in `/metrics`; it must be there.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        metric_in(&self.get("/metrics").await.text, name)
    }

    /// GET that must answer 200; the JSON body.
    pub(crate) async fn get_ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.json()
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, "application/json", body.to_string().into_bytes())
            .await
    }

    pub(crate) async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        Reply::from(
            self.http
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("POST"),
        )
        .await
        .expect("read body")
    }

    pub(crate) async fn submit(&self, att: &Value) -> Reply {
        self.post_json("/api/validator/attestation/submit", att)
            .await
    }

    /// Submits and expects 201; returns the id.
    pub(crate) async fn submit_new(&self, att: &Value) -> String {
        let r = self.submit(att).await;
        assert_eq!(r.status, 201, "submit: {}", r.text);
        r.json()["attestation_id"]
            .as_str()
            .expect("attestation_id")
            .to_string()
    }

    /// The network's anchor, as `/api/consensus/genesis` reports it.
    pub(crate) async fn anchor(&self) -> NetworkAnchor {
        let g = self.get_ok("/api/consensus/genesis").await;
        NetworkAnchor {
            chain_id: g["chain_id"].as_str().expect("chain_id").to_string(),
            genesis_merkle_root: g["genesis_merkle_root"]
                .as_str()
                .expect("genesis_merkle_root")
                .parse()
                .expect("64 hex"),
        }
    }

    /// Polls the attestation until it is finalized; returns its view.
    pub(crate) async fn wait_finalized(&self, id: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self
                .get_ok(&format!("/api/validator/attestation/{id}"))
                .await;
            if v["status"] == "finalized" {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "attestation {id} still {} after {PATIENCE:?}",
                v["status"]
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every block of every epoch up to the current one, in (epoch, height) order,
    /// through `/api/consensus/blocks`.
    pub(crate) async fn all_blocks(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let epochs = self.get_ok("/api/consensus/status").await["epoch"]
            .as_u64()
            .expect("epoch");
        for epoch in 0..=epochs {
            let mut from = 0u64;
            loop {
                let page = self
                    .get_ok(&format!(
                        "/api/consensus/blocks?epoch={epoch}&from_height={from}&limit=1000"
                    ))
                    .await;
                out.extend(page["items"].as_array().expect("items").iter().cloned());
                match page["next_from_height"].as_u64() {
                    Some(n) if n > from => from = n,
                    _ => break,
                }
            }
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failing test shows what the node said last.
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// `node0 serve` on `dir`'s data directory and store, with `extra` flags.
fn spawn_serve(dir: &TestDir, port: u16, extra: &[&str], log: &Path) -> Child {
    let out = log_file(log);
    let err = out.try_clone().expect("clone log handle");
    // A test may choose its own slot length.
    let slot: &[&str] = if extra.contains(&"--slot-ms") {
        &[]
    } else {
        &["--slot-ms", SLOT_MS]
    };
    // Tests drive the node from one address far faster than a public client's quota;
    // the tests of the limiter switch it on themselves.
    let limit: &[&str] = if extra.contains(&"--rate-limit") {
        &[]
    } else {
        &["--rate-limit", "off"]
    };
    node0_command()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.data())
        .args(dir.store_args())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(slot)
        .args(limit)
        .args(["--log", "info"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn node0 serve")
}

fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file")
}

/// Runs `node0 serve` expecting it to exit on its own; returns its status and output.
pub(crate) async fn serve_expecting_exit(dir: &TestDir, extra: &[&str]) -> (ExitStatus, String) {
    let log = dir.next_log();
    let mut child = spawn_serve(dir, free_port(), extra, &log);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node0 serve kept running:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A finished HTTP exchange: status, headers and body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub(crate) async fn from(r: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await?;
        Ok(Reply {
            status,
            headers,
            text,
        })
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// Asserts an RFC 9457 problem with `status` and `code`; returns the body.
    #[track_caller]
    pub(crate) fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert!(
            self.content_type().starts_with(PROBLEM_JSON),
            "content-type {:?} for {}",
            self.content_type(),
            self.text
        );
        let body = self.json();
        assert_eq!(body["code"], code, "code; body: {}", self.text);
        assert_eq!(body["status"], status, "status member: {}", self.text);
        for member in ["type", "title", "detail", "trace_id"] {
            assert!(body[member].is_string(), "no {member}: {}", self.text);
        }
        assert_eq!(
            body["trace_id"].as_str(),
            self.header("x-trace-id"),
            "trace_id and X-Trace-Id differ"
        );
        body
    }
}

// ---- attestations -------------------------------------------------------------------

/// RFC 3339 of now minus `secs` seconds, in whole seconds.
pub(crate) fn rfc3339_ago(secs: u64) -> String {
    rfc3339_from_now(-time::Duration::seconds(secs as i64))
}

/// RFC 3339 of now plus `secs` seconds, in whole seconds.
pub(crate) fn rfc3339_ahead(secs: u64) -> String {
    rfc3339_from_now(time::Duration::seconds(secs as i64))
}

fn rfc3339_from_now(offset: time::Duration) -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds");
    (now + offset)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time")
}

/// A fresh 64-hex nonce.
pub(crate) fn nonce() -> String {
    bizra_tools::attest::random_nonce()
}

/// A valid attestation draft for `anchor`: two dimensions, weights summing to 1, a
/// one-hour window ending now.
pub(crate) fn draft(anchor: &NetworkAnchor, attester_id: &str) -> Draft {
    let nonce = nonce();
    Draft {
        network: anchor.clone(),
        attester_id: attester_id.into(),
        pack_sha256: Hash32::digest(nonce.as_bytes()),
        dimensions: [("quality".into(), 0.8), ("reach".into(), 0.4)].into(),
        weights: [("quality".into(), 0.75), ("reach".into(), 0.25)].into(),
        time_window: [rfc3339_ago(3600), rfc3339_ago(0)],
        nonce,
        resources: None,
        benchmarks: None,
        methodology_ref: None,
    }
}

/// A valid signed attestation as JSON, and its id.
pub(crate) fn signed(anchor: &NetworkAnchor, key: &Keypair) -> (Value, String) {
    let (att, digest) = draft(anchor, "it-attester").sign(key).expect("sign");
    (to_json(&att), digest.to_hex())
}

pub(crate) fn to_json(att: &Attestation) -> Value {
    serde_json::to_value(att).expect("attestation to JSON")
}

/// Re-signs `att` after an edit (so only the edited rule breaks).
pub(crate) fn resign(att: &mut Attestation, key: &Keypair) -> String {
    sign(att, key).expect("sign").to_hex()
}

/// Checks an attestation view's inclusion proof against its block's `att_root`, and the
/// block's own record of it.
pub(crate) async fn check_inclusion(node: &Node, id: &str, view: &Value) {
    let digest: Hash32 = id.parse().expect("id is 64 hex");
    let proof: InclusionProof =
        serde_json::from_value(view["proof"].clone()).expect("proof has the RFC 9162 shape");
    let root: Hash32 = view["block"]["att_root"]
        .as_str()
        .expect("att_root")
        .parse()
        .expect("att_root is 64 hex");
    assert!(
        proof.verify(&digest, &root),
        "proof does not verify: {view}"
    );
    let hash = view["block"]["hash"].as_str().expect("block hash");
    let block = node.get_ok(&format!("/api/consensus/block/{hash}")).await;
    assert_eq!(block["header"]["att_root"], view["block"]["att_root"]);
    assert_eq!(block["header"]["height"], view["block"]["height"]);
    assert_eq!(block["header"]["att_count"], proof.tree_size);
    let ids = block["attestation_ids"]
        .as_array()
        .expect("attestation_ids");
    assert_eq!(
        ids[proof.leaf_index as usize], id,
        "leaf_index names another id"
    );
}

/// Posts an entry signed for the registry's current epoch, re-signing if the epoch
/// turned between reading it and filing.
pub(crate) async fn file_entry(
    node: &Node,
    path: &str,
    sign: impl Fn(&str, u64) -> Value,
) -> Value {
    let chain = node.get_ok("/api/consensus/genesis").await["chain_id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..5 {
        let epoch = node.get_ok("/api/validator/stats").await["epoch"]
            .as_u64()
            .unwrap();
        let r = node.post_json(path, &sign(&chain, epoch)).await;
        if r.status == 202 {
            return r.json();
        }
        assert_eq!(r.json()["code"], "wrong_epoch", "{path}: {}", r.text);
    }
    panic!("{path}: could not file within an epoch")
}

/// A `{"attestations": [...]}` body.
pub(crate) fn batch_body(items: Vec<Value>) -> Value {
    json!({ "attestations": items })
}
